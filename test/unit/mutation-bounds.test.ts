// The engine against hostile pods and the reference webhook's parsing rules:
// ill-typed pods are left alone with one warning, warnings stay within the API
// server's limits, and ConfigMap fields and token lifetimes read as the
// reference reads them.
import t from 'tap';
import jsonpatch from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { DEFAULT_MUTATION_OPTIONS, MAX_ROLE_ARN_LENGTH } from '../../src/config.js';
import { parseConfigMapConfig } from '../../src/settings/config-map.js';
import { parseContainerCredentialsConfig } from '../../src/settings/container-credentials.js';
import { decodePod, mutatePod, type IdentitySources } from '../../src/mutation/index.js';
import { boundWarnings, MAX_WARNING_LENGTH, MAX_WARNINGS_LENGTH } from '../../src/settings/warnings.js';
import { reviewAdmission, type ReviewOutcome } from '../../src/server/admission.js';
import { staticIdentities } from '../helpers/identities.js';
import { ROLE, options, pod, saSources } from '../helpers/pods.js';

const PREFIX = 'pod-identity-webhook: ';
const role = (): IdentitySources => saSources({ 'eks.amazonaws.com/role-arn': ROLE });

/** What is wrong with a list of warnings, or undefined. */
function capsBroken(warnings: readonly string[]): string | undefined {
  if (!warnings.every((w) => w.length <= MAX_WARNING_LENGTH)) return 'a warning is longer than 256 characters';
  if (warnings.reduce((n, w) => n + w.length, 0) > MAX_WARNINGS_LENGTH) return 'warnings are longer than 4096 characters in total';
  if (new Set(warnings).size !== warnings.length) return 'duplicate warnings';
  return undefined;
}

t.test('ill-typed pods get no patch and one warning naming the field', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['container entry is a list', { spec: { containers: [['x']] } }, /spec\.containers\[0\] is a list, expected an object/],
    ['object as a container name', { spec: { containers: [{ name: { toString: 1 } }] } }, /spec\.containers\[0\]\.name is an object/],
    ['object as an env value', { spec: { containers: [{ name: 'a', env: [{ name: 'AWS_ROLE_ARN', value: {} }] }] } }, /env\[0\]\.value is an object/],
    ['namespace as a list', { metadata: { namespace: ['shop'] }, spec: { containers: [] } }, /metadata\.namespace is a list/],
    ['annotation value a number', { metadata: { annotations: { x: 1 } }, spec: {} }, /metadata\.annotations\["x"\] is a number/],
    ['env is a string', { spec: { containers: [{ name: 'a', env: 'AWS' }] } }, /env is the string "AWS"/],
  ];
  for (const [name, p, why] of cases) {
    const r = mutatePod(p, 'default', role(), options());
    t.same(r.patch, [], name);
    t.equal(r.warnings.length, 1, name);
    t.match(r.warnings[0], why, name);
  }
});

t.test('null means absent; __proto__ and constructor keys are plain data', async (t) => {
  const raw = JSON.parse('{"metadata":{"labels":null,"annotations":{"__proto__":"x","constructor":"y"}},'
    + '"spec":{"nodeSelector":{"constructor":"windows"},"containers":[{"name":"__proto__","env":null,"volumeMounts":null}]}}') as unknown;
  t.notOk(decodePod(raw).problem);
  t.match(decodePod(JSON.parse('{"spec":{"nodeSelector":{"__proto__":{"kubernetes.io/os":"windows"}}}}')).problem,
    /nodeSelector\["__proto__"\] is an object/, 'an object under nodeSelector.__proto__ is an ill-typed value, not a prototype');
  const r = mutatePod(raw, 'default', { ...role(), containerCredentials: new Set(['default/default']) }, options(), () => 0);
  const out = jsonpatch.applyPatch(structuredClone(raw), r.patch, true, false).newDocument as V1Pod;
  t.equal(out.metadata!.labels!['eks.amazonaws.com/pod-identity'], 'enabled');
  t.equal(out.spec!.containers[0]!.env!.length, 2);
  t.notOk(Object.prototype.hasOwnProperty.call({}, 'kubernetes.io/os'), 'no prototype was polluted');
});

t.test('300,000 unknown skip-containers names give one short warning', async (t) => {
  const names = Array.from({ length: 300_000 }, (_, i) => `c${i}`).join(',');
  const p = pod([{ name: 'app' }, { name: 'c5' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/skip-containers': names } } });
  const r = mutatePod(p, 'default', role(), options());
  t.same(r.warnings, ['299999 name(s) in annotation eks.amazonaws.com/skip-containers match no container of this pod: "c0", "c1", "c2", ...']);
  t.same(r.patch.filter((o) => o.path.startsWith('/spec/containers/1')), [], 'c5 is skipped');
  t.ok(r.patch.some((o) => o.path.startsWith('/spec/containers/0')), 'app is not');
});

t.test('an unparsable skip-containers list skips nothing and says so', async (t) => {
  const p = pod([{ name: 'a' }, { name: 'b' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/skip-containers': 'a,b"' } } });
  const r = mutatePod(p, 'default', role(), options());
  t.ok(r.patch.some((o) => o.path.startsWith('/spec/containers/0')) && r.patch.some((o) => o.path.startsWith('/spec/containers/1')));
  t.match(r.warnings, [/not a valid comma-separated list .*no container is skipped/]);
});

t.test('warnings echoing huge values, many containers and ServiceAccount annotations stay within the caps', async (t) => {
  const huge = 'x'.repeat(1_000_000);
  const containers = Array.from({ length: 2000 }, (_, i) => ({ name: `${i}-${huge.slice(0, 500)}`, env: [{ name: 'AWS_ROLE_ARN', value: huge }] }));
  const sa = saSources({ 'eks.amazonaws.com/role-arn': `arn:${huge.slice(0, 2000)}`, 'eks.amazonaws.com/token-expiration': huge, 'eks.amazonaws.com/sts-regional-endpoints': huge });
  const r = mutatePod(pod(containers), 'default', sa, options());
  t.ok(r.warnings.length <= 17, `${r.warnings.length} warnings kept`);
  t.match(r.warnings.at(-1), /more warning\(s\) not shown/);
  t.equal(capsBroken(r.warnings), undefined);
  const sent = boundWarnings(r.warnings, PREFIX);
  t.equal(capsBroken(sent), undefined);
  t.match(sent.at(-1), /more warning\(s\) not shown|not shown/);
  t.ok(sent.every((w) => w.startsWith(PREFIX)));
});

t.test('a role ARN longer than STS accepts is ignored, not copied into every container', async (t) => {
  const longest = `arn:aws:iam::111122223333:role/${'r'.repeat(MAX_ROLE_ARN_LENGTH - 31)}`;
  t.equal(longest.length, MAX_ROLE_ARN_LENGTH);
  const containers = Array.from({ length: 50 }, (_, i) => ({ name: `c${i}` }));
  const fits = mutatePod(pod(containers), 'shop', saSources({ 'eks.amazonaws.com/role-arn': longest }), options());
  t.equal(fits.identity?.mode === 'web-identity' && fits.identity.roleArn, longest, 'an ARN of exactly the limit is used');
  t.same(fits.warnings, []);
  const huge = `${longest}x`.repeat(50);
  const r = mutatePod(pod(containers), 'shop', saSources({ 'eks.amazonaws.com/role-arn': huge }), options());
  t.equal(r.identity, undefined, 'no identity');
  t.same(r.patch, [], 'nothing is injected');
  t.same(r.warnings, [
    `annotation eks.amazonaws.com/role-arn=${JSON.stringify(`${huge.slice(0, 64)}…`)} is ${huge.length} characters long; STS accepts role ARNs of at most ${MAX_ROLE_ARN_LENGTH}, so it is ignored`,
  ]);
  t.throws(() => parseConfigMapConfig(JSON.stringify({ 'shop/app': { RoleARN: huge } })), /RoleARN is 102450 characters long; STS accepts role ARNs of at most 2048/);
});

t.test('boundWarnings never splits a surrogate pair', async (t) => {
  const w = boundWarnings(['😀'.repeat(300)], PREFIX)[0]!;
  t.ok(w.length <= MAX_WARNING_LENGTH);
  t.notOk(/[\ud800-\udfff]/u.test(w), 'no lone surrogate');
});

t.test('reviewAdmission: ill-typed pods are allowed unchanged with a warning, never an exception', async (t) => {
  const ids = staticIdentities();
  ids.set('default', 'default', { 'eks.amazonaws.com/role-arn': ROLE });
  const run = (object: unknown, request: Record<string, unknown> = {}): ReviewOutcome =>
    reviewAdmission({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', kind: { kind: 'Pod' }, operation: 'CREATE', object, ...request } },
      ids.provider, DEFAULT_MUTATION_OPTIONS) as ReviewOutcome;
  const throwing = { toString: () => { throw new Error('boom'); }, toJSON: () => { throw new Error('boom'); } };
  for (const object of [
    { metadata: { namespace: throwing }, spec: { containers: [{ name: 'a' }] } },
    { metadata: { namespace: { toString: 1 } }, spec: { containers: [{ name: 'a' }] } },
    { spec: { containers: [{ name: throwing }] } },
    { spec: { containers: [[{ name: 'a' }]] } },
  ]) {
    const body = JSON.parse(run(object).review) as { response: { uid: string; allowed: boolean; patch?: string; warnings: string[] } };
    t.equal(body.response.uid, 'u');
    t.equal(body.response.allowed, true);
    t.notOk(body.response.patch);
    t.match(body.response.warnings, [/could not be read/]);
  }
  const weirdKind = reviewAdmission({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', kind: throwing, operation: throwing, object: {} } },
    ids.provider, DEFAULT_MUTATION_OPTIONS) as ReviewOutcome;
  t.equal(weirdKind.outcome, 'ignored');
  t.throws(() => reviewAdmission({ apiVersion: throwing, kind: 'AdmissionReview' }, ids.provider, DEFAULT_MUTATION_OPTIONS), /apiVersion is an object/);
});

t.test('cc token lifetime of 86400 spread over [79200, 86400] wherever it came from', async (t) => {
  const cc = (annotations: Record<string, string>): IdentitySources => ({ ...saSources(annotations), containerCredentials: new Set(['default/app']) });
  const lifetime = (s: IdentitySources, p: V1Pod = pod([{ name: 'app' }]), o = options()): number =>
    jsonpatch.applyPatch(p, mutatePod(p, 'default', s, o, () => 0).patch, true, false).newDocument.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds!;
  t.equal(lifetime(cc({})), 79200, 'the default');
  t.equal(lifetime(cc({ 'eks.amazonaws.com/token-expiration': '86400' })), 79200, 'a ServiceAccount annotation of 86400');
  t.equal(lifetime(cc({}), pod([{ name: 'app' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/token-expiration': '86400' } } })), 79200, 'a pod annotation of 86400');
  t.equal(lifetime({ serviceAccount: undefined, containerCredentials: new Set(['default/app']), configMap: parseConfigMapConfig('{"default/app":{"RoleARN":"","TokenExpiration":86400}}') }), 79200, 'a ConfigMap entry of 86400');
  t.equal(lifetime(cc({}), pod([{ name: 'app' }]), options({ tokenExpiration: 3600 })), 3600, 'another flag value is kept');
  t.equal(lifetime(cc({ 'eks.amazonaws.com/token-expiration': '86401' })), 86401, 'any other lifetime is kept');
  t.equal(lifetime(cc({}), pod([{ name: 'app' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/token-expiration': '3600' } } })), 3600);
  // Web identity is never spread.
  const p = pod([{ name: 'app' }]);
  t.equal(jsonpatch.applyPatch(p, mutatePod(p, 'default', role(), options(), () => 0).patch, true, false).newDocument.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds, 86400);
});

t.test('ConfigMap fields match case-insensitively like Go encoding/json', async (t) => {
  const entry = (json: string) => parseConfigMapConfig(`{"shop/app": ${json}}`).get('shop/app');
  t.same(entry('{"roleArn":"arn:aws:iam::111122223333:role/a","audience":"aud","useregionalsts":true,"TOKENEXPIRATION":3600}'),
    { roleArn: 'arn:aws:iam::111122223333:role/a', audience: 'aud', regionalSts: true, tokenExpiration: 3600 });
  t.equal(entry('{"roleArn":"a","ROLEARN":"b"}')!.roleArn, 'b', 'the later key wins');
  t.equal(entry('{"ROLEARN":"b","RoleARN":"a"}')!.roleArn, 'a', 'the later key wins, exact or not');
  t.equal(entry('{"RoleARN":"a","roleArn":null}')!.roleArn, 'a', 'null leaves the field as it was');
  t.equal(entry('{"RoleARN":"a","roleArn":"b","RoleARN":"c"}')!.roleArn, 'c', 'an exact duplicate after a folded key still wins, as in Go');
  t.equal(entry('{"RoleARN":"a","roleArn":"b:\\"x\\":","x":{"RoleARN":"no"}}')!.roleArn, 'b:"x":', 'quotes and colons inside values are values');
  t.same([...parseConfigMapConfig('{"shop/app":{"RoleARN":"a"},"shop/app":{"Audience":"x"}}').values()], [{ roleArn: '', audience: 'x' }],
    'a duplicate entry replaces the earlier one whole, as Go decodes a map');
  t.equal(entry('{"RoleARN":"a\\u0000b"}')!.roleArn, 'a\u0000b', 'a NUL inside a value is kept');
  t.same(entry('{"UseRegionalSTS":false,"uſeregionalsts":true,"to\\u212aenExpiration":1200}'), { roleArn: '', regionalSts: true, tokenExpiration: 1200 },
    'long s and Kelvin sign fold like in Go');
  t.same(entry('{"role_arn":"x","RoleARNs":"y"}'), { roleArn: '' }, 'other keys are ignored');
  t.throws(() => entry('{"roleArn":5}'), /RoleARN must be a string/);
  const p = pod([{ name: 'app' }]);
  const r = mutatePod(p, 'shop', { serviceAccount: undefined, configMap: parseConfigMapConfig('{"shop/app":{"roleArn":"arn:aws:iam::111122223333:role/cm"}}') }, options());
  t.equal(r.identity?.mode === 'web-identity' && r.identity.roleArn, 'arn:aws:iam::111122223333:role/cm');
});

t.test('the identities file reads own fields only', async (t) => {
  t.same([...parseContainerCredentialsConfig('{"identities":[{"namespace":"shop","serviceAccount":"api"}]}')], ['shop/api']);
  t.throws(() => parseContainerCredentialsConfig('{"identities":[{"__proto__":{"namespace":"shop","serviceAccount":"api"}}]}'), /identities\[0\] must have/);
  t.same([...parseContainerCredentialsConfig('{"__proto__":{"identities":[{"namespace":"shop","serviceAccount":"api"}]}}')], []);
});
