// Behaviours that mutation testing of the engine showed no test pinned down:
// each case here fails if one operator, condition or anchor of the engine is
// changed. Expectations are exact (whole env lists, whole warning lists).
import t from 'tap';
import jsonpatch from 'fast-json-patch';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { mutatePod, type MutationResult } from '../../src/mutation/index.js';
import type { IdentitySources } from '../../src/mutation/index.js';
import { isWellFormedRoleArn } from '../../src/settings/values.js';
import { ROLE, options, pod, saSources } from '../helpers/pods.js';

const TOKEN_FILE = '/var/run/secrets/eks.amazonaws.com/serviceaccount/token';
const CC_TOKEN_FILE = '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token';
const CC_URI = 'http://169.254.170.23/v1/credentials';

function apply(p: V1Pod, r: MutationResult): V1Pod {
  return jsonpatch.applyPatch(structuredClone(p), r.patch, true, false).newDocument;
}

function env(p: V1Pod, i = 0): Array<[string, string | undefined]> {
  return (p.spec!.containers[i]!.env ?? []).map((e) => [e.name, e.value]);
}

const role = (extra: Record<string, string> = {}): IdentitySources => saSources({ 'eks.amazonaws.com/role-arn': ROLE, ...extra });
const cc = (extra: Record<string, string> = {}): IdentitySources => ({ ...saSources(extra), containerCredentials: new Set(['default/app']) });

t.test('a container is left alone only when identity, region AND STS setting are all its own', async (t) => {
  const all: V1Container = { name: 'app', env: [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_REGION', value: 'eu-west-1' }, { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' }] };
  const o = options({ region: 'us-east-1', regionalSts: true });
  const untouched = mutatePod(pod([all]), 'default', role(), o);
  t.same(untouched.patch.filter((op) => op.path.startsWith('/spec/containers/0/env')), [], 'all three set: no env added');

  // Region and STS set, no identity: the identity pair must still come.
  const noIdentity: V1Container = { name: 'app', env: [{ name: 'AWS_REGION', value: 'eu-west-1' }, { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' }] };
  const p = pod([noIdentity]);
  t.same(env(apply(p, mutatePod(p, 'default', role(), o))), [
    ['AWS_REGION', 'eu-west-1'],
    ['AWS_STS_REGIONAL_ENDPOINTS', 'regional'],
    ['AWS_ROLE_ARN', ROLE],
    ['AWS_WEB_IDENTITY_TOKEN_FILE', TOKEN_FILE],
  ]);

  // Identity and region set, no STS setting: only the STS variable comes.
  const noSts: V1Container = { name: 'app', env: [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_DEFAULT_REGION', value: 'eu-west-1' }] };
  const q = pod([noSts]);
  t.same(env(apply(q, mutatePod(q, 'default', role(), o))), [['AWS_ROLE_ARN', ROLE], ['AWS_DEFAULT_REGION', 'eu-west-1'], ['AWS_STS_REGIONAL_ENDPOINTS', 'regional']]);
});

t.test('container credentials label the pod, whatever its metadata holds', async (t) => {
  const label = { 'eks.amazonaws.com/pod-identity': 'enabled' };
  const noLabels = pod([{ name: 'app' }]);
  const r1 = mutatePod(noLabels, 'default', cc(), options());
  t.same(r1.patch[0], { op: 'add', path: '/metadata/labels', value: label }, 'a pod without labels (the common case) gets a labels map');
  t.same(apply(noLabels, r1).metadata!.labels, label);

  const other = pod([{ name: 'app' }], { metadata: { labels: { app: 'x' } } });
  const r2 = mutatePod(other, 'default', cc(), options());
  t.same(r2.patch[0], { op: 'add', path: '/metadata/labels/eks.amazonaws.com~1pod-identity', value: 'enabled' });
  t.same(apply(other, r2).metadata!.labels, { app: 'x', ...label });

  const labelled = pod([{ name: 'app' }], { metadata: { labels: label } });
  t.notOk(mutatePod(labelled, 'default', cc(), options()).patch.some((op) => op.path.startsWith('/metadata')), 'already labelled: nothing added');
  const web = mutatePod(noLabels, 'default', role(), options());
  t.notOk(web.patch.some((op) => op.path.startsWith('/metadata')), 'web identity never labels');
});

t.test('container credentials: regional STS from the ServiceAccount beats the flag, either way', async (t) => {
  const p = pod([{ name: 'app' }]);
  const has = (r: MutationResult): boolean => env(apply(p, r)).some(([n]) => n === 'AWS_STS_REGIONAL_ENDPOINTS');
  t.equal(has(mutatePod(p, 'default', cc({ 'eks.amazonaws.com/sts-regional-endpoints': 'false' }), options({ regionalSts: true }))), false, 'annotation false beats flag true');
  t.equal(has(mutatePod(p, 'default', cc({ 'eks.amazonaws.com/sts-regional-endpoints': 'true' }), options({ regionalSts: false }))), true, 'annotation true beats flag false');
  t.equal(has(mutatePod(p, 'default', cc(), options({ regionalSts: true }))), true, 'no annotation: the flag');
  t.same(env(apply(p, mutatePod(p, 'default', cc(), options()))), [['AWS_CONTAINER_CREDENTIALS_FULL_URI', CC_URI], ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', CC_TOKEN_FILE]]);
});

t.test('warnings about a container\'s own identity variables: exactly when they apply', async (t) => {
  const o = options();
  const same = pod([{ name: 'app', env: [{ name: 'AWS_ROLE_ARN', value: ROLE }] }]);
  t.same(mutatePod(same, 'default', role(), o).warnings, [], 'its own AWS_ROLE_ARN equal to the role: no warning');
  const differs = pod([{ name: 'app', env: [{ name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::111122223333:role/other' }] }]);
  t.same(mutatePod(differs, 'default', role(), o).warnings, [
    `container "app" sets AWS_ROLE_ARN="arn:aws:iam::111122223333:role/other" instead of "${ROLE}"; its own value is kept`,
  ]);
  const second = pod([{ name: 'app', env: [{ name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/t' }] }]);
  const r = mutatePod(second, 'default', role(), o);
  t.same(r.warnings, ['container "app" sets AWS_WEB_IDENTITY_TOKEN_FILE but not AWS_ROLE_ARN; neither is injected']);
  t.notOk(env(apply(second, r)).some(([n]) => n === 'AWS_ROLE_ARN'), 'and indeed neither is injected');
  const both = pod([{ name: 'app', env: [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/t' }] }]);
  t.same(mutatePod(both, 'default', role(), o).warnings, [], 'both set by the container: no warning');
});

t.test('re-invocation: a pod the webhook already mutated gets no patch and no warning', async (t) => {
  for (const sources of [role(), cc()]) {
    const p = pod([{ name: 'app' }, { name: 'side', env: [{ name: 'X', value: '1' }] }], { spec: { initContainers: [{ name: 'init' }] } });
    const once = apply(p, mutatePod(p, 'default', sources, options({ region: 'eu-west-1', regionalSts: true }), () => 0.5));
    const twice = mutatePod(once, 'default', sources, options({ region: 'eu-west-1', regionalSts: true }), () => 0.5);
    t.same(twice.patch, []);
    t.same(twice.warnings, []);
  }
});

t.test('the role ARN check is anchored at both ends', async (t) => {
  t.equal(isWellFormedRoleArn(ROLE), true);
  t.equal(isWellFormedRoleArn(`x${ROLE}`), false, 'text before');
  t.equal(isWellFormedRoleArn(`${ROLE} `), false, 'text after');
  t.equal(isWellFormedRoleArn(`${ROLE}\nsecond`), false, 'a second line');
  t.equal(isWellFormedRoleArn('arn:aws:iam::11112222333:role/x'), false, '11 digits');
  t.equal(isWellFormedRoleArn('arn:aws:iam::1111222233334:role/x'), false, '13 digits');
  t.equal(isWellFormedRoleArn('arn:aws-cn:iam::111122223333:role/path/x'), true, 'partition and path');
  t.equal(isWellFormedRoleArn('arn:aws:iam::111122223333:role/'), false, 'no name');
  t.equal(isWellFormedRoleArn('arn:aws:iam::111122223333:user/x'), false, 'a user');
});

t.test('ServiceAccount warnings are reported even when it gives no identity', async (t) => {
  const r = mutatePod(pod([{ name: 'app' }]), 'default', saSources({ 'eks.amazonaws.com/sts-regional-endpoints': 'maybe' }), options());
  t.same(r.patch, []);
  t.same(r.warnings, ['annotation eks.amazonaws.com/sts-regional-endpoints="maybe" is not true or false; it is ignored']);
  t.equal(r.identity, undefined);
});
