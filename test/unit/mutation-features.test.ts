// The opt-in features beyond the reference webhook: include-containers,
// role-session-name and ephemeral (debug) containers. Every expectation is
// exact: the patch, the pod it produces (applied with fast-json-patch, which
// refuses a patch that does not apply) and the warnings.
import t, { type Test as Tap } from 'tap';
import jsonpatch from 'fast-json-patch';
import type { V1Container, V1EnvVar, V1Pod } from '@kubernetes/client-node';
import { mutateEphemeral, mutatePod, type PatchOperation } from '../../src/mutation/index.js';
import { reviewAdmission, type ReviewOutcome } from '../../src/server/admission.js';
import { ROLE, options, pod, saSources } from '../helpers/pods.js';
import { staticIdentities } from '../helpers/identities.js';

const MOUNT = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
const TOKEN_FILE = `${MOUNT}/token`;
const IDENTITY: V1EnvVar[] = [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE }];
const SESSION: V1EnvVar = { name: 'AWS_ROLE_SESSION_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } };
const TOKEN_MOUNT = { name: 'aws-iam-token', readOnly: true, mountPath: MOUNT };
const VOLUME = { name: 'aws-iam-token', projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] } };
const role = saSources({ 'eks.amazonaws.com/role-arn': ROLE });

function apply(p: V1Pod, patch: PatchOperation[]): V1Pod {
  return jsonpatch.applyPatch(p, patch, true, false).newDocument;
}

const paths = (patch: PatchOperation[]): string[] => patch.map((o) => `${o.op} ${o.path}`);
const annotated = (annotations: Record<string, string>, containers: V1Container[], spec: Partial<V1Pod['spec']> = {}): V1Pod =>
  pod(containers, { metadata: { name: 'p', annotations }, spec });

// --- include-containers -------------------------------------------------------

t.test('include-containers: only the named containers, init containers too', async (t) => {
  const p = annotated({ 'eks.amazonaws.com/include-containers': 'app, setup' }, [{ name: 'app' }, { name: 'worker' }], { initContainers: [{ name: 'setup' }] });
  const r = mutatePod(p, 'default', role, options());
  t.same(paths(r.patch), ['add /spec/volumes', 'add /spec/initContainers/0/env', 'add /spec/initContainers/0/volumeMounts', 'add /spec/containers/0/env', 'add /spec/containers/0/volumeMounts']);
  const out = apply(p, r.patch);
  t.same(out.spec!.initContainers![0], { name: 'setup', env: IDENTITY, volumeMounts: [TOKEN_MOUNT] });
  t.same(out.spec!.containers, [{ name: 'app', env: IDENTITY, volumeMounts: [TOKEN_MOUNT] }, { name: 'worker' }]);
  t.same(out.spec!.volumes, [VOLUME]);
  t.same(r.warnings, []);
});

t.test('include-containers and skip-containers: included and not skipped', async (t) => {
  const p = annotated(
    { 'eks.amazonaws.com/include-containers': 'app,worker', 'eks.amazonaws.com/skip-containers': 'worker,side' },
    [{ name: 'app' }, { name: 'worker' }, { name: 'side' }],
  );
  const r = mutatePod(p, 'default', role, options());
  t.same(paths(r.patch), ['add /spec/volumes', 'add /spec/containers/0/env', 'add /spec/containers/0/volumeMounts']);
  t.same(r.warnings, []);
});

t.test('include-containers: names that match no container give one capped warning', async (t) => {
  const p = annotated({ 'eks.amazonaws.com/include-containers': 'app,ghost,"spook",ghoul,wraith' }, [{ name: 'app' }]);
  const r = mutatePod(p, 'default', role, options());
  t.same(paths(r.patch), ['add /spec/volumes', 'add /spec/containers/0/env', 'add /spec/containers/0/volumeMounts']);
  t.same(r.warnings, ['4 name(s) in annotation eks.amazonaws.com/include-containers match no container of this pod: "ghost", "spook", "ghoul", ...']);

  const many = annotated({ 'eks.amazonaws.com/include-containers': Array.from({ length: 300_000 }, (_, i) => `c${i}`).join(',') }, [{ name: 'app' }]);
  const big = mutatePod(many, 'default', role, options());
  t.same(big.warnings, ['300000 name(s) in annotation eks.amazonaws.com/include-containers match no container of this pod: "c0", "c1", "c2", ...']);
  t.same(paths(big.patch), ['add /spec/volumes']);
});

t.test('include-containers that matches nothing: no container, the volume still (as for skip-containers)', async (t) => {
  const p = annotated({ 'eks.amazonaws.com/include-containers': 'ghost' }, [{ name: 'app' }]);
  const r = mutatePod(p, 'default', role, options());
  t.same(r.patch, [{ op: 'add', path: '/spec/volumes', value: [VOLUME] }]);
  t.same(r.warnings, ['1 name(s) in annotation eks.amazonaws.com/include-containers match no container of this pod: "ghost"']);
  // An empty list says "none" without a warning.
  const empty = mutatePod(annotated({ 'eks.amazonaws.com/include-containers': '' }, [{ name: 'app' }]), 'default', role, options());
  t.same(empty.patch, [{ op: 'add', path: '/spec/volumes', value: [VOLUME] }]);
  t.same(empty.warnings, []);
});

t.test('include-containers that is not valid CSV includes nothing (skip-containers then skips nothing)', async (t) => {
  const p = annotated({ 'eks.amazonaws.com/include-containers': 'a"pp' }, [{ name: 'app' }]);
  const r = mutatePod(p, 'default', role, options());
  t.same(r.patch, [{ op: 'add', path: '/spec/volumes', value: [VOLUME] }]);
  t.same(r.warnings, ['annotation eks.amazonaws.com/include-containers is not a valid comma-separated list (a quote inside the unquoted name at offset 1); no container gets credentials']);
});

t.test('include-containers follows --annotation-prefix and is parsed like skip-containers', async (t) => {
  const p = annotated({ 'example.com/include-containers': '"app"\nworker', 'eks.amazonaws.com/include-containers': 'worker' }, [{ name: 'app' }, { name: 'worker' }]);
  const r = mutatePod(p, 'default', saSources({ 'example.com/role-arn': ROLE }, 'example.com'), options({ annotationPrefix: 'example.com' }));
  // Only the first CSV record counts: "worker" on the second line is not read.
  t.same(paths(r.patch), ['add /spec/volumes', 'add /spec/containers/0/env', 'add /spec/containers/0/volumeMounts']);
  t.same(r.warnings, []);
});

// --- role-session-name --------------------------------------------------------

t.test('role-session-name: off by default, as the reference', async (t) => {
  const out = apply(pod([{ name: 'app' }]), mutatePod(pod([{ name: 'app' }]), 'default', role, options()).patch);
  t.same(out.spec!.containers[0]!.env, IDENTITY);
});

t.test('role-session-name: from the pod, the ServiceAccount or the flag, for every container', async (t) => {
  const cases: Array<[string, V1Pod, ReturnType<typeof saSources>, ReturnType<typeof options>]> = [
    ['pod annotation', annotated({ 'eks.amazonaws.com/role-session-name': 'pod-name' }, [{ name: 'app' }], { initContainers: [{ name: 'setup' }] }), role, options()],
    ['ServiceAccount annotation', pod([{ name: 'app' }], { spec: { initContainers: [{ name: 'setup' }] } }), saSources({ 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/role-session-name': 'pod-name' }), options()],
    ['flag', pod([{ name: 'app' }], { spec: { initContainers: [{ name: 'setup' }] } }), role, options({ roleSessionName: 'pod-name' })],
  ];
  for (const [name, p, sources, opts] of cases) {
    const r = mutatePod(p, 'default', sources, opts);
    const out = apply(p, r.patch);
    t.same(out.spec!.initContainers![0]!.env, [...IDENTITY, SESSION], name);
    t.same(out.spec!.containers[0]!.env, [...IDENTITY, SESSION], name);
    t.same(r.warnings, [], name);
    t.same(mutatePod(out, 'default', sources, opts).patch, [], `${name}: a second call (reinvocation) adds nothing`);
  }
});

t.test('role-session-name: other values are ignored with a warning; the pod wins over the ServiceAccount', async (t) => {
  const p = annotated({ 'eks.amazonaws.com/role-session-name': 'PodName' }, [{ name: 'app' }]);
  const r = mutatePod(p, 'default', role, options());
  t.same(apply(p, r.patch).spec!.containers[0]!.env, IDENTITY);
  t.same(r.warnings, ['annotation eks.amazonaws.com/role-session-name="PodName" is not "pod-name"; it is ignored']);

  // The ServiceAccount's bad value is ignored and the pod's pod-name holds.
  const sa = saSources({ 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/role-session-name': 'service-account' });
  const q = annotated({ 'eks.amazonaws.com/role-session-name': 'pod-name' }, [{ name: 'app' }]);
  const s = mutatePod(q, 'default', sa, options());
  t.same(apply(q, s.patch).spec!.containers[0]!.env, [...IDENTITY, SESSION]);
  t.same(s.warnings, ['annotation eks.amazonaws.com/role-session-name="service-account" is not "pod-name"; it is ignored']);

  // A bad pod value falls back to the ServiceAccount's.
  const both = mutatePod(p, 'default', saSources({ 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/role-session-name': 'pod-name' }), options());
  t.same(apply(p, both.patch).spec!.containers[0]!.env, [...IDENTITY, SESSION]);
});

t.test('role-session-name: a container\'s own AWS_ROLE_SESSION_NAME or own identity is kept', async (t) => {
  const own = { name: 'AWS_ROLE_SESSION_NAME', value: 'batch' };
  const p = pod([{ name: 'app', env: [own] }, { name: 'mine', env: [{ name: 'AWS_ROLE_ARN', value: ROLE }] }, { name: 'plain' }]);
  const r = mutatePod(p, 'default', role, options({ roleSessionName: 'pod-name' }));
  const out = apply(p, r.patch);
  t.same(out.spec!.containers[0]!.env, [own, ...IDENTITY]);
  t.same(out.spec!.containers[1]!.env, [{ name: 'AWS_ROLE_ARN', value: ROLE }], 'a container that sets its identity itself gets no session name');
  t.same(out.spec!.containers[2]!.env, [...IDENTITY, SESSION]);
  t.same(r.warnings, []);
});

t.test('role-session-name: a pod name STS would refuse gives a warning', async (t) => {
  const warning = (n: number): string =>
    `AWS_ROLE_SESSION_NAME is the pod name, ${n} characters long, but STS accepts at most 64: AssumeRoleWithWebIdentity will fail; ` +
    'shorten the name or remove eks.amazonaws.com/role-session-name (or --role-session-name)';
  const named = (metadata: V1Pod['metadata']): V1Pod => pod([{ name: 'app' }], { metadata });
  const opts = options({ roleSessionName: 'pod-name' });
  t.same(mutatePod(named({ name: 'a'.repeat(64) }), 'default', role, opts).warnings, [], '64 characters are fine');
  t.ok(`pod-identity-webhook: ${warning(253)}`.length <= 256, 'the warning is not cut, even with the prefix the server adds');
  t.same(mutatePod(named({ name: 'a'.repeat(65) }), 'default', role, opts).warnings, [warning(65)]);
  t.same(mutatePod(named({ name: 'a'.repeat(253) }), 'default', role, opts).warnings, [warning(253)]);
  // The API server cuts generateName to 58 characters before adding 5: at most 63.
  t.same(mutatePod(named({ name: undefined as never, generateName: `${'b'.repeat(200)}-` }), 'default', role, opts).warnings, []);
  // Nobody gets the session name: no warning.
  t.same(mutatePod(named({ name: 'a'.repeat(65) }), 'default', role, options()).warnings, []);
});

t.test('role-session-name is for web identity only', async (t) => {
  const cc = { ...role, containerCredentials: new Set(['default/app']) };
  const p = annotated({ 'eks.amazonaws.com/role-session-name': 'pod-name' }, [{ name: 'app' }]);
  const r = mutatePod(p, 'default', cc, options(), () => 0);
  t.notOk(JSON.stringify(r.patch).includes('AWS_ROLE_SESSION_NAME'));
  t.same(r.warnings, ['annotation eks.amazonaws.com/role-session-name is ignored: session names apply to web identity (IRSA), and this pod gets container credentials']);
  const flag = mutatePod(pod([{ name: 'app' }]), 'default', cc, options({ roleSessionName: 'pod-name' }), () => 0);
  t.notOk(JSON.stringify(flag.patch).includes('AWS_ROLE_SESSION_NAME'));
  t.same(flag.warnings, [], 'the flag covers web identities and says nothing about the others');
});

// --- ephemeral containers -------------------------------------------------------

/** The pod as the API server stored it after the webhook mutated it at creation. */
function created(p: V1Pod, sources = role, opts = options()): V1Pod {
  return apply(p, mutatePod(p, 'default', sources, opts, () => 0).patch);
}

function withDebug(p: V1Pod, ...debug: Array<Record<string, unknown>>): V1Pod {
  return { ...p, spec: { ...p.spec!, ephemeralContainers: [...(p.spec!.ephemeralContainers ?? []), ...debug] as never } };
}

const ephemeralOn = options({ mutateEphemeralContainers: true });

t.test('ephemeral: a new debug container gets the env and mount the pod has, never a volume', async (t) => {
  const stored = created(pod([{ name: 'app' }]));
  const updated = withDebug(stored, { name: 'debugger', image: 'busybox' });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.same(r.patch, [
    { op: 'add', path: '/spec/ephemeralContainers/0/env', value: IDENTITY },
    { op: 'add', path: '/spec/ephemeralContainers/0/volumeMounts', value: [TOKEN_MOUNT] },
  ]);
  t.same(r.warnings, []);
  t.equal(r.mode, 'web-identity');
  const out = apply(updated, r.patch);
  t.same(out.spec!.ephemeralContainers, [{ name: 'debugger', image: 'busybox', env: IDENTITY, volumeMounts: [TOKEN_MOUNT] }]);
  t.same(out.spec!.volumes, stored.spec!.volumes);
  t.same(mutateEphemeral(out, stored, ephemeralOn).patch, [], 'reinvocation adds nothing');
});

t.test('ephemeral: only containers the old pod did not have; their own env is appended to', async (t) => {
  const stored = withDebug(created(pod([{ name: 'app' }])), { name: 'old-debugger' });
  const updated = withDebug(stored, { name: 'debugger', env: [{ name: 'X', value: '1' }], volumeMounts: [{ name: 'data', mountPath: '/data' }] });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.same(paths(r.patch), ['add /spec/ephemeralContainers/1/env/-', 'add /spec/ephemeralContainers/1/env/-', 'add /spec/ephemeralContainers/1/volumeMounts/-']);
  const out = apply(updated, r.patch);
  t.same(out.spec!.ephemeralContainers![0], { name: 'old-debugger' });
  t.same(out.spec!.ephemeralContainers![1]!.env, [{ name: 'X', value: '1' }, ...IDENTITY]);
});

t.test('ephemeral: the pod\'s region, STS and session-name variables come along', async (t) => {
  const opts = options({ region: 'eu-west-1', regionalSts: true, roleSessionName: 'pod-name' });
  const stored = created(pod([{ name: 'app' }]), role, opts);
  const updated = withDebug(stored, { name: 'debugger' });
  // The debug container gets what the pod has, whatever the flags say now.
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.same(apply(updated, r.patch).spec!.ephemeralContainers![0]!.env, [
    { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' },
    { name: 'AWS_DEFAULT_REGION', value: 'eu-west-1' },
    { name: 'AWS_REGION', value: 'eu-west-1' },
    ...IDENTITY,
    SESSION,
  ]);
});

t.test('ephemeral: container credentials are carried over the same way', async (t) => {
  const cc = { ...role, containerCredentials: new Set(['default/app']) };
  const stored = created(pod([{ name: 'app' }]), cc);
  const updated = withDebug(stored, { name: 'debugger' });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.equal(r.mode, 'container-credentials');
  const mount = '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount';
  t.same(apply(updated, r.patch).spec!.ephemeralContainers![0], {
    name: 'debugger',
    env: [
      { name: 'AWS_CONTAINER_CREDENTIALS_FULL_URI', value: 'http://169.254.170.23/v1/credentials' },
      { name: 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', value: `${mount}/eks-pod-identity-token` },
    ],
    volumeMounts: [{ name: 'eks-pod-identity-token', readOnly: true, mountPath: mount }],
  });
});

t.test('ephemeral: no change for a pod that was given no identity', async (t) => {
  const plain = pod([{ name: 'app' }]);
  const r = mutateEphemeral(withDebug(plain, { name: 'debugger' }), plain, ephemeralOn);
  t.same(r, { patch: [], warnings: [], mode: undefined });
  // A volume of that name that is not a token is not an identity.
  const hostPath = pod([{ name: 'app', volumeMounts: [{ name: 'aws-iam-token', mountPath: MOUNT }], env: IDENTITY }], { spec: { volumes: [{ name: 'aws-iam-token', hostPath: { path: '/x' } }] } });
  t.same(mutateEphemeral(withDebug(hostPath, { name: 'debugger' }), hostPath, ephemeralOn).patch, []);
});

t.test('ephemeral: a token volume no container uses gives a warning and no change', async (t) => {
  const stored = created(annotated({ 'eks.amazonaws.com/include-containers': '' }, [{ name: 'app' }]));
  const r = mutateEphemeral(withDebug(stored, { name: 'debugger' }), stored, ephemeralOn);
  t.same(r.patch, []);
  t.same(r.warnings, ['the pod has the token volume "aws-iam-token" but no container that mounts it with AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE; new ephemeral containers are left unchanged']);
});

t.test('ephemeral: skip-containers and include-containers apply to debug containers, without new warnings', async (t) => {
  const skipping = created(annotated({ 'eks.amazonaws.com/skip-containers': 'debugger' }, [{ name: 'app' }]));
  const s = mutateEphemeral(withDebug(skipping, { name: 'debugger' }, { name: 'other' }), skipping, ephemeralOn);
  t.same(paths(s.patch), ['add /spec/ephemeralContainers/1/env', 'add /spec/ephemeralContainers/1/volumeMounts']);
  t.same(s.warnings, []);
  const including = created(annotated({ 'eks.amazonaws.com/include-containers': 'app,debugger,ghost', 'eks.amazonaws.com/token-expiration': 'soon' }, [{ name: 'app' }]));
  const i = mutateEphemeral(withDebug(including, { name: 'other' }, { name: 'debugger' }), including, ephemeralOn);
  t.same(paths(i.patch), ['add /spec/ephemeralContainers/1/env', 'add /spec/ephemeralContainers/1/volumeMounts']);
  t.same(i.warnings, []);
});

t.test('ephemeral: a debug container with its own role keeps it, with the usual warning', async (t) => {
  const stored = created(pod([{ name: 'app' }]));
  const updated = withDebug(stored, { name: 'debugger', env: [{ name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::111122223333:role/other' }] });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.same(paths(r.patch), ['add /spec/ephemeralContainers/0/volumeMounts']);
  t.same(r.warnings, ['container "debugger" sets AWS_ROLE_ARN="arn:aws:iam::111122223333:role/other" instead of "arn:aws:iam::111122223333:role/s3-reader"; its own value is kept']);
});

t.test('ephemeral: unreadable pods get no patch and a warning', async (t) => {
  const stored = created(pod([{ name: 'app' }]));
  t.same(mutateEphemeral(withDebug(stored, { name: 7 }), stored, ephemeralOn), {
    patch: [],
    warnings: ['the pod could not be read (spec.ephemeralContainers[0].name is a number, expected a string); it is admitted unchanged'],
    mode: undefined,
  });
  t.same(mutateEphemeral(withDebug(stored, { name: 'debugger' }), { spec: { ephemeralContainers: 'x' } }, ephemeralOn).warnings, [
    'the pod could not be read (old object: spec.ephemeralContainers is the string "x", expected a list); it is admitted unchanged',
  ]);
});

// --- the admission route --------------------------------------------------------

function ephemeralReview(object: unknown, oldObject: unknown, extra: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      subResource: 'ephemeralcontainers',
      namespace: 'default',
      operation: 'UPDATE',
      object,
      oldObject,
      ...extra,
    },
  };
}

function responseOf(t: Tap, outcome: ReviewOutcome | Promise<ReviewOutcome>): { patch?: unknown; warnings?: string[]; allowed: boolean } {
  t.notOk(outcome instanceof Promise, 'answered synchronously: no ServiceAccount lookup');
  const { response } = JSON.parse((outcome as ReviewOutcome).review) as { response: { patch?: string; warnings?: string[]; allowed: boolean } };
  return { ...response, ...(response.patch ? { patch: JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) } : {}) };
}

t.test('admission: UPDATE of pods/ephemeralcontainers with --mutate-ephemeral-containers', async (t) => {
  const ids = staticIdentities();
  const asked: string[] = [];
  const provider = { ...ids.provider, serviceAccount: (ns: string, name: string) => (asked.push(`${ns}/${name}`), ids.provider.serviceAccount(ns, name)) };
  const stored = created(pod([{ name: 'app' }]));
  const updated = withDebug(stored, { name: 'debugger' });

  const on = reviewAdmission(ephemeralReview(updated, stored), provider, ephemeralOn);
  t.same(responseOf(t, on), {
    uid: 'u-1',
    allowed: true,
    patchType: 'JSONPatch',
    patch: [
      { op: 'add', path: '/spec/ephemeralContainers/0/env', value: IDENTITY },
      { op: 'add', path: '/spec/ephemeralContainers/0/volumeMounts', value: [TOKEN_MOUNT] },
    ],
  });
  t.equal((on as ReviewOutcome).outcome, 'mutated');
  t.same(asked, []);

  const off = reviewAdmission(ephemeralReview(updated, stored), provider, options());
  t.same(responseOf(t, off), {
    uid: 'u-1',
    allowed: true,
    warnings: ['pod-identity-webhook: the ephemeral containers are admitted unchanged: this webhook runs without --mutate-ephemeral-containers'],
  });
  t.equal((off as ReviewOutcome).outcome, 'ignored');

  // Any other UPDATE, and other subresources, are still let through untouched.
  for (const extra of [{ subResource: undefined }, { subResource: 'status' }, { operation: 'CREATE' }]) {
    const other = reviewAdmission(ephemeralReview(updated, stored, extra), provider, ephemeralOn);
    const outcome = other instanceof Promise ? await other : other;
    t.notOk(JSON.parse(outcome.review).response.patch, JSON.stringify(extra));
  }

  t.throws(() => reviewAdmission(ephemeralReview(updated, undefined), provider, ephemeralOn), /request.oldObject is not a Pod with a spec/);
});
