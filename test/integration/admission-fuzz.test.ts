// Whatever a client sends, /mutate answers 200 or a 4xx with a reason: never a
// 500, never a crash. Bodies are generated: arbitrary JSON, and reviews whose
// pods have every field of the wrong shape.
import t from 'tap';
import fc from 'fast-check';
import pino from 'pino';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
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

// Runaway work (the unbounded engine took seconds over 300,000 skip-containers
// names) is told from ordinary work by CPU time, not by the clock: the
// process's CPU time (the body decoder's thread included) does not grow while
// a busy machine makes the request wait for a core. It is compared with what a
// plain review as large as the hostile one's request and answer together
// costs, measured in this run, so a slow machine moves both.
const HOSTILE_RUNS = 800;
/** How many times a plain review of the same size a hostile one may cost: its own work is linear and a few times at most. */
const RUNAWAY_RATIO = 20;

const send = (payload: Buffer) => app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload });

/** The answer to `payload` and the process's CPU time spent on it, in microseconds. */
async function measured(payload: Buffer) {
  const before = process.cpuUsage();
  const r = await send(payload);
  const used = process.cpuUsage(before);
  return { r, cpu: used.user + used.system };
}

/** A plain review of a pod that gets a patch, `bytes` long (padded with an annotation nobody reads), at most the body limit. */
function plainReview(bytes: number): Buffer {
  const size = Math.min(bytes, SERVER_DEFAULTS.bodyLimitBytes);
  const review = (pad: string) => JSON.stringify({
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: {
      uid: 'plain', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'default', operation: 'CREATE',
      object: { metadata: { name: 'p', annotations: { pad } }, spec: { serviceAccountName: 'app', containers: [{ name: 'app' }] } },
    },
  });
  return Buffer.from(review('x'.repeat(Math.max(0, size - review('').length))));
}

/** The least of `n` measurements: a GC pause or the decoder's collection adds to one, never takes away. */
async function leastCpu(payload: Buffer, n: number): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < n; i++) {
    const { r, cpu } = await measured(payload);
    if (r.statusCode !== 200) throw new Error(`status ${r.statusCode} for a review measured for its CPU time: ${r.body}`);
    least = Math.min(least, cpu);
  }
  return least;
}

// Reference costs by size class (powers of two, from 1 KiB): a plain review
// padded to the top of the class costs at least what one of any size in it does.
const plainCpu = new Map<number, number>();
async function plainCpuFor(bytes: number): Promise<number> {
  const size = 2 ** Math.max(10, Math.ceil(Math.log2(bytes)));
  let cpu = plainCpu.get(size);
  if (cpu === undefined) {
    cpu = await leastCpu(plainReview(size), 5);
    plainCpu.set(size, cpu);
  }
  return cpu;
}

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

t.test(`${HOSTILE_RUNS} hostile reviews over HTTP: status < 500, a valid answer, a patch that applies, bounded work`, async (t) => {
  // The decoder's thread starts on the first large body: started here, it is not counted against one.
  t.equal((await send(plainReview(1 << 20))).statusCode, 200, 'a plain large review is answered');
  let answered = 0;
  let rechecked = 0;
  let worstRatio = 0;
  await fc.assert(
    fc.asyncProperty(reviewArbitrary(hostileJson), async (review) => {
      const payload = toPayload(JSON.stringify(review));
      const { r, cpu } = await measured(payload);
      // Bytes in and out: an answer may carry a long ServiceAccount value once per container.
      const bytes = payload.length + r.rawPayload.length;
      if (cpu > RUNAWAY_RATIO * (await plainCpuFor(bytes))) {
        // One measurement can carry a garbage collection (this thread's or the
        // decoder's, from an earlier body); runaway work costs as much every time.
        rechecked++;
        collectGarbage();
        const least = await leastCpu(payload, 3);
        const plain = await leastCpu(plainReview(bytes), 3);
        worstRatio = Math.max(worstRatio, least / plain);
        if (least > RUNAWAY_RATIO * plain) {
          throw new Error(`a hostile review (${payload.length} bytes in, ${r.rawPayload.length} out) took ${(least / 1000).toFixed(1)} ms of CPU, ${(least / plain).toFixed(0)} times a plain one of ${bytes} bytes`);
        }
      }
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
  t.comment(`CPU of plain reviews by size: ${[...plainCpu].sort(([a], [b]) => a - b).map(([size, cpu]) => `${size} B ${(cpu / 1000).toFixed(2)} ms`).join(', ')}; ${rechecked} hostile review(s) measured again, at worst ${worstRatio.toFixed(1)} times a plain one`);
  t.ok(answered > HOSTILE_RUNS / 2, `${answered} answered with an AdmissionReview`);
});
