// A real cluster for the end-to-end tests: E2E_KUBECONFIG when given (kind or
// any cluster), else a control plane of this file's own from
// `scripts/controlplane.sh run` (etcd + kube-apiserver, built by `npm test`
// before the test runner starts), tied to this process: it stops when the
// test closes the script's stdin, or when this process dies in any way.
// Without the binaries (no Go), the tests skip with the reason; under CI=true
// that is a failure.
import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig, type V1MutatingWebhookConfiguration, type V1RuleWithOperations } from '@kubernetes/client-node';
import { spawnTied } from './child.js';
import { exitedReason, waitUntil } from './wait.js';
import { cli, SERVE_COMMAND } from './serve-command.js';

export interface Cluster {
  kubeconfig: string;
  kc: KubeConfig;
  core: CoreV1Api;
  admission: AdmissionregistrationV1Api;
  /** Stops the control plane if this call started it; resolves when it is gone. */
  down(): Promise<void>;
  /** The state directory of scripts/controlplane.sh; undefined for an E2E_KUBECONFIG cluster. */
  stateDir?: string | undefined;
  /** Runs a scripts/controlplane.sh command on this control plane (with the same PIW_* settings); undefined for an E2E_KUBECONFIG cluster. */
  controlplane?: ((command: 'stop-apiserver' | 'start-apiserver' | 'restart-apiserver') => void) | undefined;
}

export type ClusterOrSkip = { cluster: Cluster } | { skip: string };

/** Where scripts/controlplane.sh keeps its binaries and run directories. */
export const CONTROLPLANE_CACHE = join(process.env['XDG_CACHE_HOME'] ?? join(process.env['HOME'] ?? tmpdir(), '.cache'), 'pod-identity-webhook');

function hasGo(): boolean {
  return spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;
}

/** Why no control plane can be started here, or undefined when one can (binaries built, or Go to build them). */
export function controlPlaneMissing(): string | undefined {
  if (process.env['E2E_KUBECONFIG']) return undefined;
  const bin = join(CONTROLPLANE_CACHE, 'bin');
  if (existsSync(join(bin, 'etcd')) && existsSync(join(bin, 'kube-apiserver'))) return undefined;
  if (hasGo()) return undefined;
  return `Go is not installed and ${bin} has no kube-apiserver and etcd, so there is no control plane (install Go, or set E2E_KUBECONFIG to use a cluster)`;
}

/**
 * The skip reason for a test that needs the control plane: `false` when it can run.
 * Under CI=true a missing control plane throws: CI must run the end-to-end tests.
 */
export function skipWithoutControlPlane(): string | false {
  const missing = controlPlaneMissing();
  if (!missing) return false;
  if (process.env['CI'] && process.env['CI'] !== 'false') throw new Error(`CI is set, and the end-to-end tests cannot run: ${missing}`);
  return missing;
}

/** A supervised control plane: `scripts/controlplane.sh run NAME`, tied to this process. */
export interface ControlPlaneProcess {
  child: ChildProcess;
  kubeconfig: string;
  /** Everything the script printed on stderr. */
  output(): string;
  /** Closes the script's stdin (it then stops both daemons, removes its directory and exits). */
  stop(): Promise<void>;
}

/**
 * Starts `scripts/controlplane.sh run NAME` and resolves with its kubeconfig once
 * the API server is ready. There is no deadline here: the script reports a
 * daemon that dies, and the test file's timeout bounds a start that hangs.
 * Its stderr is passed through (build and start progress) and kept for errors.
 */
export function startControlPlane(name: string, env: Record<string, string> = {}, options: ClusterOptions = {}): Promise<ControlPlaneProcess> {
  // SIGTERM when this process dies: the script's trap stops the daemons and
  // removes its run directory; if the script itself is SIGKILLed, its daemons
  // get their own parent-death SIGKILL, and the next run removes the directory.
  const child = spawnTied('scripts/controlplane.sh', ['run', name, ...(options.withNode ? ['--with-node'] : [])], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } }, 'TERM');
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    process.stderr.write(c);
  });
  // EPIPE when the script has already exited: its exit is reported below.
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
      const line = stdout.split('\n').find((l) => l.startsWith('KUBECONFIG='));
      if (!line) return;
      resolve({
        child,
        kubeconfig: line.slice('KUBECONFIG='.length),
        output: () => stderr,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.stdin!.end();
          await exited;
        },
      });
    });
    child.once('exit', (code, signal) => {
      reject(new Error(`scripts/controlplane.sh run ${name} exited (${signal ?? code}) before the control plane was ready:\n${stderr.trim()}`));
    });
  });
}

export interface ClusterOptions {
  /**
   * A node as well (`--with-node`: containerd and a kubelet registered as
   * PIW_NODE_NAME, default piw-node); env.PIW_NODE_IMAGES names the image
   * archives to import, the sandbox image among them. Not with E2E_KUBECONFIG.
   */
  withNode?: boolean;
}

/**
 * `name` names this file's control plane (its run directory); `env` carries
 * PIW_* settings (issuer, signing key, node images) to scripts/controlplane.sh.
 */
export async function startCluster(name: string, env: Record<string, string> = {}, options: ClusterOptions = {}): Promise<ClusterOrSkip> {
  const skip = skipWithoutControlPlane();
  if (skip) return { skip };
  if (options.withNode && process.env['E2E_KUBECONFIG']) return { skip: 'E2E_KUBECONFIG is set: the node tests run on a node of their own (scripts/controlplane.sh --with-node)' };
  let kubeconfig = process.env['E2E_KUBECONFIG'];
  let stop: () => Promise<void> = async () => undefined;
  let stateDir: string | undefined;
  if (!kubeconfig) {
    if (process.env['PIW_E2E_KEEP']) {
      // PIW_E2E_KEEP=1: a detached control plane that stays up after the test, to look at after a failure.
      stateDir = join(CONTROLPLANE_CACHE, `keep-${name}`);
      const out = execFileSync('scripts/controlplane.sh', ['up', ...(options.withNode ? ['--with-node'] : [])], { encoding: 'utf8', env: { ...process.env, PIW_CONTROLPLANE_DIR: stateDir, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
      kubeconfig = (out.trim().split('\n').pop() ?? '').replace(/^KUBECONFIG=/, '');
      console.error(`PIW_E2E_KEEP: the control plane stays up; stop it with PIW_CONTROLPLANE_DIR=${stateDir} scripts/controlplane.sh down`);
    } else {
      const cp = await startControlPlane(name, env, options);
      kubeconfig = cp.kubeconfig;
      stateDir = dirname(kubeconfig);
      stop = () => cp.stop();
    }
  }
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return {
    cluster: {
      kubeconfig,
      kc,
      core: kc.makeApiClient(CoreV1Api),
      admission: kc.makeApiClient(AdmissionregistrationV1Api),
      ...(stateDir
        ? {
            stateDir,
            // The same PIW_* settings as the running control plane, so the API server comes back the same.
            controlplane: (command: string) =>
              void execFileSync('scripts/controlplane.sh', [command], { env: { ...process.env, ...env, PIW_CONTROLPLANE_DIR: stateDir }, stdio: ['ignore', 'ignore', 'inherit'] }),
          }
        : {}),
      down: () => stop(),
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

/** Retries `fn` until it returns a value; see wait.ts. */
export const until = waitUntil;

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

export interface WebhookConfigurationOptions {
  name: string;
  /** Where the API server calls the webhook. */
  url: string;
  /** PEM of the CA that signed the webhook's certificate (none: the webhook writes the caBundle itself). */
  ca?: string | undefined;
  /** Only namespaces labelled `<label>=true` are sent to the webhook, so concurrent tests stay apart. */
  label: string;
  failurePolicy?: 'Fail' | 'Ignore';
  admissionReviewVersions?: string[];
  /** The manifests' reinvocationPolicy IfNeeded. */
  reinvoke?: boolean;
  /** Also UPDATE of pods/ephemeralcontainers (the manifests' commented-out rule). */
  ephemeralContainers?: boolean;
  webhookName?: string;
  objectSelector?: NonNullable<V1MutatingWebhookConfiguration['webhooks']>[number]['objectSelector'];
}

/** A MutatingWebhookConfiguration like the manifests' (CREATE of pods), pointed at a webhook the test runs. */
export function webhookConfiguration(o: WebhookConfigurationOptions): V1MutatingWebhookConfiguration {
  const rules: V1RuleWithOperations[] = [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }];
  if (o.ephemeralContainers) rules.push({ operations: ['UPDATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods/ephemeralcontainers'], scope: 'Namespaced' });
  return {
    metadata: { name: o.name },
    webhooks: [{
      name: o.webhookName ?? 'pod-identity-webhook.amazonaws.com',
      clientConfig: { url: o.url, ...(o.ca === undefined ? {} : { caBundle: Buffer.from(o.ca).toString('base64') }) },
      rules,
      failurePolicy: o.failurePolicy ?? 'Fail',
      ...(o.reinvoke ? { reinvocationPolicy: 'IfNeeded' } : {}),
      sideEffects: 'None',
      timeoutSeconds: 10,
      admissionReviewVersions: o.admissionReviewVersions ?? ['v1'],
      namespaceSelector: { matchLabels: { [o.label]: 'true' } },
      ...(o.objectSelector ? { objectSelector: o.objectSelector } : {}),
    }],
  };
}

/**
 * `certs` into `<dir>/certs` for WEBHOOK_HOST (the address the API server calls):
 * the CA to trust and the flags that make `serve` use the certificate.
 */
export function webhookCertificates(dir: string, extraArgs: string[] = []): { ca: string; certDir: string; tlsArgs: string[] } {
  const certDir = join(dir, 'certs');
  const r = cli(['certs', '--out-dir', certDir, '--ip', WEBHOOK_HOST, ...extraArgs]);
  if (r.status !== 0) throw new Error(`certs exited ${r.status}: ${r.stderr}`);
  return { ca: readFileSync(join(certDir, 'ca.crt'), 'utf8'), certDir, tlsArgs: ['--tls-cert', join(certDir, 'tls.crt'), '--tls-key', join(certDir, 'tls.key')] };
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
/**
 * Starts `serve` and resolves once it is ready: /readyz over HTTPS verified with
 * `ca`, or, when the webhook makes its own certificates (ca undefined), /readyz
 * on the plain-HTTP metrics port.
 */
export async function startWebhook(args: string[], ca: string | undefined, options: { port?: number } = {}): Promise<WebhookProcess> {
  const port = options.port ?? (await freePort());
  const metricsPort = await freePort();
  const [cmd, ...rest] = SERVE_COMMAND;
  const child = spawnTied(cmd, [...rest, ...args, '--port', String(port), '--metrics-port', String(metricsPort), '--bind-address', BIND_ADDRESS], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = ca === undefined ? (): Promise<number> => httpStatus(metricsPort, '/readyz') : (): Promise<number> => httpsStatus(port, '/readyz', ca);
  await until('the webhook to be ready', async () => ((await ready()) === 200 ? true : undefined), {
    giveUpIf: () => exitedReason(child, 'the webhook', () => output),
  });
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

function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    }).on('error', () => resolve(0)).end();
  });
}

export function httpsStatus(port: number, path: string, ca: string): Promise<number> {
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path, ca, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0)); // a reset mid-body (e.g. a server shutting down) is "not ready"
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
