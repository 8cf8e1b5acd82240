// The real `serve` binary as a child process, for tests that need the whole
// thing: flag parsing, the pino logger, signals and the exit code. Ports are
// 0 (chosen by the kernel, so never taken) and read back from the
// "webhook listening" log line.
import type { ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import type { Agent } from 'node:https';
import { review, send } from './https.js';
import { spawnTied } from './child.js';
import { SERVE_COMMAND } from './serve-command.js';
import { type WaitOptions, waitUntil } from './wait.js';

export interface LogLine {
  level?: number | string;
  msg?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the process ended. */
  at: number;
}

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  metricsPort: number;
  /** JSON log lines printed so far (stdout). */
  logs: LogLine[];
  stderr(): string;
  exited: Promise<Exit>;
  /** The exit, or undefined if the process is still running after timeoutMs. */
  exitWithin(timeoutMs: number): Promise<Exit | undefined>;
  /** SIGTERM, then SIGKILL if it is still running after graceMs; resolves when it has exited. */
  stop(graceMs?: number): Promise<Exit>;
}

export interface ServeProcessOptions {
  /** Flags after SERVE_COMMAND; --port, --metrics-port and --bind-address are added unless given. */
  args: string[];
  cwd?: string;
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts `serve` (tied to this process: it dies with it) and resolves once both
 * ports listen, as the "webhook listening" log line says. No deadline: a
 * process that exits instead is the failure, reported with what it printed.
 */
export async function startServeProcess(o: ServeProcessOptions): Promise<ServeProcess> {
  const args = [...o.args];
  if (!args.includes('--port')) args.push('--port', '0');
  if (!args.includes('--metrics-port')) args.push('--metrics-port', '0');
  if (!args.includes('--bind-address')) args.push('--bind-address', '127.0.0.1');
  const [cmd, ...rest] = SERVE_COMMAND;
  const child = spawnTied(cmd, [...rest, ...args], { cwd: o.cwd ?? process.cwd(), env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let stderr = '';
  let partial = '';
  const lineWaiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ msg: line });
      }
    }
    for (const w of [...lineWaiters]) w();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  let exit: Exit | undefined;
  void exited.then((e) => {
    exit = e;
    for (const w of [...lineWaiters]) w();
  });

  const stop = async (graceMs = 15_000): Promise<Exit> => {
    if (exit) return exit;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  const listening = await new Promise<LogLine | undefined>((resolve) => {
    const check = (): void => {
      const line = logs.find((l) => l.msg === 'webhook listening');
      if (line || exit) {
        lineWaiters.delete(check);
        resolve(line);
      }
    };
    lineWaiters.add(check);
    check();
  });
  if (!listening) {
    throw new Error(`serve exited before it listened (${JSON.stringify(exit)}); stderr: ${stderr.trim()}; logs: ${JSON.stringify(logs)}`);
  }
  return {
    child,
    port: Number(listening['port']),
    metricsPort: Number(listening['metricsPort']),
    logs,
    stderr: () => stderr,
    exited,
    exitWithin: async (timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)))]);
      } finally {
        clearTimeout(timer);
      }
    },
    stop,
  };
}

/** Plain-HTTP GET (the metrics port). */
export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The value of one series on the metrics port, e.g. metric(p, 'x_total{outcome="api"}'); 0 when absent. */
export async function metric(metricsPort: number, series: string): Promise<number> {
  const { status, body } = await httpGet(metricsPort, '/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  const m = new RegExp(`^${escapeRegExp(series)} (\\S+)$`, 'm').exec(body);
  return m ? Number(m[1]) : 0;
}

export interface Admission {
  status: number;
  /** The AdmissionReview response (undefined when the body was not one). */
  response: { uid?: string; allowed?: boolean; patchType?: string; patch?: string; warnings?: string[] } | undefined;
  /** The decoded JSON patch; [] when there is none. */
  patch: Array<{ op: string; path: string; value?: unknown }>;
  /** The whole patch as text, handy for substring checks. */
  patchText: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** POSTs an AdmissionReview for `pod` to /mutate and decodes the answer. */
export async function admit(port: number, agent: Agent, pod: unknown, namespace = 'default'): Promise<Admission> {
  const r = await send(port, 'POST', '/mutate', { agent, body: review(pod, { namespace }) });
  let response: Admission['response'];
  try {
    response = (JSON.parse(r.body) as { response?: Admission['response'] }).response;
  } catch {
    response = undefined;
  }
  const patchText = response?.patch ? Buffer.from(response.patch, 'base64').toString('utf8') : '';
  const patch = patchText ? (JSON.parse(patchText) as Admission['patch']) : [];
  return { status: r.status, response, patch, patchText, headers: r.headers, body: r.body };
}

/** Retries `attempt` until it returns a value for which `ok` holds (no deadline of its own: see wait.ts). */
export async function eventually<T>(attempt: () => Promise<T>, ok: (v: T) => boolean, what: string, options: WaitOptions = {}): Promise<T> {
  let last: T | undefined;
  return waitUntil(what, async () => {
    const v = await attempt();
    if (ok(v)) return { v };
    last = v;
    throw new Error(`last: ${JSON.stringify(last)}`);
  }, options).then((r) => r.v);
}
