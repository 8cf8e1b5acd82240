// npm run bench: the real `serve` process (warm cache of 10,000 ServiceAccounts
// from a fake API server) against a bare fastify HTTPS route, and the floor (that
// route plus serve's log line and metrics: what any admission costs), over keep-alive
// HTTPS with a ~4.5 KiB AdmissionReview: saturation, server CPU per request, p99
// at an even 1,000 requests/s; then RSS and time to ready with 0, 10,000 and
// 100,000 ServiceAccounts, and (BENCH_REAL_API=1) against a real kube-apiserver.
// Ends with one `key=value` line holding every number.
//   BENCH_SECONDS=10     seconds per load run
//   BENCH_PROFILE=1      CPU profile summaries (node --cpu-prof) of serve and the bare route
//   BENCH_REAL_API=1     also a real control plane (scripts/controlplane.sh run) with 100,000 ServiceAccounts
//                        (BENCH_REAL_COUNT of them); run it under the e2e lock: flock /tmp/piw-e2e.lock npm run bench
//   BENCH_LOG_LEVEL=warn serve without the per-admission log line
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import type autocannon from 'autocannon';
import { parse as parseYaml } from 'yaml';
import { startControlPlane } from '../test/helpers/cluster.js';
import { createTestPki } from '../test/helpers/tls.js';
import { cpuMs, memory, post, saturate, type Serve, type Steady, startBare, startFakeApi, startServe, steadyLoad, stop } from './lib.js';
import { formatSummary, readProfile, summariseProfile } from './profile.js';
import { realisticReview } from './review.js';

const DURATION = Number(process.env['BENCH_SECONDS'] ?? 10);
const CONNECTIONS = 16;
const PROFILE = process.env['BENCH_PROFILE'] === '1';
const REAL_API = process.env['BENCH_REAL_API'] === '1';
const LOG_LEVEL = process.env['BENCH_LOG_LEVEL'] ?? 'info';
const REAL_COUNT = Number(process.env['BENCH_REAL_COUNT'] ?? 100_000);
/** How long a fresh process is left to settle before its RSS is read. */
const SETTLE_MS = 2000;

const results: Record<string, string> = {};
const put = (key: string, value: number, digits = 0): void => void (results[key] = value.toFixed(digits));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Measured {
  saturation: autocannon.Result;
  /** Server CPU time per request at saturation, µs. */
  cpuUs: number;
  steady: Steady;
  /** Server CPU time per request at an even 1,000 requests/s, µs. */
  steadyCpuUs: number;
  rss: number;
}

/** Warm-up, a saturating run, then an even 1,000 requests/s, each with the server's CPU time per request. */
async function measure(pid: number, port: number, body: string, ca: string): Promise<Measured> {
  await saturate(port, body, ca, Math.min(DURATION, 5), CONNECTIONS); // JIT, TLS sessions
  let before = cpuMs(pid);
  const saturation = await saturate(port, body, ca, DURATION, CONNECTIONS);
  const cpuUs = ((cpuMs(pid) - before) * 1000) / saturation.requests.total;
  before = cpuMs(pid);
  const steady = await steadyLoad({ port, body, rate: 1000, seconds: DURATION + 1, tls: { ca }, untimedMs: 1000 });
  const steadyCpuUs = ((cpuMs(pid) - before) * 1000) / steady.sent;
  return { saturation, cpuUs, steady, steadyCpuUs, rss: memory(pid).now };
}

function printProfile(title: string, dir: string | undefined): void {
  if (dir) console.log(`\n${formatSummary(title, summariseProfile(readProfile(dir)))}`);
}

/** serve against a fake API server with `count` ServiceAccounts: time to ready and RSS at rest. */
async function atRest(count: number, cert: { certFile: string; keyFile: string }, ca: string): Promise<{ readyMs: number; rss: number }> {
  const api = await startFakeApi(count);
  try {
    const s = await startServe({ kubeconfigPath: api.kubeconfigPath, cert, ca, logLevel: LOG_LEVEL, everyMs: 10 });
    await sleep(SETTLE_MS);
    const rss = memory(s.child.pid!).now;
    await stop(s.child);
    return { readyMs: s.readyMs, rss };
  } finally {
    await stop(api.child);
  }
}

/** Creates `count` ServiceAccounts (every tenth with a role) through the API, many requests at a time. */
async function createServiceAccounts(kubeconfigPath: string, count: number): Promise<void> {
  const config = parseYaml(readFileSync(kubeconfigPath, 'utf8')) as {
    clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
    users: Array<{ user: { 'client-certificate-data': string; 'client-key-data': string } }>;
  };
  const cluster = config.clusters[0]!.cluster;
  const user = config.users[0]!.user;
  const server = new URL(cluster.server);
  const b64 = (s: string): string => Buffer.from(s, 'base64').toString();
  const agent = new Agent({ keepAlive: true, maxSockets: 32, ca: b64(cluster['certificate-authority-data']), cert: b64(user['client-certificate-data']), key: b64(user['client-key-data']) });
  const send = (method: string, path: string, body: unknown): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request({ host: server.hostname, port: server.port, path, method, agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  const namespaces = 100;
  for (let n = 0; n < namespaces; n++) {
    const status = await send('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `bench-${n}` } });
    if (status !== 201 && status !== 409) throw new Error(`creating namespace bench-${n}: HTTP ${status}`);
  }
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < count) {
      const i = next++;
      const annotations = i % 10 === 0 ? { 'eks.amazonaws.com/role-arn': `arn:aws:iam::111122223333:role/r${i}` } : undefined;
      const status = await send('POST', `/api/v1/namespaces/bench-${i % namespaces}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `sa-${i}`, ...(annotations ? { annotations } : {}) } });
      if (status !== 201 && status !== 409) throw new Error(`creating ServiceAccount sa-${i}: HTTP ${status}`);
    }
  }));
  agent.destroy();
}

/** Time to ready against a real kube-apiserver, empty and with 100,000 ServiceAccounts. */
async function realApi(cert: { certFile: string; keyFile: string }, ca: string): Promise<void> {
  const cp = await startControlPlane('bench');
  try {
    const ready = async (): Promise<{ readyMs: number; rss: number }> => {
      const s = await startServe({ kubeconfigPath: cp.kubeconfig, cert, ca, logLevel: LOG_LEVEL, everyMs: 10 });
      await sleep(SETTLE_MS);
      const rss = memory(s.child.pid!).now;
      await stop(s.child);
      return { readyMs: s.readyMs, rss };
    };
    const empty = await ready();
    const started = Date.now();
    await createServiceAccounts(cp.kubeconfig, REAL_COUNT);
    const createMs = Date.now() - started;
    const full = await ready();
    console.log(`\nreal kube-apiserver: time to ready ${empty.readyMs} ms empty, ${full.readyMs} ms with ${REAL_COUNT} ServiceAccounts (created in ${(createMs / 1000).toFixed(0)} s); RSS ${empty.rss.toFixed(0)} / ${full.rss.toFixed(0)} MiB`);
    put('real_ready_empty_ms', empty.readyMs);
    put('real_ready_full_ms', full.readyMs);
    put('real_rss_full_mib', full.rss);
    put('real_service_accounts', REAL_COUNT);
  } finally {
    await cp.stop();
  }
}

function line(name: string, m: Measured): string {
  const r = m.saturation;
  const bad = r.errors + r.timeouts + r.non2xx;
  return `${name.padEnd(20)} ${r.requests.average.toFixed(0).padStart(6)} req/s  p50 ${r.latency.p50.toFixed(2)} ms  p99 ${r.latency.p99.toFixed(2)} ms  CPU/req ${m.cpuUs.toFixed(0)} µs  failed ${bad}` +
    ` | 1,000 req/s: p50 ${m.steady.p50.toFixed(2)} ms  p99 ${m.steady.p99.toFixed(2)} ms  max ${m.steady.max.toFixed(2)} ms  CPU/req ${m.steadyCpuUs.toFixed(0)} µs  failed ${m.steady.failed}`;
}

async function main(): Promise<void> {
  const pki = createTestPki();
  const cert = pki.issue('bench');
  const body = realisticReview('shop', 'checkout');
  console.log(`AdmissionReview: ${body.length} bytes; ${DURATION} s per run, ${CONNECTIONS} keep-alive connections; log level ${LOG_LEVEL}`);

  // 1. /mutate with a warm cache of 10,000 ServiceAccounts.
  const fake = await startFakeApi(10_000);
  let serve: Serve;
  let ours: Measured;
  let rss10k: number;
  let sampleSize: number;
  try {
    serve = await startServe({ kubeconfigPath: fake.kubeconfigPath, cert, ca: pki.caCert, logLevel: LOG_LEVEL, profile: PROFILE });
    await sleep(SETTLE_MS);
    rss10k = memory(serve.child.pid!).now;
    const sample = await post(serve.port, body, pki.caCert);
    if (!sample.text.includes('"patchType":"JSONPatch"')) throw new Error(`the bench pod was not mutated: ${sample.text}`);
    sampleSize = sample.text.length;
    ours = await measure(serve.child.pid!, serve.port, body, pki.caCert);
    await stop(serve.child);
  } finally {
    await stop(fake.child);
  }

  // 2. The bare route, same request and response sizes.
  const bare = await startBare(cert, sampleSize, PROFILE);
  const bareResult = await measure(bare.child.pid!, bare.port, body, pki.caCert);
  await stop(bare.child);
  // 3. The floor: the bare route plus serve's log line and metrics, what any admission costs.
  const floor = await startBare(cert, sampleSize, false, 'floor');
  const floorResult = await measure(floor.child.pid!, floor.port, body, pki.caCert);
  await stop(floor.child);

  console.log('');
  console.log(line('/mutate (serve)', ours));
  console.log(line('bare fastify route', bareResult));
  console.log(line('floor: bare + log, metrics', floorResult));
  const ratio = ours.cpuUs / bareResult.cpuUs;
  const steadyRatio = ours.steadyCpuUs / bareResult.steadyCpuUs;
  const floorRatio = floorResult.cpuUs / bareResult.cpuUs;
  console.log(`server CPU per request: /mutate ${ours.cpuUs.toFixed(0)} µs, bare ${bareResult.cpuUs.toFixed(0)} µs, ratio ${ratio.toFixed(2)} at saturation; ` +
    `${ours.steadyCpuUs.toFixed(0)} / ${bareResult.steadyCpuUs.toFixed(0)} µs, ratio ${steadyRatio.toFixed(2)} at 1,000 req/s (target <= 1.25)`);
  console.log(`floor: bare route + serve's log line and metrics ${floorResult.cpuUs.toFixed(0)} µs, ratio ${floorRatio.toFixed(2)} at saturation; ` +
    `${floorResult.steadyCpuUs.toFixed(0)} µs, ratio ${(floorResult.steadyCpuUs / bareResult.steadyCpuUs).toFixed(2)} at 1,000 req/s`);
  console.log(`throughput /mutate : bare = ${(ours.saturation.requests.average / bareResult.saturation.requests.average).toFixed(2)}; ` +
    `p99 at an even 1,000 req/s ${ours.steady.p99.toFixed(2)} ms (target <= 1.5 ms)`);
  printProfile('serve /mutate', serve.profileDir);
  printProfile('bare route', bare.profileDir);

  // 4. Memory at rest and time to ready: 0, 10,000 (above) and 100,000 ServiceAccounts.
  const empty = await atRest(0, cert, pki.caCert);
  const full = await atRest(100_000, cert, pki.caCert);
  console.log('');
  console.log(`RSS at rest: empty cache ${empty.rss.toFixed(0)} MiB, 10,000 ServiceAccounts ${rss10k.toFixed(0)} MiB, 100,000 ${full.rss.toFixed(0)} MiB; after the load runs ${ours.rss.toFixed(0)} MiB (bare route ${bareResult.rss.toFixed(0)} MiB)`);
  console.log(`time to ready (fake API server): empty ${empty.readyMs} ms, 10,000 ServiceAccounts ${serve.readyMs} ms, 100,000 ${full.readyMs} ms (pages of 500)`);

  put('ours_rps', ours.saturation.requests.average);
  put('bare_rps', bareResult.saturation.requests.average);
  put('ours_cpu_us', ours.cpuUs);
  put('bare_cpu_us', bareResult.cpuUs);
  put('cpu_ratio', ratio, 2);
  put('ours_steady_cpu_us', ours.steadyCpuUs);
  put('bare_steady_cpu_us', bareResult.steadyCpuUs);
  put('steady_cpu_ratio', steadyRatio, 2);
  put('floor_cpu_us', floorResult.cpuUs);
  put('floor_cpu_ratio', floorRatio, 2);
  put('floor_steady_cpu_us', floorResult.steadyCpuUs);
  put('p99_1000rps_ms', ours.steady.p99, 2);
  put('bare_p99_1000rps_ms', bareResult.steady.p99, 2);
  put('failed', ours.saturation.errors + ours.saturation.non2xx + ours.saturation.timeouts + ours.steady.failed);
  put('rss_empty_mib', empty.rss);
  put('rss_10k_mib', rss10k);
  put('rss_100k_mib', full.rss);
  put('rss_after_load_mib', ours.rss);
  put('ready_empty_ms', empty.readyMs);
  put('ready_10k_ms', serve.readyMs);
  put('ready_100k_ms', full.readyMs);

  if (REAL_API) await realApi(cert, pki.caCert);
  console.log(`\n${Object.entries(results).map(([k, v]) => `${k}=${v}`).join(' ')}`);
}

await main();
