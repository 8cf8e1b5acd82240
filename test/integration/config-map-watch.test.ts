// --watch-config-map against the fake API server: updates replace the map,
// deletion empties it, invalid config keeps the last good map.
import t from 'tap';
import { pino } from 'pino';
import { loadKubeConfig } from '../../src/kube/client.js';
import { type ConfigMapWatch, createConfigMapWatch } from '../../src/identity/config-map-watch.js';
import { CONFIG_MAP_NAME } from '../../src/config.js';
import { type FakeApiServer, startFakeApiServer, until } from '../helpers/fake-apiserver.js';

const NS = 'webhook';
const ROLE_A = 'arn:aws:iam::111122223333:role/a';
const ROLE_B = 'arn:aws:iam::111122223333:role/b';
const config = (entries: Record<string, object>): Record<string, string> => ({ config: JSON.stringify(entries) });

interface Harness {
  fake: FakeApiServer;
  watch: ConfigMapWatch;
  invalid: Error[];
  logs: { level: number; msg: string }[];
}

async function setup(t: { teardown(fn: () => unknown): void }, initial?: Record<string, string>): Promise<Harness> {
  const fake = await startFakeApiServer();
  if (initial) fake.configMap(NS, CONFIG_MAP_NAME, initial);
  const invalid: Error[] = [];
  const logs: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { level: number; msg: string }) });
  const watch = createConfigMapWatch({
    kc: loadKubeConfig({ kubeconfig: fake.kubeconfigPath }),
    namespace: NS,
    logger,
    backoff: { initialMs: 50, maxMs: 500 },
    events: { invalid: (err) => invalid.push(err) },
  });
  t.teardown(async () => {
    await watch.stop();
    await fake.close();
  });
  watch.start();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    watch.waitForSync(),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('not synced within 20 s')), 20_000))),
  ]).finally(() => clearTimeout(timer));
  await until(() => fake.activeWatches() === 1, 'the watch');
  return { fake, watch, invalid, logs };
}

t.test('an existing ConfigMap is loaded by the initial list', async (t) => {
  const h = await setup(t, config({ 'app/sa': { RoleARN: ROLE_A, Audience: 'aud' }, '*/any': { RoleARN: ROLE_B } }));
  t.ok(h.watch.hasSynced());
  t.same(h.watch.current().get('app/sa'), { roleArn: ROLE_A, audience: 'aud' });
  t.equal(h.watch.current().get('*/any')?.roleArn, ROLE_B);
  t.equal(h.watch.current().size, 2);
});

t.test('no ConfigMap: synced and empty; creation and updates replace the whole map', async (t) => {
  const h = await setup(t);
  t.equal(h.watch.current().size, 0);

  h.fake.configMap(NS, CONFIG_MAP_NAME, config({ 'app/one': { RoleARN: ROLE_A } }));
  await until(() => h.watch.current().size === 1, 'the created ConfigMap');
  const first = h.watch.current();

  h.fake.configMap(NS, CONFIG_MAP_NAME, config({ 'app/two': { RoleARN: ROLE_B, TokenExpiration: 3600 } }));
  await until(() => h.watch.current().has('app/two'), 'the update');
  t.notOk(h.watch.current().has('app/one'), 'entries missing from the update are gone');
  t.same(h.watch.current().get('app/two'), { roleArn: ROLE_B, tokenExpiration: 3600 });
  t.ok(first.has('app/one') && first.size === 1, 'a map once handed out is never mutated');
});

t.test('deletion empties the identities', async (t) => {
  const h = await setup(t, config({ 'app/sa': { RoleARN: ROLE_A } }));
  t.equal(h.watch.current().size, 1);
  h.fake.remove('configmaps', NS, CONFIG_MAP_NAME);
  await until(() => h.watch.current().size === 0, 'the deletion');
  h.fake.configMap(NS, CONFIG_MAP_NAME, config({ 'app/back': { RoleARN: ROLE_B } }));
  await until(() => h.watch.current().has('app/back'), 'the re-creation');
});

t.test('invalid data.config keeps the last good identities, logs and counts it', async (t) => {
  const h = await setup(t, config({ 'app/sa': { RoleARN: ROLE_A } }));
  h.fake.configMap(NS, CONFIG_MAP_NAME, { config: '{"app/sa": {"RoleARN": 42}}' });
  await until(() => h.invalid.length === 1, 'the invalid config to be reported');
  t.match(h.invalid[0]?.message, /RoleARN must be a string/);
  t.equal(h.watch.current().get('app/sa')?.roleArn, ROLE_A, 'last good map kept');
  t.ok(h.logs.some((l) => l.level === 50 && /invalid/.test(l.msg)), 'an error is logged');

  h.fake.configMap(NS, CONFIG_MAP_NAME, { config: 'not json' });
  await until(() => h.invalid.length === 2, 'the second invalid config');
  t.equal(h.watch.current().get('app/sa')?.roleArn, ROLE_A, 'still the last good map');

  h.fake.configMap(NS, CONFIG_MAP_NAME, config({ 'app/fixed': { RoleARN: ROLE_B } }));
  await until(() => h.watch.current().has('app/fixed'), 'the valid config');
  t.notOk(h.watch.current().has('app/sa'));
});

t.test('a deletion missed while disconnected is caught by the relist', async (t) => {
  const h = await setup(t, config({ 'app/sa': { RoleARN: ROLE_A } }));
  await h.fake.down('refuse');
  h.fake.remove('configmaps', NS, CONFIG_MAP_NAME);
  h.fake.compact(); // the DELETED event is gone from history: only a relist can tell
  await h.fake.up();
  await until(() => h.watch.current().size === 0, 'the identities to be cleared');
  t.equal(h.fake.stats.lists, 2, 'relisted');
});

t.test('other ConfigMaps, in this namespace or elsewhere, are ignored', async (t) => {
  const h = await setup(t, config({ 'app/sa': { RoleARN: ROLE_A } }));
  h.fake.configMap(NS, 'unrelated', config({ 'app/x': { RoleARN: ROLE_B } }));
  h.fake.configMap('elsewhere', CONFIG_MAP_NAME, config({ 'app/y': { RoleARN: ROLE_B } }));
  h.fake.remove('configmaps', NS, 'unrelated');
  h.fake.remove('configmaps', 'elsewhere', CONFIG_MAP_NAME);
  // A change to ours after them: once it shows, the others would have shown too.
  h.fake.configMap(NS, CONFIG_MAP_NAME, config({ 'app/sa': { RoleARN: ROLE_A }, 'app/z': { RoleARN: ROLE_A } }));
  await until(() => h.watch.current().has('app/z'), 'our update');
  t.same([...h.watch.current().keys()].sort(), ['app/sa', 'app/z']);
});
