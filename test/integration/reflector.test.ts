// The reflector against the fake API server: paged list, watch, and recovery
// from every way the connection to the API server breaks.
import t from 'tap';
import { pino } from 'pino';
import { loadKubeConfig } from '../../src/kube/client.js';
import {
  type KubeObject,
  type Reflector,
  type ReflectorOptions,
  type RestartReason,
  backoffDelay,
  createReflector,
} from '../../src/kube/reflector.js';
import { type FakeApiServer, startFakeApiServer, until } from '../helpers/fake-apiserver.js';

const logger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

interface SA extends KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; annotations?: Record<string, string> };
}

/** A store fed by the reflector, keeping annotations per namespace/name. */
function mirror() {
  const objects = new Map<string, Record<string, string>>();
  let seen: Set<string> | undefined;
  const key = (o: SA): string => `${o.metadata?.namespace}/${o.metadata?.name}`;
  return {
    objects,
    handlers: {
      listStart() {
        seen = new Set();
      },
      upsert(o: SA) {
        objects.set(key(o), o.metadata?.annotations ?? {});
        seen?.add(key(o));
      },
      remove(o: SA) {
        objects.delete(key(o));
      },
      listEnd() {
        for (const k of objects.keys()) if (!seen?.has(k)) objects.delete(k);
        seen = undefined;
      },
    },
  };
}

interface Harness {
  fake: FakeApiServer;
  reflector: Reflector;
  objects: Map<string, Record<string, string>>;
  restarts: RestartReason[];
  listed: number[];
}

async function setup(
  t: { teardown(fn: () => unknown): void },
  opts: { bookmarkIntervalMs?: number; objects?: number; reflector?: Partial<ReflectorOptions<SA>> } = {},
): Promise<Harness> {
  const fake = await startFakeApiServer({ bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 0 });
  for (let i = 0; i < (opts.objects ?? 0); i++) fake.serviceAccount(`ns-${i % 7}`, `sa-${i}`);
  const m = mirror();
  const restarts: RestartReason[] = [];
  const listed: number[] = [];
  const reflector = createReflector<SA>({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    path: '/api/v1/serviceaccounts',
    pageSize: 100,
    watchTimeoutSeconds: 60,
    silenceMs: 30_000,
    backoff: { initialMs: 50, maxMs: 500 },
    logger,
    handlers: m.handlers,
    events: { restart: (r) => restarts.push(r), listed: ({ count }) => listed.push(count) },
    ...opts.reflector,
  });
  t.teardown(async () => {
    await reflector.stop();
    await fake.close();
  });
  return { fake, reflector, objects: m.objects, restarts, listed };
}

/** waitForSync, but a test that cannot sync fails instead of hanging. */
async function synced(reflector: Reflector): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('not synced within 20 s')), 20_000);
  });
  try {
    await Promise.race([reflector.waitForSync(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

t.test('backoffDelay is capped exponential with jitter', async (t) => {
  const b = { initialMs: 100, maxMs: 1000 };
  t.equal(backoffDelay(1, b, () => 0), 50);
  t.equal(backoffDelay(1, b, () => 1), 100);
  t.equal(backoffDelay(3, b, () => 1), 400);
  t.equal(backoffDelay(4, b, () => 0), 400);
  t.equal(backoffDelay(50, b, () => 1), 1000, 'capped');
  t.equal(backoffDelay(5000, b, () => 0), 500, 'capped, no overflow');
  for (let n = 1; n < 20; n++) {
    const d = backoffDelay(n, b);
    t.ok(d >= 50 && d <= 1000, `failure ${n}: ${d}`);
  }
});

t.test('the initial list comes whole from the watch cache (resourceVersion=0)', async (t) => {
  const h = await setup(t, { objects: 1234 });
  t.notOk(h.reflector.hasSynced());
  h.reflector.start();
  await synced(h.reflector);
  t.ok(h.reflector.hasSynced());
  t.equal(h.objects.size, 1234);
  t.equal(h.fake.stats.lists, 1, 'one list');
  t.equal(h.fake.stats.cacheLists, 1, 'from the cache');
  t.equal(h.fake.stats.listPages, 1, 'in one response');
  t.same(h.listed, [1234]);
  t.ok(h.objects.has('ns-1/sa-1233'), 'the last object');
});

t.test('when the cache list fails, a paged consistent list follows', async (t) => {
  const h = await setup(t, { objects: 1234 });
  h.fake.failCacheLists(true);
  h.reflector.start();
  await synced(h.reflector);
  t.equal(h.objects.size, 1234);
  t.same(h.restarts, ['error'], 'the cache list failed once');
  t.equal(h.fake.stats.cacheLists, 1, 'tried the cache once');
  t.equal(h.fake.stats.listPages, 1 + 13, 'then 1234 objects in pages of 100');
  t.same(h.listed, [1234]);
  t.ok(h.objects.has('ns-1/sa-1233'), 'the last object of the last page');
});

t.test('an expired continue token restarts the list from the beginning', async (t) => {
  const h = await setup(t, { objects: 250 });
  h.fake.failCacheLists(true);
  h.fake.expireNextContinue();
  h.reflector.start();
  await synced(h.reflector);
  t.equal(h.objects.size, 250);
  t.same(h.restarts, ['error', 'expired']);
  t.equal(h.fake.stats.lists, 3, 'the cache list, then the paged one twice from the first page');
  t.same(h.listed, [250], 'only the complete list counts');
});

t.test('adds, updates and deletes arrive through the watch', async (t) => {
  const h = await setup(t, { objects: 10 });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');

  h.fake.serviceAccount('team', 'new', { a: '1' });
  await until(() => h.objects.get('team/new')?.['a'] === '1', 'the added object');
  h.fake.serviceAccount('team', 'new', { a: '2' });
  await until(() => h.objects.get('team/new')?.['a'] === '2', 'the update');
  h.fake.remove('serviceaccounts', 'ns-1', 'sa-1');
  await until(() => !h.objects.has('ns-1/sa-1'), 'the deletion');
  t.equal(h.objects.size, 10);
  t.equal(h.fake.stats.lists, 1, 'no relist');
  t.same(h.restarts, []);
});

t.test('cut watch connections are re-established from the last resourceVersion', async (t) => {
  const h = await setup(t, { objects: 5 });
  h.reflector.start();
  await synced(h.reflector);
  for (let round = 0; round < 3; round++) {
    await until(() => h.fake.activeWatches() === 1, 'the watch');
    h.fake.cutWatches();
    h.fake.serviceAccount('cut', `sa-${round}`);
    await until(() => h.objects.has(`cut/sa-${round}`), `the object created after cut ${round}`);
  }
  t.equal(h.fake.stats.lists, 1, 're-watched without relisting');
  t.ok(h.restarts.length >= 3 && h.restarts.every((r) => r === 'error'), `restarts: ${h.restarts.join(',')}`);
  t.equal(h.objects.size, 8);
});

t.test('a watch timing out normally is renewed without a restart', async (t) => {
  const h = await setup(t, { objects: 3, reflector: { watchTimeoutSeconds: 2 } });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.stats.watches >= 3, 'two renewals');
  h.fake.serviceAccount('late', 'sa');
  await until(() => h.objects.has('late/sa'), 'the object');
  t.same(h.restarts, [], 'normal ends are not restarts');
  t.equal(h.fake.stats.lists, 1);
});

t.test('410 Gone as a watch ERROR event: relist, and objects deleted meanwhile disappear', async (t) => {
  const h = await setup(t, { objects: 20 });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');

  await h.fake.down('refuse');
  h.fake.remove('serviceaccounts', 'ns-2', 'sa-2');
  h.fake.serviceAccount('ns-2', 'sa-9', { changed: 'yes' });
  h.fake.serviceAccount('fresh', 'sa');
  h.fake.compact(); // the reflector's resourceVersion is now too old
  await h.fake.up();

  await until(() => h.fake.stats.lists === 2, 'the relist');
  await until(() => !h.objects.has('ns-2/sa-2'), 'the deletion seen only by the relist');
  t.equal(h.objects.get('ns-2/sa-9')?.['changed'], 'yes');
  t.ok(h.objects.has('fresh/sa'));
  t.equal(h.objects.size, 20);
  t.ok(h.restarts.includes('expired'), `restarts: ${h.restarts.join(',')}`);

  h.fake.serviceAccount('after', 'relist');
  await until(() => h.objects.has('after/relist'), 'the watch after the relist');
});

t.test('410 Gone as the HTTP status of a watch also relists', async (t) => {
  const h = await setup(t, { objects: 20 });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  h.fake.expireNextWatch('http');
  h.fake.cutWatches();
  await until(() => h.listed.length === 2, 'the relist');
  t.ok(h.restarts.includes('expired'));
  h.fake.serviceAccount('after', 'relist');
  await until(() => h.objects.has('after/relist'), 'the watch after the relist');
});

/** A logger whose JSON lines are kept, to read what the reflector decided (reason, failures, delay). */
function capturedLogger() {
  const entries: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void entries.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, entries, named: (msg: string) => entries.filter((e) => e['msg'] === msg) };
}

t.test('a 410 relists at once: no backoff, however long the backoff is', async (t) => {
  // Any backoff would outlast the waits below (20 s), so only an immediate relist passes.
  const slow = { initialMs: 60_000, maxMs: 60_000, unreachableMaxMs: 60_000 };
  const h = await setup(t, { objects: 5, reflector: { backoff: slow, watchTimeoutSeconds: 2 } });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  // The watch ends normally at its timeout; the next one is answered with 410 Gone.
  h.fake.expireNextWatch('event');
  await until(() => h.listed.length === 2, 'the relist after the 410');
  t.same(h.restarts, ['expired']);
  h.fake.serviceAccount('after', 'relist');
  await until(() => h.objects.has('after/relist'), 'the watch after the relist');

  h.fake.expireNextWatch('http');
  await until(() => h.listed.length === 3, 'the relist after a 410 HTTP status');
  t.same(h.restarts, ['expired', 'expired']);
});

t.test('a 410 after a long outage relists at once; the failure count does not carry over', async (t) => {
  const logs = capturedLogger();
  const h = await setup(t, { objects: 20, reflector: { logger: logs.log, backoff: { initialMs: 20, maxMs: 60_000 } } });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');

  await h.fake.down('503');
  await until(() => h.restarts.length >= 7, 'failed attempts during the outage');
  const answered = logs.named('watch failed; retrying').filter((e) => String(e['err'] && (e['err'] as { message?: string }).message).includes('HTTP 503'));
  t.ok(answered.length >= 5 && Number(answered.at(-1)?.['failures']) >= 5, 'the backoff grew during the outage');
  h.fake.serviceAccount('outage', 'added');
  h.fake.compact();
  await h.fake.up();

  await until(() => h.objects.has('outage/added') && h.listed.length === 2, 'the relist after the outage');
  const relist = logs.named('watch resourceVersion expired; relisting');
  t.equal(relist.length, 1);
  t.equal(relist[0]?.['delayMs'], undefined, 'no delay before the relist');
  t.equal(relist[0]?.['failures'], undefined, 'not counted as a failure');

  // The successful list reset the count: the next outage starts from the first delay.
  const before = logs.entries.length;
  await h.fake.down('503');
  await until(() => logs.entries.slice(before).some((e) => String((e['err'] as { message?: string } | undefined)?.message).includes('HTTP 503')), 'a failure in the second outage');
  const first = logs.entries.slice(before).find((e) => String((e['err'] as { message?: string } | undefined)?.message).includes('HTTP 503'));
  t.equal(first?.['failures'], 1, 'counted from one again');
  await h.fake.up();
});

t.test('a second 410 before the watch moves on backs off (no list storm)', async (t) => {
  const logs = capturedLogger();
  const ref: { fake?: FakeApiServer } = {};
  let lists = 0;
  const h = await setup(t, {
    objects: 3,
    reflector: {
      logger: logs.log,
      // The first relist's own watch is answered with 410 again.
      events: { listed: () => void (++lists === 2 && ref.fake?.expireNextWatch('http')) },
    },
  });
  ref.fake = h.fake;
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  h.fake.expireNextWatch('event');
  h.fake.cutWatches();
  await until(() => logs.named('watch resourceVersion expired; relisting').length >= 2, 'two 410s');
  const [firstGone, secondGone] = logs.named('watch resourceVersion expired; relisting');
  t.ok(firstGone && secondGone);
  t.equal(secondGone?.['failures'], 1, 'the second one counts as a failure');
  t.ok(Number(secondGone?.['delayMs']) > 0, 'and waits before relisting');
  h.fake.serviceAccount('finally', 'watching');
  await until(() => h.objects.has('finally/watching'), 'the watch after the backoff');
});

t.test('a successful watch resets the backoff', async (t) => {
  const logs = capturedLogger();
  const h = await setup(t, { objects: 3, reflector: { logger: logs.log, backoff: { initialMs: 20, maxMs: 60_000 } } });
  const is503 = (e: Record<string, unknown>): boolean => String((e['err'] as { message?: string } | undefined)?.message).includes('HTTP 503');
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  await h.fake.down('503');
  await until(() => logs.entries.filter(is503).length >= 5, 'failed attempts');
  await h.fake.up();
  h.fake.serviceAccount('back', 'again');
  await until(() => h.objects.has('back/again'), 'an event on the renewed watch');
  t.equal(h.fake.stats.lists, 1, 're-watched, not relisted');

  const before = logs.entries.length;
  await h.fake.down('503');
  await until(() => logs.entries.slice(before).some(is503), 'a failure in the second outage');
  t.equal(logs.entries.slice(before).find(is503)?.['failures'], 1, 'counted from one again');
  await h.fake.up();
});

t.test('while the API server cannot be reached, retries stay within the short cap', async (t) => {
  const logs = capturedLogger();
  const h = await setup(t, { objects: 3, reflector: { logger: logs.log, backoff: { initialMs: 20, maxMs: 60_000, unreachableMaxMs: 200 } } });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  await h.fake.down('refuse');
  await until(() => h.restarts.length >= 12, 'refused attempts');
  const delays = logs.named('watch failed; retrying').map((e) => Number(e['delayMs']));
  t.ok(delays.length >= 12);
  t.ok(delays.every((d) => d <= 200), `delays ${delays.join(',')} capped at 200 ms (60 s for answers)`);
  h.fake.serviceAccount('refused', 'meanwhile');
  await h.fake.up();
  await until(() => h.objects.has('refused/meanwhile'), 'the change made during the outage');
});

t.test('bookmarks move the resourceVersion forward', async (t) => {
  const h = await setup(t, { objects: 3, bookmarkIntervalMs: 100 });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  // Changes this watch does not see: only a bookmark tells the reflector about the newer version.
  for (let i = 0; i < 5; i++) h.fake.configMap('other', `cm-${i}`, {});
  const bookmarks = h.fake.stats.bookmarks;
  await until(() => h.fake.stats.bookmarks >= bookmarks + 2, 'bookmarks after the changes');
  h.fake.compact();
  h.fake.cutWatches();
  h.fake.serviceAccount('x', 'y');
  await until(() => h.objects.has('x/y'), 'the object after the cut');
  t.equal(h.fake.stats.lists, 1, 'no relist: the bookmark version was still valid after compaction');
  t.notOk(h.restarts.includes('expired'));
});

t.test('the silence watchdog restarts a watch that delivers nothing', async (t) => {
  const h = await setup(t, { objects: 3, bookmarkIntervalMs: 200, reflector: { silenceMs: 1500 } });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  // Bookmarks alone keep a healthy watch from being taken for a silent one: ten of them
  // span more than the 1.5 s silence limit (counted, not timed).
  const bookmarks = h.fake.stats.bookmarks;
  await until(() => h.fake.stats.bookmarks >= bookmarks + 10, 'ten bookmarks');
  t.same(h.restarts, [], 'no restart while bookmarks flow');

  h.fake.silenceWatches(true);
  h.fake.serviceAccount('quiet', 'sa');
  h.fake.silenceWatches(false); // new watches work; the open one stays mute
  await until(() => h.objects.has('quiet/sa'), 'the object missed by the mute watch');
  t.ok(h.restarts.includes('silence'), `restarts: ${h.restarts.join(',')}`);
  t.equal(h.fake.stats.lists, 1, 're-watched, not relisted');
});

t.test('connection resets during the initial list are retried until the server answers', async (t) => {
  const h = await setup(t, { objects: 3 });
  await h.fake.down('reset');
  h.reflector.start();
  await until(() => h.restarts.length >= 2, 'failed list attempts');
  t.notOk(h.reflector.hasSynced());
  await h.fake.up();
  await synced(h.reflector);
  t.equal(h.objects.size, 3);
  t.ok(h.restarts.every((r) => r === 'error'), `restarts: ${h.restarts.join(',')}`);
});

t.test('a server that accepts requests and never answers: lists and watches are abandoned', async (t) => {
  // The hang comes before any response header: the stage @kubernetes/client-node's Watch cannot abort.
  const h = await setup(t, { objects: 3, reflector: { silenceMs: 800 } });
  await h.fake.down('hang');
  h.reflector.start();
  await until(() => h.restarts.filter((r) => r === 'silence').length >= 2, 'abandoned lists');
  t.notOk(h.reflector.hasSynced());
  await h.fake.up();
  await synced(h.reflector);

  await until(() => h.fake.activeWatches() === 1, 'the watch');
  const before = h.restarts.length;
  await h.fake.down('hang');
  await until(() => h.restarts.slice(before).filter((r) => r === 'silence').length >= 2, 'abandoned watches');
  h.fake.serviceAccount('after', 'hang');
  await h.fake.up();
  await until(() => h.objects.has('after/hang'), 'the object created during the hang');
  t.equal(h.objects.size, 4);
});

t.test('503 answers are retried until the server recovers', async (t) => {
  const h = await setup(t, { objects: 3 });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');
  await h.fake.down('503');
  h.fake.serviceAccount('during', 'outage');
  await until(() => h.restarts.length >= 3, 'failed watch attempts');
  await h.fake.up();
  await until(() => h.objects.has('during/outage'), 'the change made during the outage');
  t.equal(h.fake.stats.lists, 1);
});

t.test('after a long API server outage, changes made meanwhile are seen', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const warnings = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const h = await setup(t, { objects: 50, reflector: { backoff: { initialMs: 100, maxMs: 2000 }, logger: warnings } });
  h.reflector.start();
  await synced(h.reflector);
  await until(() => h.fake.activeWatches() === 1, 'the watch');

  await h.fake.down('refuse');
  h.fake.serviceAccount('outage', 'added', { k: 'v' });
  h.fake.serviceAccount('ns-0', 'sa-0', { k: 'modified' });
  h.fake.remove('serviceaccounts', 'ns-1', 'sa-1');
  // Long enough to be counted in attempts: the backoff reaches its cap after five.
  await until(() => h.restarts.length >= 10, 'ten failed attempts');
  await h.fake.up();

  await until(() => h.objects.has('outage/added') && h.objects.get('ns-0/sa-0')?.['k'] === 'modified' && !h.objects.has('ns-1/sa-1'), 'the changes');
  // Capped backoff: attempts keep coming during a long outage, but not in a tight loop.
  // Refused connections back off to at most 1 s (the unreachable cap), with jitter down to half of it.
  const delays = lines.filter((l) => typeof l['delayMs'] === 'number').map((l) => l['delayMs'] as number);
  t.ok(delays.length >= 10, `every failed attempt logged its delay (${delays.length})`);
  t.ok(delays.every((d) => d <= 1000), `never more than the cap: ${delays.join(',')}`);
  t.ok(delays.slice(5, 10).every((d) => d >= 500), `from the fifth attempt on, at the cap: ${delays.join(',')}`);
  t.equal(h.objects.size, 50);
  t.equal(h.fake.stats.lists, 1, 'the history was still there: re-watched, not relisted');
});

t.test('stop() aborts everything and rejects waitForSync', async (t) => {
  const fake = await startFakeApiServer();
  t.teardown(() => fake.close());
  await fake.down('refuse');
  let failures = 0;
  const reflector = createReflector<SA>({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    path: '/api/v1/serviceaccounts',
    // An hour: a stop() that waited for the backoff would hang the test.
    backoff: { initialMs: 3_600_000, maxMs: 3_600_000, unreachableMaxMs: 3_600_000 },
    logger,
    handlers: mirror().handlers,
    events: { restart: () => failures++ },
  });
  reflector.start();
  const sync = reflector.waitForSync();
  await until(() => failures === 1, 'the first list to fail (the backoff begins)');
  await reflector.stop(); // resolves: stop did not wait for the backoff
  t.equal(failures, 1, 'stopped during the first backoff');
  await t.rejects(sync, /stopped before it synced/);
  await t.rejects(reflector.waitForSync(), /stopped/);

  // And with an open watch.
  await fake.up();
  const m = mirror();
  const second = createReflector<SA>({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    path: '/api/v1/serviceaccounts',
    logger,
    handlers: m.handlers,
  });
  second.start();
  await synced(second);
  await until(() => fake.activeWatches() === 1, 'the watch');
  await second.stop();
  await until(() => fake.activeWatches() === 0, 'the watch connection to close');
  const watches = fake.stats.watches;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(fake.stats.watches, watches, 'no new watch after stop');
});

t.test('a throwing handler does not stop the reflector', async (t) => {
  const fake = await startFakeApiServer();
  const seen: string[] = [];
  const reflector = createReflector<SA>({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    path: '/api/v1/serviceaccounts',
    logger,
    handlers: {
      upsert(o) {
        if (o.metadata?.name === 'bad') throw new Error('boom');
        seen.push(o.metadata?.name ?? '');
      },
      remove() {},
    },
  });
  t.teardown(async () => {
    await reflector.stop();
    await fake.close();
  });
  reflector.start();
  await synced(reflector);
  fake.serviceAccount('a', 'bad');
  fake.serviceAccount('a', 'good');
  await until(() => seen.includes('good'), 'the event after the throwing one');
  t.equal(fake.stats.watches, 1, 'same watch');
});
