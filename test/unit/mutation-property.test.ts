// Property: whatever the pod, once mutated it mutates to an empty patch, the
// patch applies cleanly, and nothing the pod had is lost.
import t from 'tap';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parseServiceAccountAnnotations } from '../../src/settings/service-account.js';
import { mutatePod, patchJson, type IdentitySources } from '../../src/mutation/index.js';
import { options } from '../helpers/pods.js';

const envName = fc.constantFrom('AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_REGION', 'AWS_DEFAULT_REGION',
  'AWS_STS_REGIONAL_ENDPOINTS', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', 'OTHER');
const mountName = fc.constantFrom('aws-iam-token', 'eks-pod-identity-token', 'data');
const mountPath = fc.constantFrom('/var/run/secrets/eks.amazonaws.com/serviceaccount', '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount', '/data', '/other');

const container = (name: string): fc.Arbitrary<V1Container> =>
  fc.record({
    env: fc.option(fc.array(fc.record({ name: envName, value: fc.string({ maxLength: 5 }) }), { maxLength: 4 }), { nil: undefined }),
    volumeMounts: fc.option(fc.array(fc.record({ name: mountName, mountPath }), { maxLength: 3 }), { nil: undefined }),
    extra: fc.option(fc.string(), { nil: undefined }),
  }).map((c) => {
    const out: Record<string, unknown> = { name };
    if (c.env) out['env'] = c.env;
    if (c.volumeMounts) out['volumeMounts'] = c.volumeMounts;
    if (c.extra !== undefined) out['unknownField'] = c.extra;
    return out as unknown as V1Container;
  });

const podArb: fc.Arbitrary<V1Pod> = fc.record({
  containers: fc.integer({ min: 1, max: 3 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => container(`c${i}`)))),
  initContainers: fc.option(fc.integer({ min: 1, max: 2 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => container(`i${i}`)))), { nil: undefined }),
  volumes: fc.option(fc.array(fc.record({ name: mountName }), { maxLength: 2 }), { nil: undefined }),
  labels: fc.option(fc.dictionary(fc.constantFrom('app', 'eks.amazonaws.com/pod-identity'), fc.constantFrom('x', 'enabled')), { nil: undefined }),
  annotations: fc.option(fc.dictionary(fc.constantFrom('eks.amazonaws.com/skip-containers', 'eks.amazonaws.com/token-expiration'), fc.constantFrom('c0', 'i0,c1', '3600', 'bad', '1')), { nil: undefined }),
  windows: fc.boolean(),
}).map((p) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', namespace: 'default', ...(p.labels ? { labels: p.labels } : {}), ...(p.annotations ? { annotations: p.annotations } : {}) },
  spec: {
    serviceAccountName: 'app',
    containers: p.containers,
    ...(p.initContainers ? { initContainers: p.initContainers } : {}),
    ...(p.volumes ? { volumes: p.volumes } : {}),
    ...(p.windows ? { nodeSelector: { 'kubernetes.io/os': 'windows' } } : {}),
  },
}) as V1Pod);

const sourcesArb: fc.Arbitrary<IdentitySources> = fc.record({
  role: fc.constantFrom('arn:aws:iam::111122223333:role/a', 'bad-arn'),
  sts: fc.option(fc.constantFrom('true', 'false', 'nope'), { nil: undefined }),
  cc: fc.boolean(),
}).map(({ role, sts, cc }) => ({
  serviceAccount: parseServiceAccountAnnotations({ 'eks.amazonaws.com/role-arn': role, ...(sts ? { 'eks.amazonaws.com/sts-regional-endpoints': sts } : {}) }, 'eks.amazonaws.com'),
  containerCredentials: cc ? new Set(['default/app']) : undefined,
}));

t.test('a mutated pod mutates to an empty patch and loses nothing', async (t) => {
  fc.assert(
    fc.property(podArb, sourcesArb, fc.boolean(), fc.boolean(), (pod, sources, region, sts) => {
      const o = options({ region: region ? 'us-east-1' : '', regionalSts: sts });
      const first = mutatePod(pod, 'default', sources, o);
      if (patchJson(first.patch) !== JSON.stringify(first.patch)) throw new Error('patchJson differs from JSON.stringify');
      const once = jsonpatch.applyPatch(pod, first.patch, true, false).newDocument as V1Pod;
      const again = mutatePod(once, 'default', sources, o);
      if (again.patch.length !== 0) throw new Error(`second patch not empty: ${JSON.stringify(again.patch)}`);
      // Only additions: every original env var, mount, volume and unknown field is still there, unchanged.
      const before = JSON.stringify(pod.spec!.containers.map((c) => [(c as unknown as { unknownField?: string }).unknownField, c.env, c.volumeMounts]));
      const after = JSON.stringify(once.spec!.containers.map((c) => [
        (c as unknown as { unknownField?: string }).unknownField,
        c.env?.slice(0, pod.spec!.containers.find((x) => x.name === c.name)!.env?.length ?? 0) ?? undefined,
        c.volumeMounts?.slice(0, pod.spec!.containers.find((x) => x.name === c.name)!.volumeMounts?.length ?? 0) ?? undefined,
      ]));
      const normalise = (s: string) => s.replace(/\[\]/g, 'null');
      if (normalise(before) !== normalise(after)) throw new Error(`existing fields changed:\n${before}\n${after}`);
      for (const v of pod.spec!.volumes ?? []) {
        if (!once.spec!.volumes!.some((w) => JSON.stringify(w) === JSON.stringify(v))) throw new Error('volume lost');
      }
    }),
    { numRuns: 500 },
  );
  t.pass('500 generated pods');
});
