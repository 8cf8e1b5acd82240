// How every command finds its API server: kubectl's order (--kubeconfig,
// KUBECONFIG merged by kubectl's rules, in-cluster, ~/.kube/config), then
// --context and --kube-api. Temp files and a made-up environment, no cluster.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import t, { type Test } from 'tap';
import { stringify } from 'yaml';
import { type KubeEnvironment, KubeConfigError, loadKubeConfig, NoKubeConfigError } from '../../src/kube/client.js';

interface FileSpec {
  clusters?: [string, string][];
  users?: [string, string][];
  contexts?: [string, string, string][];
  current?: string;
  ca?: string;
}

function kubeconfig(dir: string, name: string, spec: FileSpec): string {
  const path = join(dir, name);
  writeFileSync(path, stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: (spec.clusters ?? []).map(([n, server]) => ({ name: n, cluster: { server, ...(spec.ca ? { 'certificate-authority': spec.ca } : {}) } })),
    users: (spec.users ?? []).map(([n, token]) => ({ name: n, user: { token } })),
    contexts: (spec.contexts ?? []).map(([n, cluster, user]) => ({ name: n, context: { cluster, user } })),
    ...(spec.current ? { 'current-context': spec.current } : {}),
  }));
  return path;
}

function setup(t: Test): { dir: string; env: (vars: Record<string, string>) => KubeEnvironment; pod: () => string } {
  const dir = mkdtempSync(join(tmpdir(), 'piw-kc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const home = join(dir, 'home');
  mkdirSync(home);
  const saRoot = join(dir, 'pod');
  return {
    dir,
    env: (vars) => ({ env: vars, home, serviceAccountRoot: saRoot }),
    /** Makes the service-account files a pod has; returns the token path. */
    pod: () => {
      const sa = join(saRoot, 'var/run/secrets/kubernetes.io/serviceaccount');
      mkdirSync(sa, { recursive: true });
      writeFileSync(join(sa, 'token'), 'pod-token');
      writeFileSync(join(sa, 'ca.crt'), 'not read here');
      writeFileSync(join(sa, 'namespace'), 'webhooks');
      return join(sa, 'token');
    },
  };
}

const POD_ENV = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

t.test('--kubeconfig comes first, even with KUBECONFIG set and inside a pod', async (t) => {
  const { dir, env, pod } = setup(t);
  pod();
  const flag = kubeconfig(dir, 'flag', { clusters: [['c', 'https://flag:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']], current: 'ctx' });
  const fromEnv = kubeconfig(dir, 'env', { clusters: [['c', 'https://env:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']], current: 'ctx' });
  const kc = loadKubeConfig({ kubeconfig: flag }, env({ KUBECONFIG: fromEnv, ...POD_ENV }));
  t.equal(kc.cluster.server, 'https://flag:6443');
  t.throws(() => loadKubeConfig({ kubeconfig: join(dir, 'missing') }, env({ KUBECONFIG: fromEnv })), /--kubeconfig .*missing: no such file/);
});

t.test('KUBECONFIG: a list merged by kubectl\'s rules, missing files skipped', async (t) => {
  const { dir, env } = setup(t);
  const a = kubeconfig(dir, 'a', { clusters: [['shared', 'https://from-a:6443']], users: [['ua', 'ta']], contexts: [['ctx-a', 'shared', 'ua']] });
  const b = kubeconfig(dir, 'b', {
    clusters: [['shared', 'https://from-b:6443'], ['only-b', 'https://only-b:6443']],
    users: [['ub', 'tb']],
    contexts: [['ctx-a', 'only-b', 'ub'], ['ctx-b', 'only-b', 'ub']],
    current: 'ctx-a',
  });
  const c = kubeconfig(dir, 'c', { clusters: [['only-c', 'https://only-c:6443']], users: [['uc', 'tc']], contexts: [['ctx-c', 'only-c', 'uc']], current: 'ctx-c' });
  const kc = loadKubeConfig({}, env({ KUBECONFIG: [join(dir, 'nope'), a, b, c].join(delimiter) }));
  // current-context from b (a sets none, b is first to set one); ctx-a and the
  // cluster "shared" from a (first file to name them wins).
  t.equal(kc.contextName, 'ctx-a');
  t.equal(kc.cluster.server, 'https://from-a:6443');
  t.equal(kc.user.name, 'ua');
  t.same(kc.config.clusters.map((x) => x.name).sort(), ['only-b', 'only-c', 'shared']);
  t.same(kc.config.contexts.map((x) => x.name).sort(), ['ctx-a', 'ctx-b', 'ctx-c']);
  t.equal(kc.config.contexts.find((c) => c.name === 'ctx-b')?.user, 'ub');

  const ctx = loadKubeConfig({ context: 'ctx-c' }, env({ KUBECONFIG: [a, b, c].join(delimiter) }));
  t.equal(ctx.cluster.server, 'https://only-c:6443', '--context picks another context');
  t.throws(() => loadKubeConfig({ context: 'nope' }, env({ KUBECONFIG: a })), /--context nope: no such context \(the kubeconfig has: ctx-a\)/);
});

t.test('relative paths in a merged file stay relative to that file', async (t) => {
  const { dir, env } = setup(t);
  mkdirSync(join(dir, 'sub'));
  const a = kubeconfig(join(dir, 'sub'), 'a', { clusters: [['c', 'https://a:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']], current: 'ctx', ca: 'ca.crt' });
  const kc = loadKubeConfig({}, env({ KUBECONFIG: a }));
  t.equal(kc.cluster.caFile, join(dir, 'sub', 'ca.crt'));
});

t.test('in a pod (and no KUBECONFIG): the pod\'s ServiceAccount, before ~/.kube/config', async (t) => {
  const { dir, env, pod } = setup(t);
  const token = pod();
  mkdirSync(join(dir, 'home', '.kube'));
  kubeconfig(join(dir, 'home', '.kube'), 'config', { clusters: [['c', 'https://home:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']], current: 'ctx' });
  const kc = loadKubeConfig({}, env(POD_ENV));
  t.equal(kc.cluster.server, 'https://10.96.0.1:443');
  t.equal(kc.user.tokenFile, token);
  t.equal(kc.cluster.caFile, join(dir, 'pod/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'));
  const v6 = loadKubeConfig({}, env({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }));
  t.equal(v6.cluster.server, 'https://[fd00::1]:6443');

  // KUBECONFIG comes before in-cluster ...
  const a = kubeconfig(dir, 'a', { clusters: [['c', 'https://env:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']], current: 'ctx' });
  t.equal(loadKubeConfig({}, env({ ...POD_ENV, KUBECONFIG: a })).cluster.server, 'https://env:6443');
  // ... unless --in-cluster=true asks for the pod's own ServiceAccount.
  t.equal(loadKubeConfig({ inCluster: true }, env({ ...POD_ENV, KUBECONFIG: a })).cluster.server, 'https://10.96.0.1:443');
  // Outside a pod: ~/.kube/config.
  t.equal(loadKubeConfig({}, env({})).cluster.server, 'https://home:6443');
  // A host variable without the token file is not a pod.
  t.equal(loadKubeConfig({}, { ...env(POD_ENV), serviceAccountRoot: join(dir, 'elsewhere') }).cluster.server, 'https://home:6443');
});

t.test('--in-cluster=true outside a pod is an error that says what is missing', async (t) => {
  const { dir, env } = setup(t);
  t.throws(() => loadKubeConfig({ inCluster: true }, env({})), /--in-cluster=true: not running in a pod/);
  const flag = kubeconfig(dir, 'flag', { clusters: [['c', 'https://flag:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']], current: 'ctx' });
  t.equal(loadKubeConfig({ inCluster: true, kubeconfig: flag }, env({})).cluster.server, 'https://flag:6443', '--kubeconfig still wins');
});

t.test('nothing found: one error naming all four places', async (t) => {
  const { dir, env } = setup(t);
  const err = t.throws(() => loadKubeConfig({}, env({ KUBECONFIG: join(dir, 'gone') }))) as Error;
  t.ok(err instanceof NoKubeConfigError && err instanceof KubeConfigError);
  t.match(err.message, /--kubeconfig \(not given\)/);
  t.match(err.message, new RegExp(`KUBECONFIG \\(${join(dir, 'gone')}: no such file\\)`));
  t.match(err.message, /in-cluster \(not in a pod\)/);
  t.match(err.message, new RegExp(`${join(dir, 'home', '.kube', 'config')} \\(no such file\\)`));
});

t.test('--kube-api replaces the server; alone it means no credentials', async (t) => {
  const { dir, env } = setup(t);
  const a = kubeconfig(dir, 'a', { clusters: [['c', 'https://a:6443']], users: [['u', 'secret']], contexts: [['ctx', 'c', 'u']], current: 'ctx' });
  const kc = loadKubeConfig({ kubeApi: 'https://other:443' }, env({ KUBECONFIG: a }));
  t.equal(kc.cluster.server, 'https://other:443');
  t.equal(kc.user.token, 'secret');
  const alone = loadKubeConfig({ kubeApi: 'http://127.0.0.1:8001' }, env({}));
  t.equal(alone.cluster.server, 'http://127.0.0.1:8001');
  t.same((await alone.credentials()).headers, { Accept: 'application/json' }, 'no credentials');
});

t.test('a file that is not a kubeconfig, or a context without a cluster', async (t) => {
  const { dir, env } = setup(t);
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'clusters: [ {');
  t.throws(() => loadKubeConfig({}, env({ KUBECONFIG: bad })), /KUBECONFIG file .*bad: not a usable kubeconfig/);
  const none = kubeconfig(dir, 'none', { clusters: [['c', 'https://a:6443']], users: [['u', 'x']], contexts: [['ctx', 'c', 'u']] });
  t.throws(() => loadKubeConfig({}, env({ KUBECONFIG: none })), /no current-context; give --context/);
  t.equal(loadKubeConfig({ context: 'ctx' }, env({ KUBECONFIG: none })).cluster.server, 'https://a:6443');
});
