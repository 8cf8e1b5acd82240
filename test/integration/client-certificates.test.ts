// --client-ca over real TLS: chains are verified as Go's crypto/tls does for the
// API server's admission client (intermediates sent by the client, extended key
// usage clientAuth on every certificate that restricts it, validity periods),
// and a client without a trusted certificate is refused before its body is read.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import pino from 'pino';
import { DEFAULT_MUTATION_OPTIONS } from '../../src/config.js';
import { startWebhookServer, type WebhookServer } from '../../src/server/serve.js';
import { EKU, type Issued, daysFromNow, issue, root } from '../helpers/client-pki.js';
import { agent, review, send } from '../helpers/https.js';
import { staticIdentities } from '../helpers/identities.js';
import { pod } from '../helpers/pods.js';
import { createTestPki } from '../helpers/tls.js';

const pki = createTestPki();
const dir = mkdtempSync(join(tmpdir(), 'piw-client-ca-'));
t.teardown(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(pki.dir, { recursive: true, force: true });
});

async function start(clientCaPem: string): Promise<WebhookServer> {
  const serving = pki.issue(`serving-${Math.random().toString(36).slice(2)}`);
  const caFile = join(dir, `ca-${Math.random().toString(36).slice(2)}.crt`);
  writeFileSync(caFile, clientCaPem);
  return startWebhookServer({
    port: 0,
    metricsPort: 0,
    host: '127.0.0.1',
    tls: { certFile: serving.certFile, keyFile: serving.keyFile, clientCaFile: caFile },
    mutation: { ...DEFAULT_MUTATION_OPTIONS },
    namespace: 'default',
    watchConfigMap: false,
    lookupGracePeriodMs: 2000,
    debuggingHandlers: false,
    bodyLimit: 6 * 1024 * 1024,
    shutdownTimeoutMs: 5000,
    shutdownDelayMs: 0,
    logger: pino({ level: 'silent' }),
    identityRuntime: staticIdentities(),
  });
}

/** POST /mutate on a new connection (no session reuse) with `chain` (leaf first) as the client certificate. */
async function mutateWith(server: WebhookServer, leaf: Issued | undefined, intermediates: Issued[] = []): Promise<number> {
  const a = agent(pki.caCert, { keepAlive: false, ...(leaf ? { cert: [leaf.cert, ...intermediates.map((i) => i.cert)].join('\n'), key: leaf.key } : {}) });
  try {
    return (await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }])) })).status;
  } finally {
    a.destroy();
  }
}

t.test('client certificates are verified like Go crypto/tls with ExtKeyUsageClientAuth', async (t) => {
  const ca = await root('client-root');
  const server = await start(ca.x509.toString('pem'));
  t.teardown(() => server.shutdown());

  const intermediate = await issue(ca, 'intermediate', { ca: true });
  const clientIntermediate = await issue(ca, 'intermediate-client-eku', { ca: true, eku: [EKU.clientAuth] });
  const serverIntermediate = await issue(ca, 'intermediate-server-eku', { ca: true, eku: [EKU.serverAuth] });
  const expiredIntermediate = await issue(ca, 'intermediate-expired', { ca: true, notBefore: daysFromNow(-3), notAfter: daysFromNow(-1) });
  const notCa = await issue(ca, 'not-a-ca', { eku: [EKU.clientAuth] });
  const otherRoot = await root('other-root');

  const cases: Array<{ name: string; status: number; leaf: () => Promise<Issued | undefined>; sent?: Issued[] }> = [
    { name: 'a clientAuth leaf from the root', status: 200, leaf: () => issue(ca, 'apiserver', { eku: [EKU.clientAuth] }) },
    { name: 'a leaf without the extended key usage extension (any usage)', status: 200, leaf: () => issue(ca, 'no-eku') },
    { name: 'a leaf with anyExtendedKeyUsage', status: 200, leaf: () => issue(ca, 'any-eku', { eku: [EKU.any] }) },
    { name: 'a leaf with serverAuth and clientAuth', status: 200, leaf: () => issue(ca, 'both', { eku: [EKU.serverAuth, EKU.clientAuth] }) },
    { name: 'a serverAuth-only leaf', status: 403, leaf: () => issue(ca, 'server-only', { eku: [EKU.serverAuth] }) },
    { name: 'an expired leaf', status: 403, leaf: () => issue(ca, 'expired', { eku: [EKU.clientAuth], notBefore: daysFromNow(-3), notAfter: daysFromNow(-1) }) },
    { name: 'a leaf not valid yet', status: 403, leaf: () => issue(ca, 'future', { eku: [EKU.clientAuth], notBefore: daysFromNow(1), notAfter: daysFromNow(2) }) },
    { name: 'a leaf through an intermediate the client sends', status: 200, leaf: () => issue(intermediate, 'via-intermediate', { eku: [EKU.clientAuth] }), sent: [intermediate] },
    { name: 'a leaf through an intermediate the client does not send', status: 403, leaf: () => issue(intermediate, 'intermediate-missing', { eku: [EKU.clientAuth] }) },
    { name: 'through an intermediate restricted to clientAuth', status: 200, leaf: () => issue(clientIntermediate, 'via-client-intermediate', { eku: [EKU.clientAuth] }), sent: [clientIntermediate] },
    { name: 'through an intermediate restricted to serverAuth', status: 403, leaf: () => issue(serverIntermediate, 'via-server-intermediate', { eku: [EKU.clientAuth] }), sent: [serverIntermediate] },
    { name: 'through an expired intermediate', status: 403, leaf: () => issue(expiredIntermediate, 'via-expired-intermediate', { eku: [EKU.clientAuth] }), sent: [expiredIntermediate] },
    { name: 'signed by a certificate that is not a CA', status: 403, leaf: () => issue(notCa, 'via-not-ca', { eku: [EKU.clientAuth] }), sent: [notCa] },
    { name: 'a clientAuth leaf from another root', status: 403, leaf: () => issue(otherRoot, 'stranger', { eku: [EKU.clientAuth] }) },
    { name: 'no client certificate', status: 403, leaf: async () => undefined },
  ];
  for (const c of cases) {
    t.equal(await mutateWith(server, await c.leaf(), c.sent), c.status, c.name);
  }
  // The kubelet's probes carry no certificate.
  const anonymous = agent(pki.caCert, { keepAlive: false });
  t.teardown(() => anonymous.destroy());
  t.equal((await send(server.port, 'GET', '/healthz', { agent: anonymous })).status, 200, '/healthz without a certificate');
  t.equal((await send(server.port, 'GET', '/readyz', { agent: anonymous })).status, 200, '/readyz without a certificate');
});

t.test('a client without a certificate gets 403 and is disconnected before its body is read', async (t) => {
  const ca = await root('body-root');
  const server = await start(ca.x509.toString('pem'));
  t.teardown(() => server.shutdown());
  const declared = 6 * 1024 * 1024 - 1;
  const socket = connect({ host: '127.0.0.1', port: server.port, ca: pki.caCert, servername: 'localhost' });
  t.teardown(() => socket.destroy());
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let received = '';
  socket.setEncoding('utf8').on('data', (d: string) => (received += d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  // Headers and the first KiB of a body that would be 6 MiB; the rest is never sent.
  socket.write(`POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n`);
  socket.write('{"apiVersion":"admission.k8s.io/v1",'.padEnd(1024, ' '));
  await closed;
  t.match(received, /^HTTP\/1\.1 403 /, `answered 403 without the body: ${received.split('\r\n')[0]}`);
  t.match(received, /\r\nconnection: close\r\n/i, 'with Connection: close');
  t.match(received, /client certificate signed by --client-ca is required/);
});
