// The decoder of untrusted pods, identity resolution without a ServiceAccount,
// and the account/partition patterns of --compose-role-arn, pinned exactly:
// whole decoded views, exact reasons for unreadable pods, exact results.
import t from 'tap';
import { decodePod, resolveIdentity, serviceAccountNameOf, type PodView } from '../../src/mutation/index.js';
import { ACCOUNT_ID, PARTITION } from '../../src/settings/role-arn.js';
import { options } from '../helpers/pods.js';

/** The view of a pod with nothing in it, with some fields replaced. */
function view(over: Partial<PodView> = {}): PodView {
  return {
    name: '',
    metadataName: undefined,
    generateName: undefined,
    namespace: undefined,
    serviceAccountName: '',
    hasMetadata: false,
    annotations: new Map(),
    labels: undefined,
    nodeSelector: new Map(),
    os: undefined,
    volumes: undefined,
    containers: [],
    ephemeralContainers: [],
    ...over,
  };
}

t.test('a well-typed pod decodes to its whole typed view', async (t) => {
  const raw = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-1', generateName: 'web-', namespace: 'shop', annotations: { a: '1' }, labels: { app: 'web' } },
    spec: {
      serviceAccountName: 'app',
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      os: { name: 'linux' },
      initContainers: [{ name: 'init', volumeMounts: [{ name: 'data', mountPath: '/data' }, {}] }],
      containers: [
        {
          name: 'app',
          env: [
            { name: 'PLAIN', value: 'v' },
            { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
            { name: 'SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
            { name: 'NO_PATH', valueFrom: { fieldRef: { apiVersion: 'v1' } } },
            { value: 'nameless' },
          ],
        },
        { name: 'side', env: [] },
      ],
      ephemeralContainers: [{ name: 'debug', env: [{ name: 'E', value: 'e' }] }, { name: 'debug-2' }],
      volumes: [
        { name: 'token', projected: { sources: [{ configMap: { name: 'c' } }, { serviceAccountToken: { audience: 'sts.amazonaws.com', path: 'token' } }] } },
        { name: 'config', projected: { sources: [{ configMap: { name: 'c' } }, { secret: { name: 's' } }] } },
        { name: 'empty', projected: {} },
        { name: 'scratch', emptyDir: {} },
        {},
      ],
    },
  };
  t.strictSame(decodePod(raw), {
    pod: view({
      name: 'web-1',
      metadataName: 'web-1',
      generateName: 'web-',
      namespace: 'shop',
      serviceAccountName: 'app',
      hasMetadata: true,
      annotations: new Map([['a', '1']]),
      labels: new Map([['app', 'web']]),
      nodeSelector: new Map([['kubernetes.io/os', 'linux']]),
      os: 'linux',
      volumes: [
        { name: 'token', serviceAccountToken: true },
        { name: 'config', serviceAccountToken: false },
        { name: 'empty', serviceAccountToken: false },
        { name: 'scratch', serviceAccountToken: false },
        { name: '', serviceAccountToken: false },
      ],
      containers: [
        { field: 'initContainers', index: 0, name: 'init', env: undefined, volumeMounts: [{ name: 'data', mountPath: '/data' }, { name: '', mountPath: '' }] },
        {
          field: 'containers',
          index: 0,
          name: 'app',
          env: [
            { name: 'PLAIN', value: 'v' },
            { name: 'POD_NAME', value: undefined, fieldPath: 'metadata.name' },
            { name: 'SECRET', value: undefined },
            { name: 'NO_PATH', value: undefined },
            { name: '', value: 'nameless' },
          ],
          volumeMounts: undefined,
        },
        { field: 'containers', index: 1, name: 'side', env: [], volumeMounts: undefined },
      ],
      ephemeralContainers: [
        { field: 'ephemeralContainers', index: 0, name: 'debug', env: [{ name: 'E', value: 'e' }], volumeMounts: undefined },
        { field: 'ephemeralContainers', index: 1, name: 'debug-2', env: undefined, volumeMounts: undefined },
      ],
    }),
  });
});

t.test('an empty object is a pod with nothing in it', async (t) => {
  t.strictSame(decodePod({}), { pod: view() });
  t.strictSame(decodePod({ metadata: null, spec: null }), { pod: view() }, 'null counts as absent');
  t.strictSame(decodePod({ metadata: {}, spec: { containers: [], volumes: [], ephemeralContainers: [] } }), {
    pod: view({ hasMetadata: true, volumes: [] }),
  });
});

t.test('the name for logs is metadata.name, else metadata.generateName, else empty', async (t) => {
  const nameOf = (metadata: Record<string, unknown>): string | undefined => decodePod({ metadata }).pod?.name;
  t.equal(nameOf({ name: 'web-1', generateName: 'web-' }), 'web-1');
  t.equal(nameOf({ name: 'web-1' }), 'web-1');
  t.equal(nameOf({ generateName: 'web-' }), 'web-');
  t.equal(nameOf({ name: '', generateName: 'web-' }), 'web-', 'an empty name falls back to generateName');
  t.equal(nameOf({ name: '', generateName: '' }), '');
  t.equal(nameOf({}), '');
});

t.test('a pod that is not an object, or whose metadata is not one, is unreadable with the reason', async (t) => {
  t.strictSame(decodePod(null), { problem: 'the pod is null, expected an object' });
  t.strictSame(decodePod(undefined), { problem: 'the pod is missing, expected an object' });
  t.strictSame(decodePod('pod'), { problem: 'the pod is the string "pod", expected an object' });
  t.strictSame(decodePod(42), { problem: 'the pod is a number, expected an object' });
  t.strictSame(decodePod([{ spec: {} }]), { problem: 'the pod is a list, expected an object' });
  t.strictSame(decodePod({ metadata: 'web' }), { problem: 'metadata is the string "web", expected an object' });
  t.strictSame(decodePod({ metadata: ['web'] }), { problem: 'metadata is a list, expected an object' });
  t.strictSame(decodePod({ metadata: true }), { problem: 'metadata is a boolean, expected an object' });
});

t.test('an entry of a list that is not an object makes the pod unreadable, naming it', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ spec: 'pod' }, 'pod.spec is the string "pod", expected an object'],
    [{ spec: { containers: 'app' } }, 'spec.containers is the string "app", expected a list'],
    [{ spec: { containers: [{ name: 'a', volumeMounts: {} }] } }, 'spec.containers[0].volumeMounts is an object, expected a list'],
    [{ spec: { volumes: [{ name: 'v', projected: { sources: { serviceAccountToken: {} } } }] } }, 'spec.volumes[0].projected.sources is an object, expected a list'],
    [{ spec: { containers: [{ name: 'a' }, null] } }, 'spec.containers[1] is null, expected an object'],
    // A hole in a list (possible only from code, not from JSON) is not an entry either.
    // eslint-disable-next-line no-sparse-arrays
    [{ spec: { initContainers: [, { name: 'a' }] } }, 'spec.initContainers[0] is missing, expected an object'],
    [{ spec: { containers: [{ name: 'a', env: [null] }] } }, 'spec.containers[0].env[0] is null, expected an object'],
    [{ spec: { containers: [{ name: 'a', env: ['AWS_REGION'] }] } }, 'spec.containers[0].env[0] is the string "AWS_REGION", expected an object'],
    [{ spec: { containers: [{ name: 'a', volumeMounts: [7] }] } }, 'spec.containers[0].volumeMounts[0] is a number, expected an object'],
    [{ spec: { ephemeralContainers: [{ name: 'd' }, 'debug'] } }, 'spec.ephemeralContainers[1] is the string "debug", expected an object'],
    [{ spec: { volumes: [null] } }, 'spec.volumes[0] is null, expected an object'],
    [{ spec: { volumes: [{ name: 'v', projected: { sources: [null] } }] } }, 'spec.volumes[0].projected.sources[0] is null, expected an object'],
    [{ spec: { volumes: [{ name: 'v', projected: { sources: [{ serviceAccountToken: 'yes' }] } }] } },
      'spec.volumes[0].projected.sources[0].serviceAccountToken is the string "yes", expected an object'],
    [{ spec: { containers: [{ name: 'a', env: [{ name: 'X', valueFrom: 'pod' }] }] } }, 'spec.containers[0].env[0].valueFrom is the string "pod", expected an object'],
    [{ spec: { containers: [{ name: 'a', env: [{ name: 'X', valueFrom: { fieldRef: [] } }] }] } }, 'spec.containers[0].env[0].valueFrom.fieldRef is a list, expected an object'],
    [{ spec: { containers: [{ name: 'a', env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 1 } } }] }] } },
      'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath is a number, expected a string'],
  ];
  for (const [raw, problem] of cases) t.strictSame(decodePod(raw), { problem }, problem);
});

t.test('only the pod\'s own properties are read, never inherited ones', async (t) => {
  const inherited = Object.create({ metadata: { name: 'inherited' }, spec: { serviceAccountName: 'admin' } }) as unknown;
  t.strictSame(decodePod(inherited), { pod: view() });
  const spec = Object.create({ containers: [{ name: 'hidden' }] }) as object;
  t.strictSame(decodePod({ metadata: { name: 'p' }, spec }), { pod: view({ name: 'p', metadataName: 'p', hasMetadata: true }) });
  t.equal(serviceAccountNameOf(inherited), 'default');
});

t.test('an error that is not about the pod\'s shape is not turned into a problem', async (t) => {
  const broken = new Error('getter failed');
  const raw = Object.defineProperty({}, 'metadata', {
    enumerable: true,
    get() {
      throw broken;
    },
  });
  t.throws(() => decodePod(raw), broken);
  let thrown: unknown;
  try {
    decodePod(raw);
  } catch (err) {
    thrown = err;
  }
  t.equal(thrown, broken, 'the very same error propagates');
});

t.test('the ServiceAccount a pod runs as, read without trusting the pod', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ spec: { serviceAccountName: 'app' } }, 'app'],
    [{ spec: { serviceAccountName: '' } }, 'default'],
    [{ spec: { serviceAccountName: null } }, 'default'],
    [{ spec: { serviceAccountName: 42 } }, 'default'],
    [{ spec: { serviceAccountName: ['app'] } }, 'default'],
    [{ spec: {} }, 'default'],
    [{ spec: 'app' }, 'default'],
    [{ spec: ['app'] }, 'default'],
    [{ spec: null }, 'default'],
    [{}, 'default'],
    [null, 'default'],
    [undefined, 'default'],
    ['app', 'default'],
    [[{ spec: { serviceAccountName: 'app' } }], 'default'],
  ];
  for (const [raw, name] of cases) t.equal(serviceAccountNameOf(raw), name, JSON.stringify(raw) ?? 'undefined');
});

t.test('a ServiceAccount that was not found gives no identity and no warnings', async (t) => {
  t.strictSame(resolveIdentity('default', 'app', { serviceAccount: undefined }, options()), { identity: undefined, warnings: [] });
  t.strictSame(resolveIdentity('default', 'app', { serviceAccount: undefined, containerCredentials: new Set(['default/app']) }, options()), {
    warnings: [],
    identity: { mode: 'container-credentials', regionalSts: options().regionalSts, tokenExpiration: options().tokenExpiration, roleSessionName: undefined },
  });
});

t.test('an AWS account id is exactly twelve digits', async (t) => {
  for (const ok of ['111122223333', '000000000000', '999999999999', '012345678909']) t.equal(ACCOUNT_ID.test(ok), true, ok);
  for (const bad of ['11112222333', '1111222233334', 'x111122223333', '111122223333x', '1111-2222-3333', 'abcdefghijkl', '', '111122223333\n1'])
    t.equal(ACCOUNT_ID.test(bad), false, JSON.stringify(bad));
});

t.test('a partition is aws, or aws followed by lowercase dash-separated words', async (t) => {
  for (const ok of ['aws', 'aws-cn', 'aws-us-gov', 'aws-iso-b', 'aws-iso-f', 'aws-eusc', 'aws-a-z', 'aws-za']) t.equal(PARTITION.test(ok), true, ok);
  for (const bad of ['', 'AWS', 'aw', 'xaws', 'my-aws', 'aws-', 'aws-cn-', 'aws--cn', 'aws-cn1', 'aws-CN', 'aws cn', 'awscn', 'aws-cn!', 'aws\naws'])
    t.equal(PARTITION.test(bad), false, JSON.stringify(bad));
});
