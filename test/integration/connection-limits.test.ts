// Connection limits of the HTTPS server over real TLS: slow bodies and silent
// connections are closed, idle keep-alive connections end, the connection cap
// holds (and frees idle connections), and large bodies wait for the body budget
// while small ones do not.
import t from 'tap';
import { rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { type TLSSocket, connect } from 'node:tls';
import pino from 'pino';
import { DEFAULT_MUTATION_OPTIONS } from '../../src/config.js';
import { type ConnectionLimits, DEFAULT_LIMITS } from '../../src/server/app.js';
import { startWebhookServer, type WebhookServer } from '../../src/server/serve.js';
import { agent, review, send } from '../helpers/https.js';
import { staticIdentities } from '../helpers/identities.js';
import { pod } from '../helpers/pods.js';
import { createTestPki } from '../helpers/tls.js';

const pki = createTestPki();
t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));

async function start(limits: Partial<ConnectionLimits>, bodyLimit = 64 * 1024): Promise<WebhookServer> {
  const serving = pki.issue(`serving-${Math.random().toString(36).slice(2)}`);
  return startWebhookServer({
    port: 0,
    metricsPort: 0,
    host: '127.0.0.1',
    tls: { certFile: serving.certFile, keyFile: serving.keyFile },
    mutation: { ...DEFAULT_MUTATION_OPTIONS },
    namespace: 'default',
    watchConfigMap: false,
    lookupGracePeriodMs: 2000,
    debuggingHandlers: false,
    bodyLimit,
    limits: { ...DEFAULT_LIMITS, ...limits },
    shutdownTimeoutMs: 5000,
    shutdownDelayMs: 0,
    logger: pino({ level: 'silent' }),
    identityRuntime: staticIdentities(),
  });
}

interface Raw {
  socket: TLSSocket;
  /** Everything received so far. */
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
}

/** A TLS connection to the webhook that the test writes to by hand. */
async function raw(port: number): Promise<Raw> {
  const socket = connect({ host: '127.0.0.1', port, ca: pki.caCert, servername: 'localhost' });
  let text = '';
  let closed = false;
  socket.setEncoding('utf8').on('data', (d: string) => (text += d));
  socket.on('error', () => undefined);
  const done = new Promise<void>((resolve) => socket.once('close', () => {
    closed = true;
    resolve();
  }));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('close', () => reject(new Error('closed before the TLS handshake finished')));
  });
  return { socket, received: () => text, closed: done, isClosed: () => closed };
}

const headers = (length: number): string => `POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('a body dribbled slower than --request-timeout gets 408 and is closed', async (t) => {
  const server = await start({ headersTimeoutMs: 500, requestTimeoutMs: 1000 });
  t.teardown(() => server.shutdown());
  const c = await raw(server.port);
  t.teardown(() => c.socket.destroy());
  c.socket.write(headers(10_000));
  // One byte every 50 ms keeps the connection busy; the request can never complete in time.
  for (let i = 0; i < 400 && !c.isClosed(); i++) {
    c.socket.write(' ');
    await sleep(50);
  }
  t.ok(c.isClosed(), 'the server closed the connection while the body was still arriving');
  t.match(c.received(), /^HTTP\/1\.1 408 /, 'with 408 Request Timeout');
});

t.test('a connection that sends nothing is closed after --request-header-timeout; so is a TCP connection without a TLS handshake', async (t) => {
  const server = await start({ headersTimeoutMs: 300, requestTimeoutMs: 1000 });
  t.teardown(() => server.shutdown());
  const silent = await raw(server.port);
  t.teardown(() => silent.socket.destroy());
  const tcp = netConnect({ host: '127.0.0.1', port: server.port });
  t.teardown(() => tcp.destroy());
  tcp.on('error', () => undefined);
  const tcpClosed = new Promise<void>((resolve) => tcp.once('close', () => resolve()));
  await Promise.all([silent.closed, tcpClosed]);
  t.match(silent.received(), /^(HTTP\/1\.1 408 [^]*)?$/, 'closed, with at most a 408');
});

t.test('an idle keep-alive connection is closed after --idle-timeout', async (t) => {
  const server = await start({ idleTimeoutMs: 300 });
  t.teardown(() => server.shutdown());
  const c = await raw(server.port);
  t.teardown(() => c.socket.destroy());
  c.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await c.closed;
  t.match(c.received(), /^HTTP\/1\.1 200 /, 'answered, then closed when idle');
  t.match(c.received(), /keep-alive/i, 'the response offered keep-alive');
});

t.test('--max-connections: more are refused; idle ones are closed to make room', async (t) => {
  const server = await start({ maxConnections: 3, headersTimeoutMs: 20_000, requestTimeoutMs: 20_000 });
  t.teardown(() => server.shutdown());
  const held = [await raw(server.port), await raw(server.port), await raw(server.port)];
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  // Each connection answers one request and stays open (idle, keep-alive).
  for (const c of held) c.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const answered = (c: Raw): Promise<void> => new Promise((resolve) => {
    const check = (): void => (/\r\n\r\nok\n$/.test(c.received()) ? resolve() : void c.socket.once('data', check));
    check();
  });
  await Promise.all(held.map(answered));
  await t.rejects(raw(server.port), /closed before the TLS handshake/, 'a fourth connection is dropped');
  await Promise.all(held.map((c) => c.closed));
  t.pass('the idle connections were closed to make room');
  const a = agent(pki.caCert, { keepAlive: false });
  t.teardown(() => a.destroy());
  t.equal((await send(server.port, 'GET', '/healthz', { agent: a })).status, 200, 'a new connection is accepted again');
});

t.test('--max-inflight-body-bytes: a large body waits for the budget; small ones do not', async (t) => {
  // Long timeouts: here the holder waits for the test, not for the clock.
  const server = await start({ inflightBodyBytes: 200 * 1024, headersTimeoutMs: 60_000, requestTimeoutMs: 60_000 }, 1024 * 1024);
  t.teardown(() => server.shutdown());
  // With Expect: 100-continue, "100 Continue" comes back in the same turn of the
  // event loop as the request's onRequest hooks: the sign that its share of the
  // budget was asked for.
  const continued = (c: Raw): Promise<void> => new Promise((resolve) => {
    const check = (): void => (/^HTTP\/1\.1 100 Continue\r\n\r\n/.test(c.received()) ? resolve() : void c.socket.once('data', check));
    check();
  });
  // A: declares 150 KiB and sends one byte: it holds 150 KiB of the budget.
  const holder = await raw(server.port);
  t.teardown(() => holder.socket.destroy());
  holder.socket.write(headers(150 * 1024).replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n'));
  await continued(holder);
  holder.socket.write('{');
  // B: a complete 100 KiB review; 150 + 100 KiB do not fit, so it is not read yet.
  const big = review(pod([{ name: 'c' }])).padEnd(100 * 1024, ' ');
  const waiter = await raw(server.port);
  t.teardown(() => waiter.socket.destroy());
  waiter.socket.write(headers(big.length).replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n'));
  await continued(waiter);
  const interim = waiter.received();
  waiter.socket.write(big);
  let holderGone = false;
  const waiterAnswered = new Promise<boolean>((resolve) => waiter.socket.once('data', () => resolve(holderGone)));
  // C: a small review on its own connection is answered meanwhile.
  const a = agent(pki.caCert, { keepAlive: false });
  t.teardown(() => a.destroy());
  for (let i = 0; i < 3; i++) t.equal((await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }])) })).status, 200, 'a small review is answered');
  t.equal(waiter.received(), interim, 'the large body is still waiting');
  holderGone = true;
  holder.socket.destroy();
  t.ok(await waiterAnswered, 'the large body was answered once the budget was free');
  await new Promise<void>((resolve) => {
    const check = (): void => (/\r\n\r\n\{/.test(waiter.received()) ? resolve() : void waiter.socket.once('data', check));
    check();
  });
  t.match(waiter.received().slice(interim.length), /^HTTP\/1\.1 200 /);
});
