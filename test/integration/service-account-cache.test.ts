// The ServiceAccount cache against the fake API server: sync, watch updates,
// and cache misses resolved by the watch or a direct GET within the grace period.
import t from 'tap';
import { type Logger, pino } from 'pino';
import { loadKubeConfig } from '../../src/kube/client.js';
import {
  type ServiceAccountCache,
  type ServiceAccountCacheOptions,
  createServiceAccountCache,
  createServiceAccountStore,
} from '../../src/identity/service-account-cache.js';
import { NO_SETTINGS } from '../../src/settings/service-account.js';
import { type FakeApiServer, startFakeApiServer, until } from '../helpers/fake-apiserver.js';

const logger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });
const PREFIX = 'eks.amazonaws.com';
const ROLE = 'arn:aws:iam::111122223333:role/app';
const roleAnnotation = (role = ROLE): Record<string, string> => ({ [`${PREFIX}/role-arn`]: role });

/**
 * Grace-period timers the test fires itself: a lookup gives up only when the
 * test says the grace period is over, however slow the machine is.
 */
interface GraceTimers {
  start(expire: () => void, ms: number): () => void;
  /** The durations of the timers still armed (neither fired nor cancelled). */
  armed(): number[];
  /** Fires every armed timer: the grace period is over. */
  expire(): void;
}

function graceTimers(): GraceTimers {
  const armed = new Set<{ expire: () => void; ms: number }>();
  return {
    start(expire, ms) {
      const timer = { expire, ms };
      armed.add(timer);
      return () => armed.delete(timer);
    },
    armed: () => [...armed].map((timer) => timer.ms),
    expire() {
      for (const timer of [...armed]) {
        armed.delete(timer);
        timer.expire();
      }
    },
  };
}

async function setup(
  t: { teardown(fn: () => unknown): void },
  opts: { objects?: number; cache?: Partial<ServiceAccountCacheOptions> } = {},
): Promise<{ fake: FakeApiServer; cache: ServiceAccountCache; grace: GraceTimers }> {
  const fake = await startFakeApiServer();
  for (let i = 0; i < (opts.objects ?? 0); i++) {
    fake.serviceAccount(`ns-${i % 5}`, `sa-${i}`, i % 10 === 0 ? roleAnnotation(`arn:aws:iam::111122223333:role/r${i}`) : undefined);
  }
  const grace = graceTimers();
  const cache = createServiceAccountCache({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    annotationPrefix: PREFIX,
    logger,
    pageSize: 50,
    silenceMs: 60_000,
    backoff: { initialMs: 50, maxMs: 500 },
    startGraceTimer: grace.start,
    ...opts.cache,
  });
  t.teardown(async () => {
    await cache.stop();
    await fake.close();
  });
  cache.start();
  await cache.waitForSync();
  await until(() => fake.activeWatches() === 1, 'the watch');
  return { fake, cache, grace };
}

/** The promise, and whether it has settled yet. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  void promise.finally(() => (settled = true));
  return { promise, settled: () => settled };
}

/** A logger whose warnings the test reads: log lines are signals. */
function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { logger: pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }), lines };
}

t.test('the store keeps parsed settings only, and a relist drops what it did not see', async (t) => {
  const store = createServiceAccountStore(PREFIX);
  const sa = (ns: string, name: string, annotations?: Record<string, string>) => ({ metadata: { namespace: ns, name, annotations } });
  store.handlers.listStart?.();
  store.handlers.upsert(sa('a', 'plain'));
  store.handlers.upsert(sa('a', 'role', roleAnnotation()));
  store.handlers.upsert(sa('b', 'other', { unrelated: 'x' }));
  store.handlers.listEnd?.();
  t.equal(store.size(), 3);
  t.equal(store.get('a', 'plain'), NO_SETTINGS, 'no annotations: the shared NO_SETTINGS');
  t.equal(store.get('b', 'other'), NO_SETTINGS, 'foreign annotations: the shared NO_SETTINGS');
  t.equal(store.get('a', 'role')?.roleArn, ROLE);
  t.equal(store.get('a', 'missing'), undefined);

  store.handlers.listStart?.();
  store.handlers.upsert(sa('a', 'role', roleAnnotation()));
  // Found by a GET during the relist. The list is the authority: the GET may have
  // raced a deletion the list snapshot already reflects. (A ServiceAccount created
  // after the snapshot comes back with the watch, which starts from it.)
  store.set('c', 'from-api', NO_SETTINGS);
  store.handlers.listEnd?.();
  t.same([store.get('a', 'plain'), store.get('b', 'other')], [undefined, undefined], 'unlisted keys are gone');
  t.ok(store.get('a', 'role'));
  t.equal(store.get('c', 'from-api'), undefined, 'a GET does not keep a key the list did not see');
  t.equal(store.size(), 1);
  store.set('c', 'from-api', NO_SETTINGS);
  t.equal(store.get('c', 'from-api'), NO_SETTINGS, 'outside a relist, a GET result is stored');
});

t.test('syncs all ServiceAccounts and follows the watch', async (t) => {
  const { fake, cache } = await setup(t, { objects: 321 });
  t.ok(cache.hasSynced());
  t.equal(cache.size(), 321);
  t.equal(cache.get('ns-0', 'sa-0')?.roleArn, 'arn:aws:iam::111122223333:role/r0');
  t.equal(cache.get('ns-1', 'sa-1'), NO_SETTINGS);
  t.equal(fake.stats.listPages, 1, 'one list, from the watch cache');
  t.equal(fake.stats.cacheLists, 1);

  fake.serviceAccount('ns-1', 'sa-1', roleAnnotation());
  await until(() => cache.get('ns-1', 'sa-1')?.roleArn === ROLE, 'the annotation');
  fake.serviceAccount('ns-1', 'sa-1', { [`${PREFIX}/token-expiration`]: '100' });
  await until(() => cache.get('ns-1', 'sa-1')?.roleArn === undefined, 'the annotation removal');
  t.equal(cache.get('ns-1', 'sa-1')?.tokenExpiration, 600, 'parsed (and clamped) once, when stored');
  t.equal(cache.get('ns-1', 'sa-1')?.warnings.length, 1);
  fake.remove('serviceaccounts', 'ns-1', 'sa-1');
  await until(() => cache.get('ns-1', 'sa-1') === undefined, 'the deletion');
  t.equal(cache.size(), 320);
});

t.test('a lookup of a cached key answers from the cache without a GET', async (t) => {
  const { fake, cache } = await setup(t, { objects: 10 });
  const result = await cache.lookup('ns-0', 'sa-0');
  t.equal(result.outcome, 'cache');
  t.equal(result.settings?.roleArn, 'arn:aws:iam::111122223333:role/r0');
  t.equal(fake.stats.gets.size, 0);
});

t.test('cache miss resolved by the API GET within the grace period, and stored', async (t) => {
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 3000 } });
  fake.silenceWatches(true); // the watch will not deliver it: only the GET can
  fake.serviceAccount('app', 'new', roleAnnotation());
  const lookup = cache.lookup('app', 'new');
  t.same(grace.armed(), [3000], 'the lookup armed its grace-period timer');
  const result = await lookup;
  t.equal(result.outcome, 'api');
  t.equal(result.settings?.roleArn, ROLE);
  t.same(grace.armed(), [], 'the answer cancelled the grace-period timer');
  t.equal(fake.getCount('serviceaccounts', 'app', 'new'), 1);
  t.equal(cache.get('app', 'new')?.roleArn, ROLE, 'stored');
  t.equal((await cache.lookup('app', 'new')).outcome, 'cache');
  t.equal(fake.getCount('serviceaccounts', 'app', 'new'), 1, 'no second GET');
});

t.test('cache miss resolved by the watch while the GET is slow', async (t) => {
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 8000 } });
  fake.holdGets((name) => name === 'late'); // never answered: only the watch can
  const lookup = cache.lookup('app', 'late');
  await until(() => fake.stats.getsInFlight === 1, 'the GET');
  fake.serviceAccount('app', 'late', roleAnnotation());
  const result = await lookup;
  t.equal(result.outcome, 'watch');
  t.equal(result.settings?.roleArn, ROLE);
  t.same(grace.armed(), [], 'answered before the grace period ended');
  await cache.stop();
  await until(() => fake.stats.getsInFlight === 0, 'stop() to abort the GET');
});

t.test('not found (404) answers at once, not at the end of the grace period', async (t) => {
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 10_000 } });
  // The grace-period timer never fires in this test: an answer means the 404 gave it.
  const result = await cache.lookup('app', 'absent');
  t.equal(result.outcome, 'not-found');
  t.equal(result.settings, undefined);
  t.same(grace.armed(), [], 'the 404 cancelled the grace-period timer');
  t.equal(fake.getCount('serviceaccounts', 'app', 'absent'), 1);
  t.equal(cache.get('app', 'absent'), undefined, 'nothing stored');
});

t.test('a slow GET gives timeout at the end of the grace period', async (t) => {
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 60_000 } });
  fake.holdGets((name) => name === 'slow'); // never answered
  fake.silenceWatches(true);
  fake.serviceAccount('app', 'slow', roleAnnotation());
  const lookup = track(cache.lookup('app', 'slow'));
  await until(() => fake.stats.getsInFlight === 1, 'the GET');
  t.notOk(lookup.settled(), 'no answer while the GET is out and the grace period runs');
  t.same(grace.armed(), [60_000], 'the grace-period timer is armed');
  grace.expire();
  // The GET is still held: the answer came from the grace period, not from the GET.
  const result = await lookup.promise;
  t.equal(result.outcome, 'timeout');
  t.equal(result.settings, undefined);
  t.equal(fake.stats.getsInFlight, 1, 'the GET had not answered');
});

t.test('a GET gets no longer than the grace period: a hung one is abandoned', async (t) => {
  const captured = capturingLogger();
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 300, logger: captured.logger } });
  fake.holdGets((name) => name === 'hung'); // never answered
  fake.silenceWatches(true);
  const hung = track(cache.lookup('app', 'hung'));
  await until(() => fake.stats.getsInFlight === 1, 'the hung GET');
  // Neither an answer nor stop(): the GET's own limit (the grace period) ends it, freeing its slot.
  await until(() => fake.stats.getsInFlight === 0, 'the hung GET to be abandoned');
  await until(() => captured.lines.some((l) => l['msg'] === 'ServiceAccount GET failed' && l['name'] === 'hung'), 'the failure to be logged');
  t.equal(fake.getCount('serviceaccounts', 'app', 'hung'), 1, 'not retried');
  t.notOk(hung.settled(), 'its lookup still waits for the watch until the grace period ends');
  grace.expire();
  t.equal((await hung.promise).outcome, 'error', 'then answers error: the GET failed');
});

t.test('concurrent lookups of one key share one GET', async (t) => {
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 10_000 } });
  fake.setGetDelay(300);
  fake.silenceWatches(true);
  fake.serviceAccount('app', 'shared', roleAnnotation());
  const results = await Promise.all(Array.from({ length: 25 }, () => cache.lookup('app', 'shared')));
  t.same(new Set(results.map((r) => r.outcome)), new Set(['api']));
  t.ok(results.every((r) => r.settings?.roleArn === ROLE));
  t.equal(fake.getCount('serviceaccounts', 'app', 'shared'), 1, 'one GET for 25 lookups');
});

t.test('direct GETs are limited to lookupConcurrency at once; the rest queue', async (t) => {
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 20_000, lookupConcurrency: 3 } });
  fake.setGetDelay(300);
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => cache.lookup('app', `missing-${i}`)));
  t.same(new Set(results.map((r) => r.outcome)), new Set(['not-found']), 'all answered');
  let total = 0;
  for (const n of fake.stats.gets.values()) total += n;
  t.equal(total, 10, 'one GET per key');
  t.equal(fake.stats.maxGetsInFlight, 3, 'never more than 3 at once (and the limit was reached)');
});

t.test('a failing GET leaves the watch its chance, then answers error', async (t) => {
  const captured = capturingLogger();
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 3000, logger: captured.logger } });
  const getFailed = (name: string) => () => captured.lines.some((l) => l['msg'] === 'ServiceAccount GET failed' && l['name'] === name);
  await fake.down('503');

  const failed = track(cache.lookup('app', 'x'));
  await until(getFailed('x'), 'the GET of x to fail');
  t.notOk(failed.settled(), 'after the GET failed, the lookup waits for the watch');
  t.same(grace.armed(), [3000]);
  grace.expire();
  t.equal((await failed.promise).outcome, 'error', 'at the end of the grace period');

  const pending = cache.lookup('app', 'y');
  await until(getFailed('y'), 'the GET of y to fail');
  await fake.up();
  fake.serviceAccount('app', 'y', roleAnnotation());
  const rescued = await pending;
  t.equal(rescued.outcome, 'watch', 'the watch delivered after the GET had failed');
  t.equal(rescued.settings?.roleArn, ROLE);
});

t.test('stop() settles pending lookups', async (t) => {
  const { fake, cache, grace } = await setup(t, { cache: { gracePeriodMs: 30_000 } });
  fake.holdGets((name) => name === 'never');
  const pending = track(cache.lookup('app', 'never'));
  await until(() => fake.stats.getsInFlight === 1, 'the GET');
  t.notOk(pending.settled());
  await cache.stop();
  const result = await pending.promise;
  t.equal(result.outcome, 'error');
  t.same(grace.armed(), [], 'settled by stop(), not by the grace period (its timer never fired)');
  t.equal((await cache.lookup('app', 'after-stop')).outcome, 'error');
  await until(() => fake.stats.getsInFlight === 0, 'the GET to be aborted');
});
