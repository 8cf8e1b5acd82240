// A real cluster for the end-to-end tests: E2E_KUBECONFIG when given (kind or
// any cluster), else the control plane of scripts/controlplane.sh, built from
// Go modules. Without Go, and outside CI, the suite skips loudly.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { SERVE_COMMAND } from './serve-command.js';

export interface Cluster {
  kubeconfig: string;
  kc: KubeConfig;
  core: CoreV1Api;
  admission: AdmissionregistrationV1Api;
  /** Stops the control plane if this call started it. */
  down(): void;
  /** The state directory of scripts/controlplane.sh; undefined for an E2E_KUBECONFIG cluster. */
  stateDir?: string | undefined;
  /** Runs a scripts/controlplane.sh command on this control plane (with the same PIW_* settings); undefined for an E2E_KUBECONFIG cluster. */
  controlplane?: ((command: 'stop-apiserver' | 'start-apiserver' | 'restart-apiserver') => void) | undefined;
}

export type ClusterOrSkip = { cluster: Cluster } | { skip: string };

function hasGo(): boolean {
  return spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
}

/**
 * `name` separates control planes of test files that may run at once; `env`
 * carries PIW_* settings (issuer, signing key) to scripts/controlplane.sh.
 */
export function startCluster(name: string, env: Record<string, string> = {}): ClusterOrSkip {
  let kubeconfig = process.env['E2E_KUBECONFIG'];
  let started = false;
  const stateDir = join(process.env['XDG_CACHE_HOME'] ?? join(process.env['HOME'] ?? tmpdir(), '.cache'), 'pod-identity-webhook', `run-${name}`);
  const scriptEnv = { ...process.env, PIW_CONTROLPLANE_DIR: stateDir, ...env };
  if (!kubeconfig) {
    if (!hasGo()) {
      if (process.env['CI']) throw new Error('Go is missing, and CI is set: the end-to-end suite must run in CI');
      return { skip: '!!! END-TO-END TESTS SKIPPED: Go is not installed, so no kube-apiserver can be built (set E2E_KUBECONFIG to use a cluster) !!!' };
    }
    const out = execFileSync('scripts/controlplane.sh', ['up'], { encoding: 'utf8', env: scriptEnv, stdio: ['ignore', 'pipe', 'inherit'] });
    const last = out.trim().split('\n').pop() ?? '';
    if (!last.startsWith('KUBECONFIG=')) throw new Error(`scripts/controlplane.sh up printed no KUBECONFIG line: ${out}`);
    kubeconfig = last.slice('KUBECONFIG='.length);
    started = true;
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return {
    cluster: {
      kubeconfig,
      kc,
      core: kc.makeApiClient(CoreV1Api),
      admission: kc.makeApiClient(AdmissionregistrationV1Api),
      ...(started
        ? {
            stateDir,
            controlplane: (command: string) => void execFileSync('scripts/controlplane.sh', [command], { env: scriptEnv, stdio: ['ignore', 'ignore', 'inherit'] }),
          }
        : {}),
      down() {
        // PIW_E2E_KEEP=1 leaves the control plane up to look at it after a failure.
        if (started && !process.env['PIW_E2E_KEEP']) execFileSync('scripts/controlplane.sh', ['down'], { env: scriptEnv, stdio: 'ignore' });
      },
    },
  };
}

export function kubectl(kubeconfig: string, args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('kubectl', ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', input });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** A kubeconfig that authenticates with a bearer token against the same API server. */
export function tokenKubeconfig(admin: KubeConfig, token: string, dir: string): string {
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('admin kubeconfig has no cluster');
  const caData = cluster.caData ?? (cluster.caFile ? readFileSync(cluster.caFile).toString('base64') : undefined);
  const path = join(dir, 'webhook.kubeconfig');
  writeFileSync(path, JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: { server: cluster.server, ...(caData ? { 'certificate-authority-data': caData } : { 'insecure-skip-tls-verify': true }) } }],
    users: [{ name: 'webhook', user: { token } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'webhook' } }],
    'current-context': 'c',
  }));
  return path;
}

export interface WebhookProcess {
  child: ChildProcess;
  port: number;
  metricsPort: number;
  logs: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * The address the API server uses to reach webhooks run by the tests: loopback for
 * the local control plane; for a cluster in containers (kind), E2E_WEBHOOK_HOST,
 * e.g. the Docker bridge gateway.
 */
export const WEBHOOK_HOST = process.env['E2E_WEBHOOK_HOST'] ?? '127.0.0.1';
const BIND_ADDRESS = WEBHOOK_HOST === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0';

/** `options.port`: listen there (a port chosen beforehand, e.g. named in the API server's admission kubeconfig). */
export async function startWebhook(args: string[], ca: string, options: { port?: number } = {}): Promise<WebhookProcess> {
  const port = options.port ?? (await freePort());
  const metricsPort = await freePort();
  const [cmd, ...rest] = SERVE_COMMAND;
  const child = spawn(cmd, [...rest, ...args, '--port', String(port), '--metrics-port', String(metricsPort), '--bind-address', BIND_ADDRESS], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await until('the webhook to be ready', async () => {
    if (child.exitCode !== null) throw new Error(`webhook exited with ${child.exitCode}: ${output}`);
    return (await httpsStatus(port, '/readyz', ca)) === 200 ? true : undefined;
  }, 60_000);
  return {
    child,
    port,
    metricsPort,
    logs: () => output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

export function httpsStatus(port: number, path: string, ca: string): Promise<number> {
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path, ca, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', () => resolve(0)).end();
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The payload of a JWT, without verifying it. */
export function jwtClaims(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  if (!part) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}
