// The ServiceAccount cache against the fake API server: sync, watch updates,
// and cache misses resolved by the watch or a direct GET within the grace period.
import t from 'tap';
import { pino } from 'pino';
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

async function setup(
  t: { teardown(fn: () => unknown): void },
  opts: { objects?: number; cache?: Partial<ServiceAccountCacheOptions> } = {},
): Promise<{ fake: FakeApiServer; cache: ServiceAccountCache }> {
  const fake = await startFakeApiServer();
  for (let i = 0; i < (opts.objects ?? 0); i++) {
    fake.serviceAccount(`ns-${i % 5}`, `sa-${i}`, i % 10 === 0 ? roleAnnotation(`arn:aws:iam::111122223333:role/r${i}`) : undefined);
  }
  const cache = createServiceAccountCache({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    annotationPrefix: PREFIX,
    logger,
    pageSize: 50,
    silenceMs: 60_000,
    backoff: { initialMs: 50, maxMs: 500 },
    ...opts.cache,
  });
  t.teardown(async () => {
    await cache.stop();
    await fake.close();
  });
  cache.start();
  await withTimeout(cache.waitForSync(), 20_000, 'sync');
  await until(() => fake.activeWatches() === 1, 'the watch');
  return { fake, cache };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function timed<T>(promise: Promise<T>): Promise<[T, number]> {
  const start = Date.now();
  const value = await promise;
  return [value, Date.now() - start];
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
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 3000 } });
  fake.silenceWatches(true); // the watch will not deliver it: only the GET can
  fake.serviceAccount('app', 'new', roleAnnotation());
  const [result, ms] = await timed(cache.lookup('app', 'new'));
  t.equal(result.outcome, 'api');
  t.equal(result.settings?.roleArn, ROLE);
  t.comment(`resolved by the GET in ${ms} ms`);
  t.equal(fake.getCount('serviceaccounts', 'app', 'new'), 1);
  t.equal(cache.get('app', 'new')?.roleArn, ROLE, 'stored');
  t.equal((await cache.lookup('app', 'new')).outcome, 'cache');
  t.equal(fake.getCount('serviceaccounts', 'app', 'new'), 1, 'no second GET');
});

t.test('cache miss resolved by the watch while the GET is slow', async (t) => {
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 8000 } });
  fake.setGetDelay(30_000);
  const lookup = timed(cache.lookup('app', 'late'));
  await until(() => fake.stats.getsInFlight === 1, 'the GET');
  fake.serviceAccount('app', 'late', roleAnnotation());
  const [result, ms] = await lookup;
  t.equal(result.outcome, 'watch');
  t.equal(result.settings?.roleArn, ROLE);
  t.comment(`resolved by the watch in ${ms} ms`);
  await cache.stop();
  await until(() => fake.stats.getsInFlight === 0, 'stop() to abort the GET');
});

t.test('not found (404) answers at once, not at the end of the grace period', async (t) => {
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 10_000 } });
  const [result, ms] = await timed(cache.lookup('app', 'absent'));
  t.equal(result.outcome, 'not-found');
  t.equal(result.settings, undefined);
  t.ok(ms < 10_000, `before the grace period ended (${ms} ms)`);
  t.equal(fake.getCount('serviceaccounts', 'app', 'absent'), 1);
  t.equal(cache.get('app', 'absent'), undefined, 'nothing stored');
});

t.test('a slow GET gives timeout at the end of the grace period, and is abandoned', async (t) => {
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 1000 } });
  fake.setGetDelay(30_000);
  fake.silenceWatches(true);
  fake.serviceAccount('app', 'slow', roleAnnotation());
  const [result, ms] = await timed(cache.lookup('app', 'slow'));
  t.equal(result.outcome, 'timeout');
  t.equal(result.settings, undefined);
  t.ok(ms >= 950, `waited the grace period (${ms} ms)`);
  t.ok(ms < 30_000, `answered without waiting for the 30 s GET (${ms} ms)`);
  await until(() => fake.stats.getsInFlight === 0, 'the GET to be aborted');
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
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 3000 } });
  await fake.down('503');
  const [failed, ms] = await timed(cache.lookup('app', 'x'));
  t.equal(failed.outcome, 'error');
  t.ok(ms >= 2900 && ms < 3000 + 1500, `at the end of the grace period (${ms} ms)`);

  const pending = cache.lookup('app', 'y');
  await new Promise((resolve) => setTimeout(resolve, 200));
  await fake.up();
  fake.serviceAccount('app', 'y', roleAnnotation());
  const rescued = await pending;
  t.equal(rescued.outcome, 'watch', 'the watch delivered after the GET had failed');
  t.equal(rescued.settings?.roleArn, ROLE);
});

t.test('stop() settles pending lookups', async (t) => {
  const { fake, cache } = await setup(t, { cache: { gracePeriodMs: 30_000 } });
  fake.setGetDelay(60_000);
  const pending = timed(cache.lookup('app', 'never'));
  await until(() => fake.stats.getsInFlight === 1, 'the GET');
  await cache.stop();
  const [result, ms] = await pending;
  t.equal(result.outcome, 'error');
  t.ok(ms < 30_000, `not held for the 30 s grace period (${ms} ms)`);
  t.equal((await cache.lookup('app', 'after-stop')).outcome, 'error');
  await until(() => fake.stats.getsInFlight === 0, 'the GET to be aborted');
});
