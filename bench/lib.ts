// What `npm run bench` and `npm run soak` share: the processes they start
// (fake API server, `serve`, the bare route), and the load they drive.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Agent, type AgentOptions, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { freePort, httpsStatus, until } from '../test/helpers/cluster.js';

/** CPU time (user + system) a process has used, in milliseconds. */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
}

/** Current (VmRSS) and peak (VmHWM) resident memory of a process, in MiB. */
export function memory(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { now: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export interface FakeApi {
  child: ChildProcess;
  kubeconfigPath: string;
}

/** A fake API server with `count` ServiceAccounts (every tenth with a role), plus shop/checkout. */
export async function startFakeApi(count: number): Promise<FakeApi> {
  const child = spawn(process.execPath, ['dist-bench/bench/fake-api.js', String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const kubeconfigPath = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
    child.once('exit', (code) => reject(new Error(`the fake API server exited (${code})`)));
  });
  return { child, kubeconfigPath };
}

export interface Serve {
  child: ChildProcess;
  port: number;
  /** Plain-HTTP /metrics. */
  metricsPort: number;
  /** From spawn to the first 200 from /readyz. */
  readyMs: number;
  /** With `profile`: where node --cpu-prof writes the profile when serve exits. */
  profileDir?: string;
}

export interface ServeOptions {
  kubeconfigPath: string;
  cert: { certFile: string; keyFile: string };
  ca: string;
  logLevel?: string;
  args?: string[];
  /** node --cpu-prof: the profile is written when serve exits. */
  profile?: boolean;
  /** Probe /readyz this often. */
  everyMs?: number;
  /** Another build's cli.js (bench/compare.ts); dist/cli.js by default. */
  cli?: string;
  /** Runs serve on these CPUs only (taskset -c), e.g. "0". */
  cpus?: string;
  /** Environment variables added to this process's for serve. */
  env?: Record<string, string>;
}

/** `serve` as users run it (dist/cli.js), listening on 127.0.0.1; resolves once /readyz says 200. */
export async function startServe(o: ServeOptions): Promise<Serve> {
  const port = await freePort();
  const metricsPort = await freePort();
  const profileDir = o.profile ? mkdtempSync(join(tmpdir(), 'piw-prof-')) : undefined;
  const started = Date.now();
  // taskset execs node, so the child's pid is serve's.
  const [command = process.execPath, ...pinned] = o.cpus ? ['taskset', '-c', o.cpus, process.execPath] : [process.execPath];
  const child = spawn(command, [
    ...pinned,
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    o.cli ?? 'dist/cli.js', 'serve', '--kubeconfig', o.kubeconfigPath, '--tls-cert', o.cert.certFile, '--tls-key', o.cert.keyFile,
    '--port', String(port), '--metrics-port', String(metricsPort), '--bind-address', '127.0.0.1', '--log-level', o.logLevel ?? 'info',
    ...(o.args ?? []),
  ], { stdio: ['ignore', 'ignore', 'inherit'], ...(o.env ? { env: { ...process.env, ...o.env } } : {}) });
  try {
    await until('the webhook to be ready', async () => ((await httpsStatus(port, '/readyz', o.ca)) === 200 ? true : undefined), {
      everyMs: o.everyMs ?? 25,
      giveUpIf: () => (child.exitCode !== null || child.signalCode !== null ? `serve exited (${child.signalCode ?? child.exitCode})` : undefined),
    });
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { child, port, metricsPort, readyMs: Date.now() - started, ...(profileDir ? { profileDir } : {}) };
}

/**
 * The yardstick: a bare fastify HTTPS route answering `size` bytes; `floor` adds
 * serve's log line and metrics to it (bench/bare-server.ts).
 */
export async function startBare(
  cert: { certFile: string; keyFile: string },
  size: number,
  profile = false,
  mode: 'bare' | 'floor' = 'bare',
): Promise<{ child: ChildProcess; port: number; profileDir?: string }> {
  const port = await freePort();
  const profileDir = profile ? mkdtempSync(join(tmpdir(), 'piw-prof-')) : undefined;
  const child = spawn(process.execPath, [
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    'dist-bench/bench/bare-server.js', cert.certFile, cert.keyFile, String(port), String(size), mode,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  return { child, port, ...(profileDir ? { profileDir } : {}) };
}

/** One POST /mutate; resolves with the status and the answer. */
export function post(port: number, body: string, ca: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/mutate', method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A saturating autocannon run against /mutate over keep-alive HTTPS. */
export function saturate(port: number, body: string, ca: string, seconds: number, connections: number): Promise<autocannon.Result> {
  return autocannon({
    url: `https://127.0.0.1:${port}/mutate`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections,
    duration: seconds,
    tlsOptions: { ca },
  });
}

export interface Steady {
  sent: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
  /** Timed requests sent on a connection opened for them (the agent had none free), and the slowest of them. */
  newConnections: number;
  newConnectionMax: number;
  /** p99 of the other requests: those sent on a connection that was already established. */
  establishedP99: number;
}

export interface SteadyOptions {
  port: number;
  body: string;
  /** Requests per second. */
  rate: number;
  seconds: number;
  tls: AgentOptions;
  /** Requests sent in this first part of the run open the connections (TLS handshakes) and are not timed. */
  untimedMs?: number;
  maxSockets?: number;
  /** The connections of an earlier run to reuse (that run's `keep`); the caller destroys it. */
  agent?: Agent;
  /** Keeps the connections open at the end, for a next run (`agent`). */
  keep?: boolean;
}

/** Sockets that carried a request already, in this run or an earlier one on the same agent. */
const usedSockets = new WeakSet<object>();

/**
 * An open-loop load at a steady rate: a few requests every 5 ms over keep-alive
 * connections, each timed on its own. (autocannon's rate limit sends each
 * second's quota in a burst, which measures the burst, not the server.)
 */
export async function steadyLoad(o: SteadyOptions): Promise<Steady & { agent: Agent }> {
  const agent = o.agent ?? new Agent({ ...o.tls, keepAlive: true, maxSockets: o.maxSockets ?? 64 });
  const untimedMs = o.untimedMs ?? 0;
  const length = Buffer.byteLength(o.body);
  const latencies: number[] = [];
  const established: number[] = [];
  let failed = 0;
  let sent = 0;
  let newConnections = 0;
  let newConnectionMax = 0;
  const pending = new Set<Promise<void>>();
  const started = Date.now();
  const one = (): void => {
    sent++;
    const timed = Date.now() - started >= untimedMs;
    const start = process.hrtime.bigint();
    let opened = false;
    const p = new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port: o.port, path: '/mutate', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': length } }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) failed++;
          else if (timed) {
            const ms = Number(process.hrtime.bigint() - start) / 1e6;
            latencies.push(ms);
            if (opened) {
              newConnections++;
              newConnectionMax = Math.max(newConnectionMax, ms);
            } else established.push(ms);
          }
          resolve();
        });
      });
      req.once('socket', (socket) => {
        opened = !usedSockets.has(socket);
        usedSockets.add(socket);
      });
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end(o.body);
    });
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Date.now() - started;
      if (elapsed >= o.seconds * 1000) {
        clearInterval(timer);
        resolve();
        return;
      }
      // Catch up to where the schedule says we should be, so timer jitter does not lower the rate.
      const due = Math.floor((elapsed * o.rate) / 1000);
      while (sent < due) one();
    }, 5);
  });
  await Promise.all(pending);
  // An agent passed in belongs to the caller.
  if (!o.keep && !o.agent) agent.destroy();
  const at = (q: number, of = latencies): number => of[Math.min(of.length - 1, Math.floor(q * of.length))] ?? NaN;
  latencies.sort((a, b) => a - b);
  established.sort((a, b) => a - b);
  return { sent, failed, p50: at(0.5), p99: at(0.99), max: latencies.at(-1) ?? NaN, newConnections, newConnectionMax, establishedP99: at(0.99, established), agent };
}

/** The value of one sample of a Prometheus text exposition (the first that matches `name`, labels included). */
export function metricValue(text: string, name: string): number {
  for (const line of text.split('\n')) if (line.startsWith(`${name} `)) return Number(line.slice(name.length + 1));
  return NaN;
}

/** GET /metrics of a serve process. */
export async function scrapeMetrics(metricsPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  return res.text();
}

export { freePort };
