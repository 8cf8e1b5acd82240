// Property: whatever object a caller hands to reviewAdmission (wrong types
// everywhere, deep or huge values, "__proto__" keys, values whose string
// conversion throws, lone surrogates, hundreds of thousands of skip-containers
// names) the answer is a 400 (BadReviewError) or an AdmissionReview that echoes
// the uid, allows the pod, keeps warnings within the API server's limits, and
// carries a patch that applies to the pod sent, only ever appending.
import t from 'tap';
import fc from 'fast-check';
import { DEFAULT_MUTATION_OPTIONS } from '../../src/config.js';
import { parseConfigMapConfig } from '../../src/settings/config-map.js';
import { BadReviewError, reviewAdmission, type ReviewOutcome } from '../../src/server/admission.js';
import { answerProblem, hostile, ROLE, reviewArbitrary } from '../helpers/hostile.js';
import { staticIdentities } from '../helpers/identities.js';

const huge = 'x'.repeat(500_000);
const hugeArn = `arn:${huge}\ud800`;
/** The longest ServiceAccount value below, as JSON: a patch operation may carry it. */
const LONGEST_SETTING = JSON.stringify(hugeArn).length;
const ids = staticIdentities();
ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/sts-regional-endpoints': 'true' });
ids.set('shop', 'app', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/token-expiration': '86400' });
ids.set('default', 'bad', { 'eks.amazonaws.com/role-arn': hugeArn, 'eks.amazonaws.com/token-expiration': huge, 'eks.amazonaws.com/audience': huge });
ids.set('shop', 'bad', {});
ids.set('default', 'cc', {});
ids.set('shop', 'cc', { 'eks.amazonaws.com/sts-regional-endpoints': 'maybe' });
ids.containerCredentials.add('default/cc');
ids.containerCredentials.add('shop/app');
ids.configMap = parseConfigMapConfig(JSON.stringify({ '*/none': { roleArn: ROLE, tokenExpiration: 86400 } }));
ids.missDelayMs = 0; // "none" is not cached: it takes the asynchronous path
const options = { ...DEFAULT_MUTATION_OPTIONS, region: 'us-east-1' };
/**
 * Only runaway work trips this: a review takes well under a millisecond of CPU, one with 300,000
 * skip-containers names a few (the unbounded engine took seconds). Measured in this process's CPU
 * time, not wall-clock time, so other processes on a busy machine do not count against it.
 */
const RUNAWAY_MS = 1_000;

const RUNS = 10_000;

const cpuMsSince = (start: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
};

async function review(body: unknown): Promise<{ outcome?: ReviewOutcome; ms: number }> {
  const start = process.cpuUsage();
  try {
    const outcome = await reviewAdmission(body, ids.provider, options, () => 0.5);
    return { outcome, ms: cpuMsSince(start) };
  } catch (err) {
    if (err instanceof BadReviewError) return { ms: cpuMsSince(start) };
    throw err;
  }
}

t.test(`${RUNS} hostile reviews: never an exception, always a valid answer and an applicable patch`, async (t) => {
  let answered = 0;
  let patched = 0;
  await fc.assert(
    fc.asyncProperty(reviewArbitrary(hostile), async (body) => {
      let { outcome, ms } = await review(body);
      // A slow run can be a GC pause; runaway work is slow every time.
      if (ms > RUNAWAY_MS) ({ outcome, ms } = await review(body));
      if (ms > RUNAWAY_MS) throw new Error(`review took ${ms.toFixed(0)} ms of CPU`);
      if (!outcome) return;
      answered++;
      if (outcome.outcome === 'mutated') patched++;
      const sent = (body as { request: { object: unknown } }).request.object;
      const problem = answerProblem(body, outcome.review, sent, LONGEST_SETTING);
      if (problem) throw new Error(problem);
    }),
    { numRuns: RUNS },
  );
  t.comment(`${answered} answered with an AdmissionReview, ${patched} of them with a patch`);
  t.ok(answered > RUNS / 2, 'most generated reviews are usable');
  t.ok(patched > RUNS / 10, 'many are mutated');
});
