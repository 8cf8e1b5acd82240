// Where a command's API credentials come from, in kubectl's order: --kubeconfig,
// then KUBECONFIG, then the pod's own ServiceAccount (in-cluster), then
// ~/.kube/config. --context picks a context; --kube-api replaces the server URL.
// The kubeconfig is read here (with the `yaml` package) rather than by a
// generated client: loading one costs ~75 MiB and ~0.8 s before the first request.
import { existsSync, readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { parse } from 'yaml';
import { type KubeCredentials, createCredentials } from './credentials.js';

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

export interface KubeCluster {
  name: string;
  server: string;
  /** certificate-authority: a PEM file (absolute path). */
  caFile?: string | undefined;
  /** certificate-authority-data, decoded. */
  caData?: string | undefined;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string | undefined;
  proxyUrl?: string | undefined;
}

export interface ExecConfig {
  apiVersion: string;
  command: string;
  args: string[];
  env: { name: string; value: string }[];
  installHint?: string | undefined;
  provideClusterInfo: boolean;
  interactiveMode?: string | undefined;
}

export interface KubeUser {
  name: string;
  token?: string | undefined;
  tokenFile?: string | undefined;
  certFile?: string | undefined;
  /** client-certificate-data, decoded. */
  certData?: string | undefined;
  keyFile?: string | undefined;
  keyData?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  exec?: ExecConfig | undefined;
  /** Name of an auth-provider (gcp, azure, oidc): not supported. */
  authProvider?: string | undefined;
  impersonate?: string | undefined;
  impersonateUid?: string | undefined;
  impersonateGroups?: string[] | undefined;
}

export interface KubeContext {
  name: string;
  cluster: string;
  user: string;
  namespace?: string | undefined;
}

/** A kubeconfig (or the merge of several) as far as this program reads it. */
export interface KubeConfigData {
  clusters: KubeCluster[];
  users: KubeUser[];
  contexts: KubeContext[];
  currentContext: string;
}

/** The API server chosen, and how to authenticate to it. */
export interface KubeConnection extends KubeCredentials {
  /** Where the configuration came from, for messages. */
  readonly source: string;
  readonly config: KubeConfigData;
  /** The context in use; empty for in-cluster and a lone --kube-api. */
  readonly contextName: string;
  readonly cluster: KubeCluster;
  readonly user: KubeUser;
  /** The server URL without trailing slashes; paths are appended to it (it may carry a prefix). */
  readonly server: string;
}

export class KubeConfigError extends Error {}

/** None of the four places holds a configuration (and no --kube-api). */
export class NoKubeConfigError extends KubeConfigError {}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const SERVICE_ACCOUNT_TOKEN = `${SERVICE_ACCOUNT_DIR}/token`;

function processEnvironment(): KubeEnvironment {
  return { env: process.env, home: homedir(), serviceAccountRoot: '' };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

function str(o: Obj, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new Error(`${where}: ${key} must be a string`);
  return v;
}

function base64Text(o: Obj, key: string, where: string): string | undefined {
  const v = str(o, key, where);
  return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
}

function list(doc: Obj, key: string): Obj[] {
  const v = doc[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every(isObj)) throw new Error(`${key} must be a list of objects`);
  return v;
}

function named(entry: Obj, key: string, what: string): { name: string; body: Obj } {
  const name = entry['name'];
  if (typeof name !== 'string' || name === '') throw new Error(`a ${what} without a name`);
  const body = entry[key] ?? {};
  if (!isObj(body)) throw new Error(`${what} "${name}": ${key} must be an object`);
  return { name, body };
}

function parseExec(o: Obj, where: string, resolveCommand: (c: string) => string): ExecConfig {
  const command = str(o, 'command', where);
  if (!command) throw new Error(`${where}: exec without a command`);
  const args = o['args'] ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new Error(`${where}: exec args must be a list of strings`);
  const env = o['env'] ?? [];
  if (!Array.isArray(env) || !env.every((e) => isObj(e) && typeof e['name'] === 'string' && typeof e['value'] === 'string')) {
    throw new Error(`${where}: exec env must be a list of {name, value}`);
  }
  return {
    apiVersion: str(o, 'apiVersion', where) ?? '',
    command: resolveCommand(command),
    args: args,
    env: (env as Obj[]).map((e) => ({ name: e['name'] as string, value: e['value'] as string })),
    installHint: str(o, 'installHint', where),
    provideClusterInfo: o['provideClusterInfo'] === true,
    interactiveMode: str(o, 'interactiveMode', where),
  };
}

/** Parses one kubeconfig file; relative paths in it are relative to its directory (as kubectl has it). */
export function parseKubeconfig(text: string, path: string): KubeConfigData {
  const doc: unknown = parse(text) ?? {};
  if (!isObj(doc)) throw new Error('not a YAML mapping');
  const dir = dirname(resolvePath(path));
  const file = (p: string | undefined): string | undefined => (p === undefined || isAbsolute(p) ? p : join(dir, p));
  const clusters = list(doc, 'clusters').map((entry): KubeCluster => {
    const { name, body } = named(entry, 'cluster', 'cluster');
    const where = `cluster "${name}"`;
    const server = str(body, 'server', where) ?? '';
    return {
      name,
      server,
      caFile: file(str(body, 'certificate-authority', where)),
      caData: base64Text(body, 'certificate-authority-data', where),
      insecureSkipTlsVerify: body['insecure-skip-tls-verify'] === true,
      tlsServerName: str(body, 'tls-server-name', where),
      proxyUrl: str(body, 'proxy-url', where),
    };
  });
  const users = list(doc, 'users').map((entry): KubeUser => {
    const { name, body } = named(entry, 'user', 'user');
    const where = `user "${name}"`;
    const exec = body['exec'];
    if (exec !== undefined && exec !== null && !isObj(exec)) throw new Error(`${where}: exec must be an object`);
    const provider = body['auth-provider'];
    const groups = body['as-groups'];
    return {
      name,
      token: str(body, 'token', where),
      tokenFile: file(str(body, 'tokenFile', where)),
      certFile: file(str(body, 'client-certificate', where)),
      certData: base64Text(body, 'client-certificate-data', where),
      keyFile: file(str(body, 'client-key', where)),
      keyData: base64Text(body, 'client-key-data', where),
      username: str(body, 'username', where),
      password: str(body, 'password', where),
      // kubectl resolves a command with a path separator against the file's directory; a bare name is looked up in PATH.
      exec: isObj(exec) ? parseExec(exec, where, (c) => (c.includes('/') ? (file(c) as string) : c)) : undefined,
      authProvider: isObj(provider) ? (typeof provider['name'] === 'string' ? provider['name'] : 'unnamed') : undefined,
      impersonate: str(body, 'as', where),
      impersonateUid: str(body, 'as-uid', where),
      impersonateGroups: Array.isArray(groups) ? groups.map(String) : undefined,
    };
  });
  const contexts = list(doc, 'contexts').map((entry): KubeContext => {
    const { name, body } = named(entry, 'context', 'context');
    const where = `context "${name}"`;
    return { name, cluster: str(body, 'cluster', where) ?? '', user: str(body, 'user', where) ?? '', namespace: str(body, 'namespace', where) };
  });
  const current = doc['current-context'];
  return { clusters, users, contexts, currentContext: typeof current === 'string' ? current : '' };
}

function loadFile(path: string, what: string): KubeConfigData {
  try {
    return parseKubeconfig(readFileSync(path, 'utf8'), path);
  } catch (err) {
    throw new KubeConfigError(`${what}: not a usable kubeconfig (${(err as Error).message})`);
  }
}

/**
 * kubectl's merge of a KUBECONFIG list: the first file that names a cluster, user
 * or context wins it, and current-context comes from the first file that sets one.
 * Missing files are skipped, as kubectl does; undefined when none exists.
 */
export function mergeKubeconfigFiles(paths: readonly string[]): KubeConfigData | undefined {
  const clusters = new Map<string, KubeCluster>();
  const users = new Map<string, KubeUser>();
  const contexts = new Map<string, KubeContext>();
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
  return { clusters: [...clusters.values()], users: [...users.values()], contexts: [...contexts.values()], currentContext };
}

interface Selected {
  config: KubeConfigData;
  contextName: string;
  cluster: KubeCluster;
  user: KubeUser;
  source: string;
}

function inClusterConfig(environment: KubeEnvironment): Selected | undefined {
  const host = environment.env['KUBERNETES_SERVICE_HOST'];
  const root = `${environment.serviceAccountRoot}${SERVICE_ACCOUNT_DIR}`;
  if (!host || !existsSync(`${root}/token`)) return undefined;
  const port = environment.env['KUBERNETES_SERVICE_PORT'] ?? '443';
  const scheme = ['80', '8080', '8001'].includes(port) ? 'http' : 'https';
  const cluster: KubeCluster = {
    name: 'in-cluster',
    server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    caFile: `${root}/ca.crt`,
    insecureSkipTlsVerify: false,
  };
  // The kubelet rotates the projected token; it is read again as it changes.
  const user: KubeUser = { name: 'in-cluster', tokenFile: `${root}/token` };
  return { config: { clusters: [cluster], users: [user], contexts: [], currentContext: '' }, contextName: '', cluster, user, source: 'in-cluster' };
}

function select(config: KubeConfigData, source: string, context: string | undefined): Selected {
  const contextName = context ?? config.currentContext;
  if (context !== undefined && !config.contexts.some((c) => c.name === context)) {
    const names = config.contexts.map((c) => c.name).join(', ') || 'none';
    throw new KubeConfigError(`--context ${context}: no such context (the kubeconfig has: ${names})`);
  }
  if (!contextName) throw new KubeConfigError('the kubeconfig has no current-context; give --context');
  const ctx = config.contexts.find((c) => c.name === contextName);
  const cluster = ctx && config.clusters.find((c) => c.name === ctx.cluster);
  if (!cluster) throw new KubeConfigError(`the kubeconfig's context "${contextName}" names no known cluster`);
  // A context without a user, or naming an unknown one, means no credentials (as kubectl).
  const user = config.users.find((u) => u.name === ctx.user) ?? { name: ctx.user };
  return { config, contextName, cluster, user, source };
}

/** The configuration kubectl would use, or undefined when there is none. */
function resolve(flags: KubeConnectionFlags, environment: KubeEnvironment): { config: KubeConfigData; source: string } | Selected | undefined {
  if (flags.kubeconfig) {
    if (!existsSync(flags.kubeconfig)) throw new KubeConfigError(`--kubeconfig ${flags.kubeconfig}: no such file`);
    return { config: loadFile(flags.kubeconfig, `--kubeconfig ${flags.kubeconfig}`), source: `--kubeconfig ${flags.kubeconfig}` };
  }
  if (flags.inCluster) {
    const selected = inClusterConfig(environment);
    if (!selected) {
      throw new KubeConfigError(
        `--in-cluster=true: not running in a pod (KUBERNETES_SERVICE_HOST and ${SERVICE_ACCOUNT_TOKEN} are needed); give --kubeconfig or --in-cluster=false`,
      );
    }
    return selected;
  }
  const paths = (environment.env['KUBECONFIG'] ?? '').split(delimiter).filter((p) => p !== '');
  if (paths.length > 0) {
    const config = mergeKubeconfigFiles(paths);
    if (config) return { config, source: `KUBECONFIG=${environment.env['KUBECONFIG']}` };
  }
  const inCluster = inClusterConfig(environment);
  if (inCluster) return inCluster;
  const home = join(environment.home, '.kube', 'config');
  if (existsSync(home)) return { config: loadFile(home, home), source: home };
  return undefined;
}

/** What this program cannot do with the chosen cluster and user, in one line; undefined when it can. */
function unsupported(cluster: KubeCluster, user: KubeUser): string | undefined {
  if (user.authProvider) {
    return `user "${user.name}": auth-provider "${user.authProvider}" is not supported; use an exec credential plugin (such as kubelogin or gke-gcloud-auth-plugin) instead`;
  }
  if (cluster.proxyUrl) return `cluster "${cluster.name}": proxy-url is not supported`;
  const exec = user.exec;
  if (exec) {
    const versions = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];
    if (!versions.includes(exec.apiVersion)) {
      return `user "${user.name}": exec apiVersion "${exec.apiVersion}" is not supported; use ${versions.join(' or ')}`;
    }
    if (exec.interactiveMode === 'Always') return `user "${user.name}": exec interactiveMode Always needs a terminal, which this program does not give plugins`;
  }
  if ((user.certFile || user.certData) && !(user.keyFile || user.keyData)) return `user "${user.name}": a client certificate without client-key`;
  if (!(user.certFile || user.certData) && (user.keyFile || user.keyData)) return `user "${user.name}": a client-key without client-certificate`;
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    return `cluster "${cluster.name}": server "${cluster.server}" is not a URL`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `cluster "${cluster.name}": server "${cluster.server}" is not an http(s) URL`;
  return undefined;
}

export function loadKubeConfig(flags: KubeConnectionFlags, environment: KubeEnvironment = processEnvironment()): KubeConnection {
  const found = resolve(flags, environment);
  let selected: Selected;
  if (!found) {
    if (!flags.kubeApi) {
      const where = environment.env['KUBECONFIG'] ? `KUBECONFIG (${environment.env['KUBECONFIG']}: no such file)` : 'KUBECONFIG (not set)';
      throw new NoKubeConfigError(
        `no API server: looked at --kubeconfig (not given), ${where}, in-cluster (not in a pod) and ` +
          `${join(environment.home, '.kube', 'config')} (no such file); give --kubeconfig or --kube-api`,
      );
    }
    // Only a URL: no credentials.
    const cluster: KubeCluster = { name: 'kube-api', server: flags.kubeApi, insecureSkipTlsVerify: false };
    const user: KubeUser = { name: 'anonymous' };
    selected = { config: { clusters: [cluster], users: [user], contexts: [], currentContext: '' }, contextName: '', cluster, user, source: '--kube-api' };
    if (flags.context) throw new KubeConfigError(`--context ${flags.context}: no kubeconfig to take it from (only --kube-api)`);
  } else if ('cluster' in found) {
    if (flags.context) throw new KubeConfigError(`--context ${flags.context}: the in-cluster configuration has no contexts`);
    selected = found;
  } else {
    selected = select(found.config, found.source, flags.context);
  }
  if (flags.kubeApi) selected = { ...selected, cluster: { ...selected.cluster, server: flags.kubeApi } };
  const problem = unsupported(selected.cluster, selected.user);
  if (problem) throw new KubeConfigError(problem);
  const server = selected.cluster.server.replace(/\/+$/, '');
  return { ...selected, server, ...createCredentials(selected.cluster, selected.user, server) };
}
