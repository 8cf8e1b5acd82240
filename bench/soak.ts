// npm run soak: the real `serve` process under attack while a legitimate client
// sends normal reviews. For SOAK_SECONDS (default 20) per phase, hostile
// clients send maximum-size AdmissionReviews (huge annotation values, just under
// --max-request-body-bytes), dribble bodies (headers, then a byte a second), and
// hold idle connections; with --client-ca (the second phase) they have no client
// certificate. Prints the serve process's peak RSS and the legitimate client's
// p50/p99 during the attack, against the targets (peak RSS < 200 MiB, p99 < 50 ms;
// the manifests' memory limit is 256 Mi), with what else decides the p99 on a
// shared machine: serve's event-loop delay, the CPU serve and the attacker
// used, and the load average. With two CPUs or more, serve runs on CPU 0 and
// the attacker and the legitimate client on the others, the attacker at a
// lower priority (nice 10): on a cluster the webhook pod, its legitimate
// caller and the attacker do not share CPUs, so neither the attacker's own
// CPU nor a starved client counts as serve's latency. Options (environment): SOAK_SECONDS, SOAK_BIG, SOAK_SLOW,
// SOAK_IDLE (attackers of each kind), SOAK_SERVE_ARGS (more serve flags),
// SOAK_CLI (another build's dist/cli.js), SOAK_PIN=0 (everything on every CPU),
// SOAK_PROFILE=1 (serve under node --cpu-prof; the profile's directory is printed).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg, setPriority } from 'node:os';
import { join } from 'node:path';
import type { Agent } from 'node:https';
import { type TLSSocket, connect } from 'node:tls';
import { createTestPki } from '../test/helpers/tls.js';
import { cpuMs, memory, metricValue, scrapeMetrics, startFakeApi, startServe, type Steady, steadyLoad, stop } from './lib.js';
import { realisticReview } from './review.js';

const SECONDS = Number(process.env['SOAK_SECONDS'] ?? 20);
const BODY_LIMIT = 6 * 1024 * 1024;
const BIG_SENDERS = Number(process.env['SOAK_BIG'] ?? 16);
const SLOW_BODIES = Number(process.env['SOAK_SLOW'] ?? 200);
const IDLE_CONNECTIONS = Number(process.env['SOAK_IDLE'] ?? 300);
const LEGIT_RATE = 100;
const TARGET_RSS_MIB = 200;
const TARGET_P99_MS = 50;
const PROFILE = process.env['SOAK_PROFILE'] === '1';
/**
 * serve runs with the malloc settings of the container image (Dockerfile, runtime
 * stage), as it runs on a cluster; SOAK_IMAGE_MALLOC=0 leaves glibc's defaults.
 */
const IMAGE_MALLOC: Record<string, string> = { MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '65536' };
const SERVE_ENV = process.env['SOAK_IMAGE_MALLOC'] === '0' ? {} : IMAGE_MALLOC;

/** The processes this soak started and that still run: stopped with it when it is interrupted. */
const started = new Set<ChildProcess>();
function own<C extends ChildProcess>(child: C): C {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of started) child.kill('SIGTERM');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

/**
 * The CPUs serve and the clients run on, when they are kept apart: serve on
 * CPU 0; this process (the legitimate client) and the attacker it starts on
 * the rest. Undefined when they share every CPU.
 */
/** CPUs of the machine, read before this process is pinned to some of them. */
const CPUS = availableParallelism();

function pinning(): { serve: string; clients: string } | undefined {
  const cpus = CPUS;
  if (process.env['SOAK_PIN'] === '0' || cpus < 2) return undefined;
  const clients = `1-${cpus - 1}`;
  // -a: every thread of this process; the attacker, spawned later, inherits it.
  const r = spawnSync('taskset', ['-a', '-p', '-c', clients, String(process.pid)], { stdio: 'ignore' });
  if (r.status !== 0) {
    console.log(`taskset is not available (${r.error?.message ?? `exit ${r.status}`}): serve and the clients share every CPU`);
    return undefined;
  }
  return { serve: '0', clients };
}

/** A valid AdmissionReview of `size` bytes: a pod whose annotations hold ~128 KiB values. */
function hostileReview(size: number): Buffer {
  const annotations: Record<string, string> = {};
  const base = JSON.parse(realisticReview('shop', 'checkout')) as { request: { object: { metadata: { annotations: Record<string, string> } } } };
  base.request.object.metadata.annotations = annotations;
  const chunk = 128 * 1024;
  let i = 0;
  while (JSON.stringify(base).length + chunk + 64 < size) annotations[`attack.example.com/a${i++}`] = 'x'.repeat(chunk);
  annotations['attack.example.com/last'] = '';
  annotations['attack.example.com/last'] = 'y'.repeat(size - JSON.stringify(base).length);
  const body = Buffer.from(JSON.stringify(base));
  if (body.length !== size) throw new Error(`hostile review is ${body.length} bytes, not ${size}`);
  return body;
}

interface Tls {
  ca: string;
  cert?: string;
  key?: string;
}

function open(port: number, tls: Tls): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: tls.ca, servername: 'localhost', ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

const head = (length: number): string => `POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;

interface Attack {
  stop(): Promise<void>;
  /** Counters for the report. */
  stats: Record<string, number>;
}

/** Runs `loop` in `count` parallel workers until stop(); each worker's errors are counted, not thrown. */
function workers(count: number, stats: Record<string, number>, name: string, loop: (running: () => boolean) => Promise<void>): Attack {
  let running = true;
  const all = Array.from({ length: count }, async () => {
    while (running) {
      try {
        await loop(() => running);
      } catch {
        stats[`${name} errors`] = (stats[`${name} errors`] ?? 0) + 1;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
  return {
    stats,
    stop: async () => {
      running = false;
      await Promise.all(all);
    },
  };
}

/** Whole hostile bodies, as fast as the server takes them, a new connection each. */
function bigBodies(port: number, tls: Tls, body: Buffer, stats: Record<string, number>): Attack {
  return workers(BIG_SENDERS, stats, 'big-body', async () => {
    const socket = await open(port, tls);
    await new Promise<void>((resolve) => {
      let answer = '';
      socket.on('data', (d: Buffer) => {
        answer += d.toString('latin1');
        if (answer.includes('\r\n\r\n')) {
          const status = answer.slice(9, 12);
          stats[`big-body ${status}`] = (stats[`big-body ${status}`] ?? 0) + 1;
          socket.destroy();
        }
      });
      socket.on('error', () => undefined);
      socket.once('close', () => resolve());
      socket.write(head(body.length));
      socket.write(body);
    });
  });
}

/** Headers for a maximum-size body, then one byte a second; reconnects when the server closes it. */
function slowBodies(port: number, tls: Tls, stats: Record<string, number>): Attack {
  return workers(SLOW_BODIES, stats, 'slow-body', async (running) => {
    const socket = await open(port, tls);
    const openedAt = Date.now();
    socket.on('error', () => undefined);
    // Read whatever comes (a 408): a socket nobody reads never sees the server's close.
    socket.resume();
    socket.write(head(BODY_LIMIT - 1));
    const timer = setInterval(() => (running() ? socket.write(' ') : socket.destroy()), 1000);
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    clearInterval(timer);
    if (running()) {
      stats['slow-body closed by server'] = (stats['slow-body closed by server'] ?? 0) + 1;
      stats['slow-body longest held ms'] = Math.max(stats['slow-body longest held ms'] ?? 0, Date.now() - openedAt);
    }
  });
}

/** TLS connections that never send a request. */
function idleConnections(port: number, tls: Tls, stats: Record<string, number>): Attack {
  return workers(IDLE_CONNECTIONS, stats, 'idle', async (running) => {
    const socket = await open(port, tls);
    socket.on('error', () => undefined);
    // Read whatever comes (a 408): a socket nobody reads never sees the server's
    // close, and would stop attacking once the server has let go of it.
    socket.resume();
    const timer = setInterval(() => running() || socket.destroy(), 200);
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    clearInterval(timer);
    if (running()) stats['idle closed by server'] = (stats['idle closed by server'] ?? 0) + 1;
  });
}

/**
 * Normal reviews at a steady rate over keep-alive connections, each timed. The
 * attack phase reuses the connections of the quiet phase (`agent`), as an API
 * server keeps its connections to the webhook: the attack finds them open, and
 * a connection is only opened under attack when they are all busy.
 */
function legitimate(port: number, tls: Tls, seconds: number, agent?: Agent): Promise<Steady & { agent: Agent }> {
  const agentTls = { ca: tls.ca, ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) };
  return steadyLoad({ port, body: realisticReview('shop', 'checkout'), rate: LEGIT_RATE, seconds, tls: agentTls, maxSockets: 8, keep: !agent, ...(agent ? { agent } : {}) });
}

interface PhaseResult {
  name: string;
  peakMiB: number;
  p99: number;
  quietP99: number;
  failed: number;
  load: number;
  ok: boolean;
}

async function phase(name: string, kubeconfigPath: string, pki: ReturnType<typeof createTestPki>, mtls: boolean, pin: ReturnType<typeof pinning>): Promise<PhaseResult> {
  const serving = pki.issue(`soak-${name}`);
  const { child: serve, port, metricsPort, profileDir } = await startServe({
    kubeconfigPath,
    cert: serving,
    ca: pki.caCert,
    args: [...(mtls ? ['--client-ca', join(pki.dir, 'ca.crt')] : []), ...(process.env['SOAK_SERVE_ARGS'] ?? '').split(' ').filter(Boolean)],
    everyMs: 50,
    ...(pin ? { cpus: pin.serve } : {}),
    env: SERVE_ENV,
    profile: PROFILE,
    // SOAK_CLI: another build's dist/cli.js, e.g. to measure an older version under the same attack.
    ...(process.env['SOAK_CLI'] ? { cli: process.env['SOAK_CLI'] } : {}),
  });
  own(serve);
  try {
    const client = pki.issue(`soak-client-${name}`, { client: true });
    const legitTls: Tls = { ca: pki.caCert, ...(mtls ? { cert: client.cert, key: client.key } : {}) };
    const before = memory(serve.pid!);
    // A few seconds of the legitimate client alone, for comparison.
    const quiet = await legitimate(port, legitTls, 3);
    const connections = quiet.agent;
    // The attackers run in a process of their own, so that their work does not
    // delay the legitimate client's timers and sockets.
    const attacker = own(spawn(process.execPath, [process.argv[1] as string, 'attack', String(port), join(pki.dir, 'ca.crt'), String(SECONDS + 2)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    // The attacker yields the clients' CPUs to the legitimate client (a caller on a machine of its own).
    if (pin && attacker.pid) setPriority(attacker.pid, 10);
    let report = '';
    attacker.stdout.on('data', (d: Buffer) => (report += d.toString()));
    const attackerDone = new Promise<void>((resolve) => attacker.once('exit', () => resolve()));
    // The attack is under way once its first connections are in (one second).
    await new Promise((r) => setTimeout(r, 1000));
    let sampled = 0;
    const sampler = setInterval(() => (sampled = Math.max(sampled, memory(serve.pid!).now)), 100);
    // A scrape resets serve's event-loop delay histogram: the next one covers the attack alone.
    await scrapeMetrics(metricsPort);
    const load = loadavg()[0] as number;
    const serveCpu = cpuMs(serve.pid!);
    const legit = await legitimate(port, legitTls, SECONDS, connections);
    connections.destroy();
    const serveCpuSeconds = (cpuMs(serve.pid!) - serveCpu) / 1000;
    const metrics = await scrapeMetrics(metricsPort);
    clearInterval(sampler);
    await attackerDone;
    const stats = JSON.parse(report || '{}') as Record<string, number>;
    const after = memory(serve.pid!);
    const loopMs = (name: string): string => (metricValue(metrics, name) * 1000).toFixed(0);
    const ok = after.peak < TARGET_RSS_MIB && legit.p99 < TARGET_P99_MS && legit.failed === 0;
    console.log(`\n== ${name}: ${SECONDS} s; ${BIG_SENDERS} senders of ${BODY_LIMIT - 1024}-byte reviews, ${SLOW_BODIES} slow bodies, ${IDLE_CONNECTIONS} idle connections${mtls ? ', all without a client certificate (--client-ca on)' : ''}`);
    console.log(`serve RSS: before ${before.now.toFixed(0)} MiB, peak ${after.peak.toFixed(0)} MiB (sampled max ${sampled.toFixed(0)} MiB), after ${after.now.toFixed(0)} MiB (target peak < ${TARGET_RSS_MIB} MiB)`);
    console.log(`legitimate client, quiet:        sent ${quiet.sent}, failed ${quiet.failed}, p50 ${quiet.p50.toFixed(2)} ms, p99 ${quiet.p99.toFixed(2)} ms, max ${quiet.max.toFixed(2)} ms`);
    console.log(`legitimate client, under attack: sent ${legit.sent}, failed ${legit.failed}, p50 ${legit.p50.toFixed(2)} ms, p99 ${legit.p99.toFixed(2)} ms, max ${legit.max.toFixed(2)} ms (target p99 < ${TARGET_P99_MS} ms)`);
    // What decides that p99: requests that waited for a new connection's handshake behind the attackers', or stalls of serve's event loop.
    console.log(`  of which ${legit.newConnections} on a connection opened during the attack (slowest ${legit.newConnectionMax.toFixed(1)} ms); p99 of the rest ${legit.establishedP99.toFixed(2)} ms`);
    console.log(`serve event loop delay under attack: p50 ${loopMs('nodejs_eventloop_lag_p50_seconds')} ms, p99 ${loopMs('nodejs_eventloop_lag_p99_seconds')} ms, max ${loopMs('nodejs_eventloop_lag_max_seconds')} ms`);
    // The attack runs on the same machine: its CPU, and everyone else's, is CPU that serve and the legitimate client wait for.
    console.log(`machine: ${CPUS} CPUs${pin ? ` (serve on CPU ${pin.serve}, legitimate client and attacker (nice 10) on CPUs ${pin.clients})` : ', shared by serve and the clients'}, load average ${load.toFixed(1)} -> ${(loadavg()[0] as number).toFixed(1)}; CPU seconds used in the ${SECONDS} s: serve ${serveCpuSeconds.toFixed(1)}, attacker ${((stats['attacker cpu ms'] ?? NaN) / 1000).toFixed(1)}`);
    console.log(`serve: Node ${process.version}, ${Object.keys(SERVE_ENV).length > 0 ? Object.entries(SERVE_ENV).map(([k, v]) => `${k}=${v}`).join(' ') : "glibc's malloc defaults"}`);
    delete stats['attacker cpu ms'];
    console.log(`attack: ${Object.entries(stats).sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
    console.log(`targets ${ok ? 'met' : 'NOT met'}`);
    return { name, peakMiB: after.peak, p99: legit.p99, quietP99: quiet.p99, failed: legit.failed, load, ok };
  } finally {
    await stop(serve);
    if (profileDir) console.log(`serve's CPU profile (node --cpu-prof): ${profileDir}`);
  }
}

/** The attacker process: every attack at once for `seconds`, then the counters as JSON on stdout. */
async function attack(port: number, caFile: string, seconds: number): Promise<void> {
  const tls: Tls = { ca: readFileSync(caFile, 'utf8') };
  const stats: Record<string, number> = {};
  const attacks = [bigBodies(port, tls, hostileReview(BODY_LIMIT - 1024), stats), slowBodies(port, tls, stats), idleConnections(port, tls, stats)];
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await Promise.all(attacks.map((a) => a.stop()));
  const cpu = process.cpuUsage();
  stats['attacker cpu ms'] = Math.round((cpu.user + cpu.system) / 1000);
  process.stdout.write(JSON.stringify(stats));
}

async function main(): Promise<void> {
  const pki = createTestPki();
  const pin = pinning();
  const fake = await startFakeApi(1000);
  own(fake.child);
  try {
    const results = [await phase('open', fake.kubeconfigPath, pki, false, pin), await phase('client-ca', fake.kubeconfigPath, pki, true, pin)];
    console.log(`\nsoak summary (targets: peak RSS < ${TARGET_RSS_MIB} MiB, legitimate p99 < ${TARGET_P99_MS} ms, no failed request)`);
    console.log('phase      peak RSS   legit p99 (attack)   legit p99 (quiet)   failed   load avg');
    for (const r of results) {
      console.log(`${r.name.padEnd(10)} ${`${r.peakMiB.toFixed(0)} MiB`.padStart(8)}   ${`${r.p99.toFixed(1)} ms`.padStart(18)}   ${`${r.quietP99.toFixed(1)} ms`.padStart(17)}   ${String(r.failed).padStart(6)}   ${r.load.toFixed(1).padStart(8)}`);
    }
    console.log(`soak: ${results.every((r) => r.ok) ? 'all targets met' : 'targets NOT met'}`);
  } finally {
    await stop(fake.child);
  }
}

if (process.argv[2] === 'attack') await attack(Number(process.argv[3]), process.argv[4] as string, Number(process.argv[5]));
else await main();
