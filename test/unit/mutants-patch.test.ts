// The pod patch (src/mutation/patch.ts): behaviours mutation testing showed no
// other test pinned down. Expectations are exact: whole patches, whole env
// lists, whole warning lists.
import t from 'tap';
import jsonpatch from 'fast-json-patch';
import type { V1Container, V1EnvVar, V1Pod, V1Volume } from '@kubernetes/client-node';
import { mutateEphemeral, mutatePod, type PatchOperation } from '../../src/mutation/index.js';
import { ROLE, options, pod, saSources } from '../helpers/pods.js';

const MOUNT = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
const TOKEN_FILE = `${MOUNT}/token`;
const IDENTITY: V1EnvVar[] = [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE }];
const SESSION: V1EnvVar = { name: 'AWS_ROLE_SESSION_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } };
const TOKEN_MOUNT = { name: 'aws-iam-token', readOnly: true, mountPath: MOUNT };
const volume = (expirationSeconds = 86400): V1Volume => ({
  name: 'aws-iam-token',
  projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds, path: 'token' } }] },
});
const role = saSources({ 'eks.amazonaws.com/role-arn': ROLE });
const ephemeralOn = options({ mutateEphemeralContainers: true });

function apply(p: V1Pod, patch: PatchOperation[]): V1Pod {
  return jsonpatch.applyPatch(structuredClone(p), patch, true, false).newDocument;
}

/** The pod as the API server stored it after the webhook mutated it at creation. */
function created(p: V1Pod, sources = role): V1Pod {
  return apply(p, mutatePod(p, 'default', sources, options(), () => 0).patch);
}

function withDebug(p: V1Pod, ...debug: V1Container[]): V1Pod {
  return { ...p, spec: { ...p.spec!, ephemeralContainers: [...(p.spec!.ephemeralContainers ?? []), ...debug] as never } };
}

t.test('an identity variable without a literal value (from a secret) is the container\'s own: kept, without a warning', async (t) => {
  const fromSecret: V1EnvVar = { name: 'AWS_ROLE_ARN', valueFrom: { secretKeyRef: { name: 'aws', key: 'role' } } };
  const p = pod([{ name: 'app', env: [fromSecret] }]);
  const r = mutatePod(p, 'default', role, options());
  t.same(r.patch, [
    { op: 'add', path: '/spec/volumes', value: [volume()] },
    { op: 'add', path: '/spec/containers/0/volumeMounts', value: [TOKEN_MOUNT] },
  ]);
  t.same(r.warnings, []);
});

t.test('the pod\'s token-expiration annotation sets the token lifetime, with the ServiceAccount\'s warnings', async (t) => {
  const withExpiration = (text: string): V1Pod => pod([{ name: 'app' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/token-expiration': text } } });
  const cases: Array<[string, number, string[]]> = [
    ['3600', 3600, []],
    ['60', 600, ['annotation eks.amazonaws.com/token-expiration="60" is below the minimum of 600 seconds; 600 is used']],
    ['soon', 86400, ['annotation eks.amazonaws.com/token-expiration="soon" is not a whole number of seconds; it is ignored']],
  ];
  for (const [text, seconds, warnings] of cases) {
    const r = mutatePod(withExpiration(text), 'default', role, options());
    t.same(r.patch, [
      { op: 'add', path: '/spec/volumes', value: [volume(seconds)] },
      { op: 'add', path: '/spec/containers/0/env', value: IDENTITY },
      { op: 'add', path: '/spec/containers/0/volumeMounts', value: [TOKEN_MOUNT] },
    ], text);
    t.same(r.warnings, warnings, text);
  }
});

t.test('role-session-name for a pod with neither a name nor a generateName: the session variable, no warning', async (t) => {
  const p = pod([{ name: 'app' }], { metadata: { name: undefined as never, namespace: 'default' } });
  const r = mutatePod(p, 'default', role, options({ roleSessionName: 'pod-name' }));
  t.same(apply(p, r.patch).spec!.containers[0]!.env, [...IDENTITY, SESSION]);
  t.same(r.warnings, []);
});

/** What the debug container gets when the pod's web identity is found. */
const debuggerGetsIdentity = (): unknown => ({
  patch: [
    { op: 'add', path: '/spec/ephemeralContainers/0/env', value: IDENTITY },
    { op: 'add', path: '/spec/ephemeralContainers/0/volumeMounts', value: [TOKEN_MOUNT] },
  ],
  warnings: [],
  mode: 'web-identity',
});

t.test('ephemeral: the token volume and mount are found among the pod\'s other volumes and mounts', async (t) => {
  const data = { name: 'data', mountPath: '/data' };
  const stored = created(pod([{ name: 'app', volumeMounts: [data] }], { spec: { volumes: [{ name: 'data', emptyDir: {} }] } }));
  t.same(stored.spec!.containers[0]!.volumeMounts, [data, TOKEN_MOUNT], 'the token mount comes after the pod\'s own');
  const updated = withDebug(stored, { name: 'debugger' });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.same(r, debuggerGetsIdentity());
});

t.test('ephemeral: the identity is read from the first container with the mount and both literal variables', async (t) => {
  const other = (name: string): string => `arn:aws:iam::111122223333:role/${name}`;
  const stored = pod(
    [
      // Both variables but no mount.
      { name: 'no-mount', env: [{ name: 'AWS_ROLE_ARN', value: other('no-mount') }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/no-mount/token' }] },
      // The mount and the token file, the role from a secret.
      {
        name: 'secret-role',
        env: [{ name: 'AWS_ROLE_ARN', valueFrom: { secretKeyRef: { name: 'aws', key: 'role' } } }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/secret/token' }],
        volumeMounts: [TOKEN_MOUNT],
      },
      // The mount and the role, no token file.
      { name: 'no-file', env: [{ name: 'AWS_ROLE_ARN', value: other('no-file') }], volumeMounts: [TOKEN_MOUNT] },
      { name: 'app', env: IDENTITY, volumeMounts: [TOKEN_MOUNT] },
    ],
    { spec: { volumes: [volume()] } },
  );
  const updated = withDebug(stored, { name: 'debugger' });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  t.same(r, debuggerGetsIdentity());
});

t.test('ephemeral: a pod with container credentials passes on no session name, even one a container set itself', async (t) => {
  const cc = { ...role, containerCredentials: new Set(['default/app']) };
  const stored = created(pod([{ name: 'app', env: [SESSION] }]), cc);
  const updated = withDebug(stored, { name: 'debugger' });
  const r = mutateEphemeral(updated, stored, ephemeralOn);
  const mount = '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount';
  t.same(r, {
    patch: [
      {
        op: 'add',
        path: '/spec/ephemeralContainers/0/env',
        value: [
          { name: 'AWS_CONTAINER_CREDENTIALS_FULL_URI', value: 'http://169.254.170.23/v1/credentials' },
          { name: 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', value: `${mount}/eks-pod-identity-token` },
        ],
      },
      { op: 'add', path: '/spec/ephemeralContainers/0/volumeMounts', value: [{ name: 'eks-pod-identity-token', readOnly: true, mountPath: mount }] },
    ],
    warnings: [],
    mode: 'container-credentials',
  });
});

t.test('ephemeral: an update that adds no ephemeral container changes nothing and says nothing', async (t) => {
  // The debug container was already there (unmutated) in the stored pod.
  const stored = withDebug(created(pod([{ name: 'app' }])), { name: 'debugger' });
  t.same(mutateEphemeral(structuredClone(stored), stored, ephemeralOn), { patch: [], warnings: [], mode: undefined });
  // A token volume that no container uses would give a warning, but only for a new debug container.
  const unused = withDebug(created(pod([{ name: 'app' }], { metadata: { name: 'p', annotations: { 'eks.amazonaws.com/include-containers': '' } } })), { name: 'debugger' });
  t.same(mutateEphemeral(structuredClone(unused), unused, ephemeralOn), { patch: [], warnings: [], mode: undefined });
});
