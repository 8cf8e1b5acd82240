import t from 'tap';
import jsonpatch from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { mutatePod, type MutationResult } from '../../src/mutation/index.js';
import type { IdentitySources } from '../../src/mutation/index.js';
import { parseConfigMapConfig } from '../../src/settings/config-map.js';
import { ROLE, options, pod, saSources } from '../helpers/pods.js';

const TOKEN_FILE = '/var/run/secrets/eks.amazonaws.com/serviceaccount/token';
const MOUNT = '/var/run/secrets/eks.amazonaws.com/serviceaccount';

function apply(p: V1Pod, r: MutationResult): V1Pod {
  return jsonpatch.applyPatch(p, r.patch, true, false).newDocument;
}

function envOf(p: V1Pod, i = 0): Record<string, string | undefined> {
  return Object.fromEntries((p.spec!.containers[i]!.env ?? []).map((e) => [e.name, e.value]));
}

t.test('web identity: env, volume and mount on a bare pod', async (t) => {
  const p = pod([{ name: 'app', image: 'x' }]);
  const r = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options());
  const out = apply(p, r);
  t.same(out.spec!.containers[0]!.env, [
    { name: 'AWS_ROLE_ARN', value: ROLE },
    { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE },
  ]);
  t.same(out.spec!.containers[0]!.volumeMounts, [{ name: 'aws-iam-token', readOnly: true, mountPath: MOUNT }]);
  t.same(out.spec!.volumes, [
    { name: 'aws-iam-token', projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] } },
  ]);
  t.same(r.warnings, []);
  t.equal(r.identity?.mode, 'web-identity');
});

t.test('no role, no ServiceAccount, empty role: no patch', async (t) => {
  const p = pod([{ name: 'app' }]);
  t.same(mutatePod(p, 'default', saSources({}), options()).patch, []);
  t.same(mutatePod(p, 'default', { serviceAccount: undefined }, options()).patch, []);
  t.same(mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': '' }), options()).patch, []);
  t.same(mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/audience': 'x' }), options()).patch, []);
});

t.test('patch only appends at precise paths and keeps unknown fields', async (t) => {
  const p = pod([
    { name: 'app', env: [{ name: 'A', value: '1' }], volumeMounts: [{ name: 'data', mountPath: '/data' }], futureField: { x: 1 } } as never,
  ], { spec: { volumes: [{ name: 'data', emptyDir: {} }] } });
  const r = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options());
  t.same(r.patch.map((o) => `${o.op} ${o.path}`), [
    'add /spec/volumes/-',
    'add /spec/containers/0/env/-',
    'add /spec/containers/0/env/-',
    'add /spec/containers/0/volumeMounts/-',
  ]);
  const out = apply(p, r);
  t.same((out.spec!.containers[0] as unknown as { futureField: unknown }).futureField, { x: 1 });
  t.equal(out.spec!.volumes!.length, 2);
  t.same(out.spec!.containers[0]!.env![0], { name: 'A', value: '1' });
});

const flagCases: Array<{ name: string; ann?: Record<string, string>; podAnn?: Record<string, string>; opts?: Parameters<typeof options>[0]; env?: Array<{ name: string; value: string }>; expectEnv: string[]; expiration?: number; audience?: string }> = [
  { name: 'region flag adds both region vars', opts: { region: 'eu-west-1' }, expectEnv: ['AWS_DEFAULT_REGION', 'AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'region not added when AWS_REGION set', opts: { region: 'eu-west-1' }, env: [{ name: 'AWS_REGION', value: 'x' }], expectEnv: ['AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'region not added when AWS_DEFAULT_REGION set', opts: { region: 'eu-west-1' }, env: [{ name: 'AWS_DEFAULT_REGION', value: 'x' }], expectEnv: ['AWS_DEFAULT_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'sts flag', opts: { regionalSts: true }, expectEnv: ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'sts annotation false beats flag', opts: { regionalSts: true }, ann: { 'eks.amazonaws.com/sts-regional-endpoints': 'false' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'sts annotation T (Go spelling)', ann: { 'eks.amazonaws.com/sts-regional-endpoints': 'T' }, expectEnv: ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'sts annotation invalid keeps flag', opts: { regionalSts: true }, ann: { 'eks.amazonaws.com/sts-regional-endpoints': 'yes' }, expectEnv: ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'sts not added when set', opts: { regionalSts: true }, env: [{ name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'legacy' }], expectEnv: ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'identity not added when token file set', env: [{ name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/x' }], expectEnv: ['AWS_WEB_IDENTITY_TOKEN_FILE'] },
  { name: 'SA token-expiration', ann: { 'eks.amazonaws.com/token-expiration': '3600' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 3600 },
  { name: 'SA token-expiration below minimum is raised', ann: { 'eks.amazonaws.com/token-expiration': '60' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 600 },
  { name: 'SA token-expiration invalid keeps flag', opts: { tokenExpiration: 7200 }, ann: { 'eks.amazonaws.com/token-expiration': '1h' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 7200 },
  { name: 'pod token-expiration beats SA', ann: { 'eks.amazonaws.com/token-expiration': '3600' }, podAnn: { 'eks.amazonaws.com/token-expiration': '1800' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 1800 },
  { name: 'pod token-expiration invalid is ignored', ann: { 'eks.amazonaws.com/token-expiration': '3600' }, podAnn: { 'eks.amazonaws.com/token-expiration': 'soon' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 3600 },
  { name: 'pod token-expiration 0 raised to minimum', podAnn: { 'eks.amazonaws.com/token-expiration': '0' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 600 },
  { name: 'audience annotation', ann: { 'eks.amazonaws.com/audience': 'my-aud' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], audience: 'my-aud' },
  { name: 'audience flag', opts: { tokenAudience: 'flag-aud' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], audience: 'flag-aud' },
  { name: 'custom annotation prefix', opts: { annotationPrefix: 'example.com' }, ann: { 'example.com/token-expiration': '1000' }, expectEnv: ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'], expiration: 1000 },
];

for (const c of flagCases) {
  t.test(c.name, async (t) => {
    const o = options(c.opts);
    const ann = { [`${o.annotationPrefix}/role-arn`]: ROLE, ...c.ann };
    const p = pod([{ name: 'app', ...(c.env ? { env: c.env } : {}) }], { metadata: { name: 'p', annotations: c.podAnn } });
    const r = mutatePod(p, 'default', saSources(ann, o.annotationPrefix), o);
    const out = apply(p, r);
    t.same(out.spec!.containers[0]!.env!.map((e) => e.name), c.expectEnv);
    const token = out.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!;
    t.equal(token.expirationSeconds, c.expiration ?? 86400);
    t.equal(token.audience, c.audience ?? 'sts.amazonaws.com');
  });
}

t.test('a container with identity, region and STS vars is left alone entirely', async (t) => {
  const env = [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_REGION', value: 'r' }, { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' }];
  const p = pod([{ name: 'app', env }]);
  const r = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options({ region: 'x', regionalSts: true }));
  t.same(r.patch.map((o) => o.path), ['/spec/volumes']);
});

t.test('init containers, native sidecars and containers all mutated; ephemeral never', async (t) => {
  const p = pod([{ name: 'app' }], {
    spec: {
      initContainers: [{ name: 'init' }, { name: 'sidecar', restartPolicy: 'Always' }],
      ephemeralContainers: [{ name: 'debug' }],
    },
  });
  const out = apply(p, mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options()));
  for (const c of [...out.spec!.initContainers!, ...out.spec!.containers]) {
    t.equal(c.env?.find((e) => e.name === 'AWS_ROLE_ARN')?.value, ROLE, c.name);
  }
  t.same(out.spec!.ephemeralContainers, [{ name: 'debug' }]);
});

t.test('skip-containers skips init and regular containers and warns on unknown names', async (t) => {
  const p = pod([{ name: 'app' }, { name: 'side' }], {
    spec: { initContainers: [{ name: 'init' }] },
    metadata: { name: 'p', annotations: { 'eks.amazonaws.com/skip-containers': 'side, init,ghost' } },
  });
  const r = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options());
  const out = apply(p, r);
  t.ok(out.spec!.containers[0]!.env);
  t.notOk(out.spec!.containers[1]!.env);
  t.notOk(out.spec!.initContainers![0]!.env);
  t.same(r.warnings, ['1 name(s) in annotation eks.amazonaws.com/skip-containers match no container of this pod: "ghost"']);
});

t.test('never overwrite: existing volume and mount names are kept', async (t) => {
  const p = pod([{ name: 'app', volumeMounts: [{ name: 'aws-iam-token', mountPath: '/mine' }] }], {
    spec: { volumes: [{ name: 'aws-iam-token', hostPath: { path: '/x' } }] },
  });
  const r = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options());
  t.same(r.patch.map((o) => o.path), ['/spec/containers/0/env']);
  t.match(r.warnings, [/volume "aws-iam-token" that is not a projected service-account token/]);
});

t.test('a mount at the token path under another name is not duplicated', async (t) => {
  const p = pod([{ name: 'app', volumeMounts: [{ name: 'other', mountPath: MOUNT }] }]);
  const r = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options());
  t.notOk(r.patch.some((o) => o.path.includes('volumeMounts')));
  t.match(r.warnings, [/already mounts volume "other"/]);
});

t.test('warnings: malformed ARN, invalid annotations, conflicting role var', async (t) => {
  const p = pod([{ name: 'app', env: [{ name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::999999999999:role/other' }] }]);
  const r = mutatePod(p, 'default', saSources({
    'eks.amazonaws.com/role-arn': 'arn:aws:iam::12:role/x',
    'eks.amazonaws.com/sts-regional-endpoints': 'maybe',
    'eks.amazonaws.com/token-expiration': 'x',
  }), options());
  t.equal(r.warnings.length, 4);
  t.match(r.warnings.join('\n'), /not a role ARN/);
  t.match(r.warnings.join('\n'), /not true or false/);
  t.match(r.warnings.join('\n'), /not a whole number/);
  t.match(r.warnings.join('\n'), /sets AWS_ROLE_ARN="arn:aws:iam::999999999999:role\/other" instead of/);
  t.same(mutatePod(pod([{ name: 'a' }]), 'default', saSources({ 'eks.amazonaws.com/role-arn': 'arn:aws-us-gov:iam::111122223333:role/path/to/x@y' }), options()).warnings, []);
});

t.test('windows pods get a C:\\ token path; the mount path is unchanged', async (t) => {
  const specs: Array<Partial<V1Pod['spec']>> = [
    { nodeSelector: { 'kubernetes.io/os': 'windows' } },
    { nodeSelector: { 'beta.kubernetes.io/os': 'windows' } },
    { os: { name: 'windows' } },
  ];
  for (const spec of specs) {
    const p = pod([{ name: 'app' }], { spec });
    const out = apply(p, mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options()));
    t.equal(envOf(out)['AWS_WEB_IDENTITY_TOKEN_FILE'], 'C:\\var\\run\\secrets\\eks.amazonaws.com\\serviceaccount\\token');
    t.equal(out.spec!.containers[0]!.volumeMounts![0]!.mountPath, MOUNT);
  }
  const linux = pod([{ name: 'app' }], { spec: { nodeSelector: { 'kubernetes.io/os': 'linux' } } });
  t.equal(envOf(apply(linux, mutatePod(linux, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE }), options())))['AWS_WEB_IDENTITY_TOKEN_FILE'], TOKEN_FILE);
});

t.test('container credentials take precedence and carry the label', async (t) => {
  const p = pod([{ name: 'app' }], { metadata: { name: 'p', labels: { app: 'x' } } });
  const sources: IdentitySources = { ...saSources({ 'eks.amazonaws.com/role-arn': ROLE }), containerCredentials: new Set(['default/app']) };
  const r = mutatePod(p, 'default', sources, options(), () => 0.5);
  const out = apply(p, r);
  t.same(out.metadata!.labels, { app: 'x', 'eks.amazonaws.com/pod-identity': 'enabled' });
  t.same(envOf(out), {
    AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://169.254.170.23/v1/credentials',
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token',
  });
  const vol = out.spec!.volumes![0]!;
  t.equal(vol.name, 'eks-pod-identity-token');
  t.equal(vol.projected!.sources![0]!.serviceAccountToken!.audience, 'pods.eks.amazonaws.com');
  t.equal(vol.projected!.sources![0]!.serviceAccountToken!.expirationSeconds, 79200 + 3600);
  t.equal(r.identity?.mode, 'container-credentials');
});

t.test('container credentials: jitter spans [79200, 86400]; explicit lifetimes are not jittered', async (t) => {
  const p = pod([{ name: 'app' }]);
  const sources: IdentitySources = { ...saSources({}), containerCredentials: new Set(['default/app']) };
  const exp = (random: number, s = sources, po = p): number =>
    apply(po, mutatePod(po, 'default', s, options(), () => random)).spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds!;
  t.equal(exp(0), 79200);
  t.equal(exp(0.9999999), 86400);
  t.equal(exp(0.5, { ...saSources({ 'eks.amazonaws.com/token-expiration': '10000' }), containerCredentials: sources.containerCredentials }), 10000);
  const annotated = pod([{ name: 'app' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/token-expiration': '5000' } } });
  t.equal(exp(0.5, sources, annotated), 5000);
  t.equal(apply(p, mutatePod(p, 'default', sources, options({ tokenExpiration: 3600 }), () => 0.5)).spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds, 3600);
});

t.test('container credentials only for listed ServiceAccounts', async (t) => {
  const p = pod([{ name: 'app' }]);
  const r = mutatePod(p, 'other-ns', { serviceAccount: undefined, containerCredentials: new Set(['default/app']) }, options());
  t.same(r.patch, []);
});

t.test('ConfigMap mode: exact key beats */name, SA annotations beat ConfigMap', async (t) => {
  const configMap = parseConfigMapConfig(JSON.stringify({
    '*/app': { RoleARN: 'arn:aws:iam::111111111111:role/any', Audience: 'aud-any' },
    'team/app': { RoleARN: 'arn:aws:iam::222222222222:role/team', UseRegionalSTS: true, TokenExpiration: 3600 },
    'zero/app': { RoleARN: 'arn:aws:iam::333333333333:role/zero', TokenExpiration: 0 },
  }));
  const p = pod([{ name: 'app' }]);
  const run = (ns: string, sa: Record<string, string> | undefined) =>
    apply(p, mutatePod(p, ns, { serviceAccount: sa ? saSources(sa).serviceAccount : undefined, configMap }, options()));
  const team = run('team', undefined);
  t.equal(envOf(team)['AWS_ROLE_ARN'], 'arn:aws:iam::222222222222:role/team');
  t.equal(envOf(team)['AWS_STS_REGIONAL_ENDPOINTS'], 'regional');
  t.equal(team.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds, 3600);
  const other = run('elsewhere', {});
  t.equal(envOf(other)['AWS_ROLE_ARN'], 'arn:aws:iam::111111111111:role/any');
  t.equal(other.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.audience, 'aud-any');
  t.equal(run('zero', undefined).spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds, 86400);
  t.equal(envOf(run('team', { 'eks.amazonaws.com/role-arn': ROLE }))['AWS_ROLE_ARN'], ROLE);
  const withAudience = run('team', { 'eks.amazonaws.com/audience': 'sa-aud' });
  t.equal(withAudience.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.audience, 'sa-aud');
  t.equal(envOf(withAudience)['AWS_ROLE_ARN'], 'arn:aws:iam::222222222222:role/team');
});

t.test('ConfigMap config errors are named', async (t) => {
  t.throws(() => parseConfigMapConfig('{'), /not valid JSON/);
  t.throws(() => parseConfigMapConfig('{"noslash": {}}'), /must be "namespace\/name"/);
  t.throws(() => parseConfigMapConfig('{"a/b": {"TokenExpiration": "1"}}'), /TokenExpiration must be a whole number/);
  t.throws(() => parseConfigMapConfig('[]'), /must be a JSON object/);
  t.same([...parseConfigMapConfig('').keys()], []);
});

t.test('a mutated pod mutates to an empty patch', async (t) => {
  const p = pod([{ name: 'app' }, { name: 'b', env: [{ name: 'X', value: 'y' }] }], { spec: { initContainers: [{ name: 'i' }] } });
  for (const sources of [
    saSources({ 'eks.amazonaws.com/role-arn': ROLE }),
    { ...saSources({}), containerCredentials: new Set(['default/app']) },
  ]) {
    const o = options({ region: 'us-east-1', regionalSts: true });
    const once = apply(p, mutatePod(p, 'default', sources, o));
    t.same(mutatePod(once, 'default', sources, o).patch, []);
  }
});

t.test('malformed pods do not crash the engine', async (t) => {
  const odd = pod([{ name: 'app' }], { spec: { volumes: [{ name: 'eks-pod-identity-token', projected: { sources: {} } } as never] } });
  const cc: IdentitySources = { ...saSources({}), containerCredentials: new Set(['default/app']) };
  const r = mutatePod(odd, 'default', cc, options());
  t.same(r.patch, [], 'a pod with a field of the wrong type is left alone');
  t.same(r.warnings, ['the pod could not be read (spec.volumes[0].projected.sources is an object, expected a list); it is admitted unchanged']);
  const plain = pod([{ name: 'app' }], { spec: { volumes: [{ name: 'eks-pod-identity-token', projected: { sources: [] } }] } });
  t.match(mutatePod(plain, 'default', cc, options()).warnings, [/not a projected service-account token/]);
  const bare = { kind: 'Pod', spec: { serviceAccountName: 'app', containers: [{ name: 'app' }] } } as V1Pod;
  const out = apply(bare, mutatePod(bare, 'default', cc, options()));
  t.same(out.metadata, { labels: { 'eks.amazonaws.com/pod-identity': 'enabled' } }, 'a pod without metadata gets it');
});
