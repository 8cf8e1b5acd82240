// npm run bench: the real `serve` process (warm cache of 10,000 ServiceAccounts
// from a fake API server) against a bare fastify HTTPS route, over keep-alive
// HTTPS with a ~4 KiB AdmissionReview; then a steady 1,000 requests/s run, and
// memory and initial-list time with 100,000 ServiceAccounts.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import autocannon from 'autocannon';
import { freePort, httpsStatus, until } from '../test/helpers/cluster.js';
import { createTestPki } from '../test/helpers/tls.js';
import { realisticReview } from './review.js';

const DURATION = Number(process.env['BENCH_SECONDS'] ?? 10);
const CONNECTIONS = 16;

/** CPU time (user + system) a process has used, in milliseconds. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
}

/** A saturating run, with the server's CPU time per request. */
async function measured(pid: number, port: number, body: string, ca: string): Promise<{ result: autocannon.Result; cpuUs: number }> {
  const before = cpuMs(pid);
  const result = await load(port, body, ca);
  return { result, cpuUs: ((cpuMs(pid) - before) * 1000) / result.requests.total };
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function waitReady(port: number, ca: string, child: ChildProcess): Promise<number> {
  const start = Date.now();
  await until('the webhook to be ready', async () => ((await httpsStatus(port, '/readyz', ca)) === 200 ? true : undefined), {
    everyMs: 25,
    giveUpIf: () => (child.exitCode !== null || child.signalCode !== null ? `serve exited (${child.signalCode ?? child.exitCode})` : undefined),
  });
  return Date.now() - start;
}

interface FakeApi {
  child: ChildProcess;
  kubeconfigPath: string;
}

/** A fake API server with `count` ServiceAccounts (every tenth with a role), plus shop/checkout. */
async function startFakeApi(count: number): Promise<FakeApi> {
  const child = spawn(process.execPath, ['dist-bench/bench/fake-api.js', String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const kubeconfigPath = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  return { child, kubeconfigPath };
}

interface Serve {
  child: ChildProcess;
  port: number;
  readyMs: number;
}

async function startServe(fake: FakeApi, cert: { certFile: string; keyFile: string }, ca: string): Promise<Serve> {
  const port = await freePort();
  const metricsPort = await freePort();
  const child = spawn(process.execPath, [
    'dist/cli.js', 'serve', '--kubeconfig', fake.kubeconfigPath, '--tls-cert', cert.certFile, '--tls-key', cert.keyFile,
    '--port', String(port), '--metrics-port', String(metricsPort), '--bind-address', '127.0.0.1', '--log-level', process.env['BENCH_LOG_LEVEL'] ?? 'info',
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  const readyMs = await waitReady(port, ca, child);
  return { child, port, readyMs };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

function load(port: number, body: string, ca: string): Promise<autocannon.Result> {
  return autocannon({
    url: `https://127.0.0.1:${port}/mutate`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    duration: DURATION,
    tlsOptions: { ca },
  } as autocannon.Options);
}

interface Steady {
  sent: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * An open-loop load at a steady rate: a few requests every 5 ms over keep-alive
 * connections, each timed on its own. (autocannon's rate limit sends each
 * second's quota in a burst, which measures the burst, not the server.)
 */
async function steadyLoad(port: number, body: string, ca: string, rate: number, seconds: number): Promise<Steady> {
  const agent = new Agent({ ca, keepAlive: true, maxSockets: 64 });
  const latencies: number[] = [];
  let failed = 0;
  let sent = 0;
  const pending = new Set<Promise<void>>();
  const started = Date.now();
  const one = (): void => {
    sent++;
    // The first second opens the keep-alive connections (TLS handshakes): not timed.
    const timed = Date.now() - started >= 1000;
    const start = process.hrtime.bigint();
    const p = new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/mutate', method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) failed++;
          else if (timed) latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
          resolve();
        });
      });
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end(body);
    });
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  const tickMs = 5;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Date.now() - started;
      if (elapsed >= seconds * 1000) {
        clearInterval(timer);
        resolve();
        return;
      }
      // Catch up to where the schedule says we should be, so timer jitter does not lower the rate.
      const due = Math.floor((elapsed * rate) / 1000);
      while (sent < due) one();
    }, tickMs);
  });
  await Promise.all(pending);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { sent, failed, p50: at(0.5), p99: at(0.99), max: latencies.at(-1) ?? NaN };
}

function line(name: string, r: autocannon.Result, rss: number): string {
  const bad = r.errors + r.timeouts + r.non2xx;
  return `${name.padEnd(22)} ${r.requests.average.toFixed(0).padStart(7)} req/s   p50 ${r.latency.p50.toFixed(2)} ms   p99 ${r.latency.p99.toFixed(2)} ms   max ${r.latency.max.toFixed(2)} ms   RSS ${rss.toFixed(0)} MiB   failed ${bad}`;
}

async function main(): Promise<void> {
  const pki = createTestPki();
  const serving = pki.issue('bench');
  const body = realisticReview('shop', 'checkout');
  console.log(`AdmissionReview: ${body.length} bytes; ${DURATION} s per run, ${CONNECTIONS} keep-alive connections`);

  // 1. /mutate with a warm cache of 10,000 ServiceAccounts.
  const fake = await startFakeApi(10_000);
  const serve = await startServe(fake, serving, pki.caCert);
  const sample = await new Promise<string>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: serve.port, path: '/mutate', method: 'POST', ca: pki.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end(body);
  });
  if (!sample.includes('"patchType":"JSONPatch"')) throw new Error(`the bench pod was not mutated: ${sample}`);
  await load(serve.port, body, pki.caCert); // warm-up (JIT, TLS session setup)
  const { result: mutate, cpuUs: mutateCpu } = await measured(serve.child.pid!, serve.port, body, pki.caCert);
  const mutateRss = rssMiB(serve.child.pid!);
  const steady = await steadyLoad(serve.port, body, pki.caCert, 1000, DURATION);
  await stop(serve.child);
  await stop(fake.child);

  // 2. The bare route, same request and response sizes.
  const barePort = await freePort();
  const bare = spawn(process.execPath, ['dist-bench/bench/bare-server.js', serving.certFile, serving.keyFile, String(barePort), String(sample.length)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => bare.stdout!.once('data', resolve));
  await load(barePort, body, pki.caCert);
  const { result: bareResult, cpuUs: bareCpu } = await measured(bare.pid!, barePort, body, pki.caCert);
  const bareSteady = await steadyLoad(barePort, body, pki.caCert, 1000, DURATION);
  const bareRss = rssMiB(bare.pid!);
  await stop(bare);

  console.log('');
  console.log(line('/mutate (serve)', mutate, mutateRss));
  console.log(line('bare fastify route', bareResult, bareRss));
  console.log(`throughput ratio /mutate : bare = ${(mutate.requests.average / bareResult.requests.average).toFixed(2)} (target >= 0.80)`);
  console.log(`server CPU per request: /mutate ${mutateCpu.toFixed(0)} µs, bare ${bareCpu.toFixed(0)} µs (the load generator shares the 2 cores)`);
  const steadyLine = (name: string, r: Steady): string =>
    `${name.padEnd(22)} sent ${r.sent} in ${DURATION} s (first second untimed)   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   max ${r.max.toFixed(2)} ms   failed ${r.failed}`;
  console.log('');
  console.log('steady 1,000 requests/s, evenly spaced:');
  console.log(steadyLine('/mutate (serve)', steady));
  console.log(steadyLine('bare fastify route', bareSteady));
  console.log(`p99 of /mutate at a steady 1,000 req/s = ${steady.p99.toFixed(2)} ms (target < 5 ms)`);

  // 3. Memory and initial list: 0 against 100,000 ServiceAccounts.
  const sizes: Record<number, { rss: number; readyMs: number }> = {};
  for (const count of [0, 100_000]) {
    const api = await startFakeApi(count);
    const s = await startServe(api, serving, pki.caCert);
    await new Promise((r) => setTimeout(r, 2000));
    sizes[count] = { rss: rssMiB(s.child.pid!), readyMs: s.readyMs };
    await stop(s.child);
    await stop(api.child);
  }
  const empty = sizes[0]!;
  const full = sizes[100_000]!;
  console.log('');
  console.log(`RSS with an empty cache: ${empty.rss.toFixed(0)} MiB; with 100,000 ServiceAccounts: ${full.rss.toFixed(0)} MiB; difference ${(full.rss - empty.rss).toFixed(0)} MiB (target < 100 MB)`);
  console.log(`time to ready: empty ${empty.readyMs} ms; 100,000 ServiceAccounts (paged list of 500) ${full.readyMs} ms`);
}

await main();
