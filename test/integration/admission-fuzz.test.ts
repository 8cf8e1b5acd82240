// Whatever a client sends, /mutate answers 200 or a 4xx with a reason: never a
// 500, never a crash. Bodies are generated: arbitrary JSON, and reviews whose
// pods have every field of the wrong shape.
import t from 'tap';
import fc from 'fast-check';
import pino from 'pino';
import { DEFAULT_MUTATION_OPTIONS, SERVER_DEFAULTS } from '../../src/config.js';
import { buildWebhookApp } from '../../src/server/app.js';
import { createMetrics } from '../../src/server/metrics.js';
import { answerProblem, hostileJson, toPayload, reviewArbitrary } from '../helpers/hostile.js';
import { staticIdentities } from '../helpers/identities.js';
import { ROLE } from '../helpers/pods.js';

const hugeArn = `arn:${'x'.repeat(100_000)}`;
/** The longest ServiceAccount value below, as JSON: a patch operation may carry it. */
const LONGEST_SETTING = JSON.stringify(hugeArn).length;
const ids = staticIdentities();
ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/sts-regional-endpoints': 'true' });
ids.set('shop', 'app', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/token-expiration': '86400' });
ids.set('default', 'bad', { 'eks.amazonaws.com/role-arn': hugeArn, 'eks.amazonaws.com/token-expiration': 'x'.repeat(100_000) });
ids.containerCredentials.add('default/cc');
ids.containerCredentials.add('shop/app');

const app = await buildWebhookApp({
  https: {},
  mutation: { ...DEFAULT_MUTATION_OPTIONS, region: 'us-east-1' },
  identities: ids.provider,
  metrics: createMetrics({ defaultMetrics: false }),
  logger: pino({ level: 'silent' }),
  bodyLimit: SERVER_DEFAULTS.bodyLimitBytes,
  readiness: () => ({ ready: true, reasons: [] }),
});
t.teardown(() => app.close());

const anything = fc.anything({ maxDepth: 3 });
const weird = fc.oneof(anything, fc.constant(null), fc.string(), fc.integer(), fc.array(anything, { maxLength: 3 }));
/** Mostly the right shape, sometimes anything at all. */
const mostly = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: weird });
const container = mostly(fc.record({
  name: mostly(fc.constantFrom('app', 'side', 'init')),
  env: mostly(fc.array(mostly(fc.record({ name: mostly(fc.constantFrom('AWS_ROLE_ARN', 'AWS_REGION', 'X')), value: mostly(fc.string()) })), { maxLength: 3 })),
  volumeMounts: mostly(fc.array(mostly(fc.record({ name: mostly(fc.constantFrom('aws-iam-token', 'data')), mountPath: mostly(fc.string()) })), { maxLength: 2 })),
}, { requiredKeys: [] }));
const pod = fc.record({
  metadata: mostly(fc.record({
    name: mostly(fc.string()),
    annotations: mostly(fc.dictionary(fc.constantFrom('eks.amazonaws.com/skip-containers', 'eks.amazonaws.com/token-expiration', 'x'), mostly(fc.constantFrom('app', '3600', 'x,y', '')))),
    labels: mostly(fc.dictionary(fc.constantFrom('eks.amazonaws.com/pod-identity', 'app'), mostly(fc.string()))),
  }, { requiredKeys: [] })),
  spec: mostly(fc.record({
    serviceAccountName: mostly(fc.constantFrom('app', 'cc', 'none')),
    containers: mostly(fc.array(container, { maxLength: 3 })),
    initContainers: mostly(fc.array(container, { maxLength: 2 })),
    volumes: mostly(fc.array(mostly(fc.record({ name: mostly(fc.constantFrom('aws-iam-token', 'eks-pod-identity-token')) })), { maxLength: 2 })),
    nodeSelector: mostly(fc.dictionary(fc.constantFrom('kubernetes.io/os'), mostly(fc.constantFrom('windows', 'linux')))),
    os: weird,
  }, { requiredKeys: [] })),
}, { requiredKeys: [] });
const review = fc.record({
  apiVersion: mostly(fc.constantFrom('admission.k8s.io/v1', 'admission.k8s.io/v1beta1')),
  kind: mostly(fc.constant('AdmissionReview')),
  request: mostly(fc.record({
    uid: mostly(fc.constant('u')),
    kind: mostly(fc.constant({ group: '', version: 'v1', kind: 'Pod' })),
    resource: weird,
    namespace: mostly(fc.constant('default')),
    operation: mostly(fc.constant('CREATE')),
    object: mostly(pod),
  }, { requiredKeys: [] })),
}, { requiredKeys: [] });

t.test('generated bodies never produce a 500', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(review, anything), async (body) => {
      const r = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) ?? 'null' });
      if (r.statusCode !== 200 && r.statusCode !== 400) throw new Error(`status ${r.statusCode}: ${r.body} for ${JSON.stringify(body)}`);
      if (r.statusCode === 200) {
        const parsed = JSON.parse(r.body) as { response?: { allowed?: boolean } };
        if (parsed.response?.allowed !== true) throw new Error(`not allowed: ${r.body}`);
      }
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 generated bodies');
});

// No clock here: whether a hostile review costs more than a plain one is for
// the benchmarks (npm run bench). What is checked is what a busy machine cannot
// change: the answer's size and its patch operations are bounded by the pod's
// structure (containers), never by the bytes sent (answerProblem).
const HOSTILE_RUNS = 800;

t.test(`${HOSTILE_RUNS} hostile reviews over HTTP: status < 500, a valid answer, a patch that applies, an answer bounded by the pod`, async (t) => {
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(reviewArbitrary(hostileJson), async (review) => {
      const payload = toPayload(JSON.stringify(review));
      const r = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload });
      if (r.statusCode >= 500) throw new Error(`status ${r.statusCode}: ${r.body}`);
      if (r.statusCode !== 200) return;
      answered++;
      // The pod as the server read it: bytes that are not UTF-8 became U+FFFD.
      const sent = JSON.parse(payload.toString('utf8')) as { request: { object: unknown } };
      const problem = answerProblem(sent, r.body, sent.request.object, LONGEST_SETTING);
      if (problem) throw new Error(problem);
    }),
    { numRuns: HOSTILE_RUNS },
  );
  t.ok(answered > HOSTILE_RUNS / 2, `${answered} answered with an AdmissionReview`);
});
