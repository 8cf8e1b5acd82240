// Where a command's API credentials come from, in kubectl's order: --kubeconfig,
// then KUBECONFIG, then the pod's own ServiceAccount (in-cluster), then
// ~/.kube/config. --context picks a context; --kube-api replaces the server URL.
import { existsSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { type Cluster, type Context, KubeConfig, type User } from '@kubernetes/client-node';

export interface KubeConnectionFlags {
  kubeconfig?: string | undefined;
  /** Overrides the server URL of the chosen configuration. */
  kubeApi?: string | undefined;
  /** A context of the kubeconfig other than its current-context. */
  context?: string | undefined;
  /** true: the pod's own ServiceAccount unless --kubeconfig is given (serve's --in-cluster=true). */
  inCluster?: boolean | undefined;
}

/** What the resolution reads besides the flags; tests bring their own. */
export interface KubeEnvironment {
  env: Readonly<Record<string, string | undefined>>;
  home: string;
  /** Prefix of /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}. */
  serviceAccountRoot: string;
}

export class KubeConfigError extends Error {}

/** None of the four places holds a configuration (and no --kube-api). */
export class NoKubeConfigError extends KubeConfigError {}

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

function processEnvironment(): KubeEnvironment {
  return { env: process.env, home: homedir(), serviceAccountRoot: '' };
}

function loadFile(path: string, what: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (err) {
    throw new KubeConfigError(`${what}: not a usable kubeconfig (${(err as Error).message})`);
  }
  return kc;
}

/**
 * kubectl's merge of a KUBECONFIG list: the first file that names a cluster, user
 * or context wins it, and current-context comes from the first file that sets one.
 * Missing files are skipped, as kubectl does; undefined when none exists.
 */
export function mergeKubeconfigFiles(paths: readonly string[]): KubeConfig | undefined {
  const clusters = new Map<string, Cluster>();
  const users = new Map<string, User>();
  const contexts = new Map<string, Context>();
  let currentContext = '';
  let found = false;
  for (const path of paths) {
    if (!existsSync(path)) continue;
    found = true;
    const kc = loadFile(path, `KUBECONFIG file ${path}`);
    for (const c of kc.clusters) if (!clusters.has(c.name)) clusters.set(c.name, c);
    for (const u of kc.users) if (!users.has(u.name)) users.set(u.name, u);
    for (const c of kc.contexts) if (!contexts.has(c.name)) contexts.set(c.name, c);
    if (currentContext === '' && kc.currentContext) currentContext = kc.currentContext;
  }
  if (!found) return undefined;
  const merged = new KubeConfig();
  merged.loadFromOptions({ clusters: [...clusters.values()], users: [...users.values()], contexts: [...contexts.values()], currentContext });
  return merged;
}

function inClusterConfig(environment: KubeEnvironment): KubeConfig | undefined {
  if (!environment.env['KUBERNETES_SERVICE_HOST']) return undefined;
  if (!existsSync(`${environment.serviceAccountRoot}${SERVICE_ACCOUNT_TOKEN}`)) return undefined;
  const kc = new KubeConfig();
  kc.loadFromCluster(environment.serviceAccountRoot);
  // loadFromCluster reads process.env; the server comes from the environment given.
  const host = environment.env['KUBERNETES_SERVICE_HOST'];
  const port = environment.env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const scheme = ['80', '8080', '8001'].includes(port) ? 'http' : 'https';
  const server = `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  kc.clusters = kc.clusters.map((c) => ({ ...c, server }));
  return kc;
}

/** The configuration kubectl would use, or undefined when there is none. `source` says where it came from. */
function resolve(flags: KubeConnectionFlags, environment: KubeEnvironment): { kc: KubeConfig; source: string } | undefined {
  if (flags.kubeconfig) {
    if (!existsSync(flags.kubeconfig)) throw new KubeConfigError(`--kubeconfig ${flags.kubeconfig}: no such file`);
    return { kc: loadFile(flags.kubeconfig, `--kubeconfig ${flags.kubeconfig}`), source: `--kubeconfig ${flags.kubeconfig}` };
  }
  if (flags.inCluster) {
    const kc = inClusterConfig(environment);
    if (!kc) {
      throw new KubeConfigError(
        `--in-cluster=true: not running in a pod (KUBERNETES_SERVICE_HOST and ${SERVICE_ACCOUNT_TOKEN} are needed); give --kubeconfig or --in-cluster=false`,
      );
    }
    return { kc, source: 'in-cluster' };
  }
  const list = (environment.env['KUBECONFIG'] ?? '').split(delimiter).filter((p) => p !== '');
  if (list.length > 0) {
    const kc = mergeKubeconfigFiles(list);
    if (kc) return { kc, source: `KUBECONFIG=${environment.env['KUBECONFIG']}` };
  }
  const inCluster = inClusterConfig(environment);
  if (inCluster) return { kc: inCluster, source: 'in-cluster' };
  const home = join(environment.home, '.kube', 'config');
  if (existsSync(home)) return { kc: loadFile(home, home), source: home };
  return undefined;
}

export function loadKubeConfig(flags: KubeConnectionFlags, environment: KubeEnvironment = processEnvironment()): KubeConfig {
  let kc = resolve(flags, environment)?.kc;
  if (!kc) {
    if (!flags.kubeApi) {
      const list = environment.env['KUBECONFIG'] ? `KUBECONFIG (${environment.env['KUBECONFIG']}: no such file)` : 'KUBECONFIG (not set)';
      throw new NoKubeConfigError(
        `no API server: looked at --kubeconfig (not given), ${list}, in-cluster (not in a pod) and ` +
          `${join(environment.home, '.kube', 'config')} (no such file); give --kubeconfig or --kube-api`,
      );
    }
    // Only a URL: no credentials. Plain http (e.g. `kubectl proxy`) has no TLS to verify.
    kc = new KubeConfig();
    kc.loadFromClusterAndUser({ name: 'kube-api', server: flags.kubeApi, skipTLSVerify: flags.kubeApi.startsWith('http://') }, { name: 'anonymous' });
  }
  if (flags.context) {
    if (!kc.getContextObject(flags.context)) {
      const names = kc.contexts.map((c) => c.name).join(', ') || 'none';
      throw new KubeConfigError(`--context ${flags.context}: no such context (the kubeconfig has: ${names})`);
    }
    kc.setCurrentContext(flags.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new KubeConfigError(
      kc.currentContext ? `the kubeconfig's context "${kc.currentContext}" names no known cluster` : 'the kubeconfig has no current-context; give --context',
    );
  }
  if (flags.kubeApi) {
    const server = flags.kubeApi;
    kc.clusters = kc.clusters.map((c) =>
      c.name === cluster.name ? { ...c, server, skipTLSVerify: c.skipTLSVerify || server.startsWith('http://') } : c,
    );
  }
  return kc;
}
