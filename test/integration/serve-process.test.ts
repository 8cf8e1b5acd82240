// The real `serve` binary (dist/cli.js, started exactly as the image does)
// against the in-process fake API server: readiness, the ServiceAccount cache
// (watch, direct GET on a miss, grace period), graceful shutdown under load,
// the identities file and the ConfigMap, and flag errors.
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FakeApiServer, startFakeApiServer, until } from '../helpers/fake-apiserver.js';
import { agent, send } from '../helpers/https.js';
import { ROLE, pod } from '../helpers/pods.js';
import { SERVE_COMMAND } from '../helpers/serve-command.js';
import { type ServeProcess, admit, eventually, metric, startServeProcess } from '../helpers/serve-process.js';
import { createTestPki } from '../helpers/tls.js';
import { exitedReason } from '../helpers/wait.js';
import { spawnTied } from '../helpers/child.js';

if (!existsSync('dist/cli.js')) throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');

const ROLE_ARN = 'eks.amazonaws.com/role-arn';
const roleFor = (name: string): string => `arn:aws:iam::111122223333:role/${name}`;
const FULL_URI = 'AWS_CONTAINER_CREDENTIALS_FULL_URI';
const MISSES = 'pod_identity_webhook_service_account_cache_misses_total';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const podOf = (serviceAccountName: string): ReturnType<typeof pod> => pod([{ name: 'c' }], { spec: { serviceAccountName } });

const pki = createTestPki();
const serving = pki.issue('serve-process');
t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));

interface Env {
  fake: FakeApiServer;
  server: ServeProcess;
  a: Agent;
}

/** Starts a fake API server (prepared by `prepare`) and `serve` against it; everything stops at teardown. */
async function setup(
  t: Test,
  extraArgs: string[] = [],
  prepare: (fake: FakeApiServer) => void | Promise<void> = () => undefined,
): Promise<Env> {
  const fake = await startFakeApiServer();
  const a = agent(pki.caCert);
  const started: { server?: ServeProcess } = {};
  t.teardown(async () => {
    a.destroy();
    await started.server?.stop();
    await fake.close();
  });
  await prepare(fake);
  const server = (started.server = await startServeProcess({
    args: ['--kubeconfig', fake.kubeconfigPath, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile, ...extraArgs],
  }));
  return { fake, server, a };
}

const readyz = (env: Env): Promise<{ status: number; body: string }> => send(env.server.port, 'GET', '/readyz', { agent: env.a });

async function waitReady(env: Env): Promise<void> {
  await eventually(() => readyz(env), (r) => r.status === 200, '/readyz 200', { giveUpIf: () => exitedReason(env.server.child, 'serve', env.server.stderr) });
}

t.test('/readyz is 503 until the ServiceAccount list has synced; then a pod of an annotated ServiceAccount gets its role', async (t) => {
  const env = await setup(t, [], async (fake) => {
    fake.serviceAccount('default', 'app', { [ROLE_ARN]: ROLE });
    await fake.down('503');
  });
  // The API server answers 503 to the list: the webhook must stay unready however often it is asked.
  // Probed until the webhook has seen its list fail twice (the restarts metric), not for a fixed time.
  const failedLists = 'pod_identity_webhook_reflector_restarts_total{resource="serviceaccounts",reason="error"}';
  const statuses: number[] = [];
  let last = '';
  await eventually(async () => {
    const r = await readyz(env);
    statuses.push(r.status);
    last = r.body;
    return metric(env.server.metricsPort, failedLists);
  }, (failures) => failures >= 2, 'two failed lists', { everyMs: 100, giveUpIf: () => exitedReason(env.server.child, 'serve', env.server.stderr) });
  statuses.push((await readyz(env)).status);
  t.same([...new Set(statuses)], [503], `unready while the list fails (${statuses.length} probes)`);
  t.match(last, /ServiceAccount cache not synced/);
  t.equal(env.fake.stats.lists, 0, 'no list has succeeded yet');
  t.equal((await send(env.server.port, 'GET', '/healthz', { agent: env.a })).status, 200, 'alive meanwhile');

  await env.fake.up();
  await waitReady(env);
  t.ok(env.fake.stats.lists >= 1, 'ready only after a list succeeded');

  const r = await admit(env.server.port, env.a, podOf('app'));
  t.equal(r.status, 200);
  t.equal(r.response?.allowed, true);
  t.equal(r.response?.patchType, 'JSONPatch');
  t.ok(r.patchText.includes(`{"name":"AWS_ROLE_ARN","value":"${ROLE}"}`), 'AWS_ROLE_ARN is the annotated role');
  t.ok(r.patchText.includes('AWS_WEB_IDENTITY_TOKEN_FILE'));
  t.equal(await metric(env.server.metricsPort, 'pod_identity_webhook_admission_requests_total{outcome="mutated"}'), 1);
});

t.test('a pod larger than 64 KiB is decoded by the built program\'s worker thread and mutated', async (t) => {
  const env = await setup(t, [], (fake) => { fake.serviceAccount('default', 'app', { [ROLE_ARN]: ROLE }); });
  await waitReady(env);
  // Bodies above 64 KiB are parsed in a worker (server/body-decoder.ts), a file of its own in dist/.
  const big = pod([{ name: 'c' }], { metadata: { annotations: { note: 'x'.repeat(100 * 1024) } }, spec: { serviceAccountName: 'app' } });
  const r = await admit(env.server.port, env.a, big);
  t.equal(r.status, 200, r.body.slice(0, 200));
  t.ok(r.patchText.includes(`{"name":"AWS_ROLE_ARN","value":"${ROLE}"}`), 'AWS_ROLE_ARN is the annotated role');
  t.same(env.server.logs.filter((l) => /could not be decoded/.test(String(l['msg']))), [], 'no decoder failure logged');
});

t.test('ServiceAccounts created after startup: delivered by the watch, or read with a GET on a cache miss; a slow GET ends with the grace period', async (t) => {
  const env = await setup(t, ['--service-account-lookup-grace-period', '1s'], (fake) => {
    fake.serviceAccount('default', 'app', { [ROLE_ARN]: ROLE });
  });
  const { fake, server } = env;
  await waitReady(env);
  await until(() => fake.activeWatches() >= 1, 'the ServiceAccount watch');

  t.test('the watch', async (t) => {
    const lastSync = 'pod_identity_webhook_reflector_last_sync_timestamp_seconds{resource="serviceaccounts"}';
    const listedAt = await metric(server.metricsPort, lastSync);
    t.ok(listedAt > 0, 'the initial list set the last-sync time');
    // The time is in milliseconds: any later event is a later time once the clock has moved past the list.
    await until(() => Date.now() / 1000 > listedAt, 'the clock to pass the list time');
    fake.serviceAccount('default', 'added-later', { [ROLE_ARN]: roleFor('added-later') });
    await eventually(() => metric(server.metricsPort, 'pod_identity_webhook_service_account_cache_size'), (n) => n === 2, 'the watch to deliver it');
    t.ok((await metric(server.metricsPort, lastSync)) > listedAt, 'a watch event moves the last-sync time forward');
    const r = await admit(server.port, env.a, podOf('added-later'));
    t.ok(r.patchText.includes(roleFor('added-later')), 'the new role is used');
    t.equal(fake.getCount('serviceaccounts', 'default', 'added-later'), 0, 'no GET was needed');
    t.equal(await metric(server.metricsPort, `${MISSES}{outcome="api"}`), 0);
  });

  t.test('a cache miss is read with a GET', async (t) => {
    // The watch stays connected but delivers nothing: only the GET can find it.
    fake.silenceWatches(true);
    fake.serviceAccount('default', 'not-yet-watched', { [ROLE_ARN]: roleFor('not-yet-watched') });
    const r = await admit(server.port, env.a, podOf('not-yet-watched'));
    t.equal(r.status, 200);
    t.ok(r.patchText.includes(roleFor('not-yet-watched')), 'the role read by the GET is used');
    t.equal(fake.getCount('serviceaccounts', 'default', 'not-yet-watched'), 1, 'one direct GET');
    t.equal(await metric(server.metricsPort, `${MISSES}{outcome="api"}`), 1, 'counted as a miss answered by the API');
    // The GET's answer is cached: the next pod needs no GET.
    const again = await admit(server.port, env.a, podOf('not-yet-watched'));
    t.ok(again.patchText.includes(roleFor('not-yet-watched')));
    t.equal(fake.getCount('serviceaccounts', 'default', 'not-yet-watched'), 1, 'still one GET');
  });

  t.test('a missing ServiceAccount with a slow GET: answered at the grace period, with a warning and no patch', async (t) => {
    const release = fake.holdGets((name) => name === 'ghost'); // never answered
    const before = await metric(server.metricsPort, `${MISSES}{outcome="timeout"}`);
    // The GET is never answered: an answer at all means the webhook did not wait for it.
    const r = await admit(server.port, env.a, podOf('ghost'));
    t.equal(r.status, 200);
    t.equal(r.response?.allowed, true, 'the pod is admitted');
    t.equal(r.response?.patch, undefined, 'without a patch');
    t.match(r.response?.warnings, [/ServiceAccount default\/ghost could not be read in time/]);
    t.equal(fake.getCount('serviceaccounts', 'default', 'ghost'), 1, 'the GET was sent');
    // Only the grace-period timer gives 'timeout' (a failed GET gives 'error'): the answer came when it fired.
    t.equal(await metric(server.metricsPort, `${MISSES}{outcome="timeout"}`), before + 1, 'counted as a miss that timed out');
    release();
  });
});

interface RequestRecord {
  kind: 'fast' | 'slow' | 'sentinel' | 'follow-up';
  sentAt: number;
  doneAt: number;
  status?: number;
  error?: string;
  allowed?: boolean;
  /** The response's Connection header. */
  connection?: string;
}

t.test('SIGTERM under load: unready during --shutdown-delay, no accepted request fails, exit 0', async (t) => {
  const GET_DELAY_MS = 3000;
  const SHUTDOWN_DELAY_MS = 1000;
  // Generous: the assertions below are about order (unready, then closed, then exit), not speed.
  const SHUTDOWN_TIMEOUT_MS = 120_000;
  const env = await setup(
    t,
    ['--shutdown-delay', '1s', '--shutdown-timeout', '120s', '--service-account-lookup-grace-period', '120s'],
    (fake) => {
      fake.serviceAccount('default', 'app', { [ROLE_ARN]: ROLE });
    },
  );
  const { fake, server } = env;
  await waitReady(env);
  // Misses of ServiceAccounts that do not exist take GET_DELAY_MS (then 404): slow, but well within the grace period.
  fake.setGetDelay(GET_DELAY_MS);

  const records: RequestRecord[] = [];
  const agents: Agent[] = [];
  t.teardown(() => {
    for (const a of agents) a.destroy();
  });
  const newAgent = (keepAlive = true): Agent => {
    const a = agent(pki.caCert, { keepAlive });
    agents.push(a);
    return a;
  };
  const mutate = async (kind: RequestRecord['kind'], a: Agent, serviceAccount: string, into = records): Promise<void> => {
    const rec: RequestRecord = { kind, sentAt: Date.now(), doneAt: 0 };
    into.push(rec);
    try {
      const r = await admit(server.port, a, podOf(serviceAccount));
      rec.status = r.status;
      rec.allowed = r.response?.allowed;
      rec.connection = String(r.headers['connection'] ?? '');
    } catch (err) {
      rec.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
    rec.doneAt = Date.now();
  };

  // The API server stops calling a webhook whose endpoints are gone, i.e. once it is unready:
  // one poller stands for the endpoints controller, and every client stops when it sees 503.
  let stopSending = false;
  let unreadyAt: number | undefined;
  let readyBeforeSigterm = 0;
  let sigtermAt = 0;
  const pollerErrors: string[] = [];
  const pollerAgent = newAgent();
  const poller = (async () => {
    while (!stopSending) {
      try {
        const r = await send(server.port, 'GET', '/readyz', { agent: pollerAgent });
        if (r.status === 503) {
          unreadyAt = Date.now();
          stopSending = true;
        } else if (sigtermAt === 0) readyBeforeSigterm++;
      } catch (err) {
        pollerErrors.push((err as NodeJS.ErrnoException).code ?? (err as Error).message);
        stopSending = true;
      }
      await sleep(20);
    }
  })();
  const fastClient = async (): Promise<void> => {
    const a = newAgent();
    while (!stopSending) await mutate('fast', a, 'app');
  };
  let slowSeq = 0;
  const slowClient = async (): Promise<void> => {
    const a = newAgent();
    // A name never used before: every request is a miss with its own slow GET.
    while (!stopSending) await mutate('slow', a, `missing-${slowSeq++}`);
  };
  const clients = [fastClient(), fastClient(), fastClient(), fastClient(), slowClient(), slowClient(), slowClient()];

  // Under load: fast requests answered, and every slow client waiting on its GET.
  await until(() => records.some((r) => r.kind === 'fast' && r.doneAt > 0) && fake.stats.getsInFlight >= 3, 'the load to build up');
  // Requests certainly in flight at SIGTERM: their GETs are held until the listener has closed.
  // Each then sends one more request on its keep-alive connection at once, as a client that has not
  // (yet) seen the endpoints change would: it must not be accepted and then failed.
  const releaseSentinels = fake.holdGets((name) => name.startsWith('in-flight-'));
  t.teardown(releaseSentinels);
  const followUps: RequestRecord[] = [];
  const sentinels = [0, 1, 2].map(async (i) => {
    const a = newAgent();
    await mutate('sentinel', a, `in-flight-${i}`);
    await mutate('follow-up', a, 'app', followUps);
  });
  await until(() => [0, 1, 2].every((i) => fake.getCount('serviceaccounts', 'default', `in-flight-${i}`) === 1), 'the sentinels to reach the API server');
  sigtermAt = Date.now();
  server.child.kill('SIGTERM');

  // Once the clients have stopped, a probe on fresh connections finds when the listener closes.
  await until(() => stopSending, 'readiness to turn false');
  let closedAt: number | undefined;
  const probeAgent = newAgent(false);
  let exited = false;
  void server.exited.then(() => (exited = true));
  while (closedAt === undefined && !exited) {
    const at = Date.now();
    try {
      await send(server.port, 'GET', '/healthz', { agent: probeAgent });
      await sleep(25);
    } catch {
      closedAt = at;
    }
  }

  releaseSentinels();
  await Promise.all([poller, ...clients, ...sentinels]);
  const exit = await server.exited;
  t.equal(exit.code, 0, 'exit code 0');
  t.equal(exit.signal, null, 'not killed by a signal');
  t.same(pollerErrors, [], 'readiness probes never failed');
  t.ok(readyBeforeSigterm > 0, 'ready before SIGTERM');
  t.ok(unreadyAt !== undefined, '/readyz turned 503');
  t.ok(closedAt !== undefined, 'the listener closed');
  const since = (at: number | undefined): number => (at ?? Infinity) - sigtermAt;
  t.ok(unreadyAt! < closedAt!, `/readyz was 503 (after ${since(unreadyAt)} ms) before the listener closed (after ${since(closedAt)} ms)`);
  // --shutdown-delay, read from the server's own log times (a stalled test process would see less of it).
  const logTime = (msg: string): number => Date.parse(String(server.logs.find((l) => l.msg === msg)?.['time']));
  const delayed = logTime('closing the listener; finishing in-flight requests') - logTime('shutting down');
  t.ok(delayed >= SHUTDOWN_DELAY_MS / 2, `the listener closed ${delayed} ms after SIGTERM was handled (--shutdown-delay 1s)`);

  const failed = records.filter((r) => r.status !== 200 || r.allowed !== true);
  t.same(failed, [], `every one of ${records.length} requests got 200 with an AdmissionReview`);
  t.ok(records.every((r) => r.sentAt < closedAt!), 'every request was sent before the listener closed');
  const inFlightAtSigterm = records.filter((r) => r.sentAt < sigtermAt && r.doneAt > sigtermAt);
  const inFlightAtClose = records.filter((r) => r.sentAt < closedAt! && r.doneAt > closedAt!);
  const afterSigterm = records.filter((r) => r.sentAt >= sigtermAt);
  t.ok(inFlightAtSigterm.filter((r) => r.kind !== 'fast').length >= 3, `slow requests were in flight at SIGTERM (${inFlightAtSigterm.length})`);
  t.ok(inFlightAtClose.length >= 3, `requests were in flight when the listener closed and still completed (${inFlightAtClose.length})`);
  t.ok(records.some((r) => r.kind === 'fast' && r.sentAt < sigtermAt), 'fast requests were served before SIGTERM');
  // As Go's http.Server.Shutdown does: a response written after the listener closed says
  // "Connection: close", so the client does not send another request on a connection the
  // server is about to drop (it would get 503 or a reset), and the server need not wait for it.
  t.same(
    inFlightAtClose.map((r) => r.connection),
    inFlightAtClose.map(() => 'close'),
    'responses finished after the listener closed carry Connection: close',
  );
  // The follow-ups were sent after the listener closed: refused at connect (never accepted) is
  // right; a 503 or a reset on the reused connection would be a request accepted and then failed.
  t.same(
    followUps.map((r) => (r.status === 200 ? 'ok' : r.error === 'ECONNREFUSED' ? 'refused' : `status ${r.status ?? '-'} ${r.error ?? ''}`)).filter((o) => o !== 'ok' && o !== 'refused'),
    [],
    `requests sent right after the close on a kept-alive connection are served or refused at connect: ${JSON.stringify(followUps.map((r) => r.status ?? r.error))}`,
  );
  const lastDone = Math.max(...records.map((r) => r.doneAt));
  const exitMs = exit.at - sigtermAt;
  // Idle keep-alive connections (the clients keep theirs open) must not hold the process until the timeout.
  t.ok(exitMs < SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS, `exited before --shutdown-timeout ran out: ${exit.at - lastDone} ms after the last request completed`);
  t.notOk(server.logs.some((l) => /did not finish in time/.test(l.msg ?? '')), 'no request was cut off by --shutdown-timeout');
  t.ok(server.logs.some((l) => l.msg === 'stopped'), 'logged "stopped" (the log was flushed before exit)');
  t.comment(
    `shutdown: ${records.length} requests (${records.filter((r) => r.kind === 'fast').length} fast, ${records.filter((r) => r.kind !== 'fast').length} slow), ` +
      `${afterSigterm.length} sent after SIGTERM, ${inFlightAtSigterm.length} in flight at SIGTERM, ${inFlightAtClose.length} in flight at close; ` +
      `unready after ${since(unreadyAt)} ms, listener closed after ${since(closedAt)} ms, last request done after ${since(lastDone)} ms, exit after ${exitMs} ms`,
  );
});

interface ConfigMapVolume {
  path: string;
  /** Publishes new contents the way the kubelet does. */
  update(content: string): void;
  remove(): void;
}

/** A directory laid out like a ConfigMap volume: FILE -> ..data/FILE, ..data -> ..TIMESTAMP/FILE. */
function configMapVolume(file: string, initial: string): ConfigMapVolume {
  const dir = mkdtempSync(join(tmpdir(), 'piw-cm-volume-'));
  let n = 0;
  let current: string | undefined;
  const update = (content: string): void => {
    const stamp = `..2024_06_01_12_00_${String(n++).padStart(2, '0')}.${process.pid}`;
    mkdirSync(join(dir, stamp));
    writeFileSync(join(dir, stamp, file), content);
    // The kubelet's atomic writer: a new ..data symlink renamed over the old one, then the old directory removed.
    symlinkSync(stamp, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    if (current) rmSync(join(dir, current), { recursive: true, force: true });
    current = stamp;
  };
  update(initial);
  symlinkSync(join('..data', file), join(dir, file));
  return { path: join(dir, file), update, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

t.test('--watch-container-credentials-config: reloaded on a ConfigMap-volume symlink swap; invalid JSON keeps the last good set', async (t) => {
  const identities = (...names: string[]): string => JSON.stringify({ identities: names.map((serviceAccount) => ({ namespace: 'default', serviceAccount })) });
  const volume = configMapVolume('identities.json', identities('cc-one'));
  t.teardown(() => volume.remove());
  const env = await setup(t, ['--watch-container-credentials-config', volume.path], (fake) => {
    fake.serviceAccount('default', 'cc-one');
    fake.serviceAccount('default', 'cc-two');
  });
  const { server } = env;
  await waitReady(env);
  const reloads = (result: string): Promise<number> =>
    metric(server.metricsPort, `pod_identity_webhook_config_reloads_total{source="container-credentials",result="${result}"}`);
  const hasCc = async (sa: string): Promise<boolean> => (await admit(server.port, env.a, podOf(sa))).patchText.includes(FULL_URI);

  t.equal(await hasCc('cc-one'), true, 'cc-one gets container credentials');
  t.equal(await hasCc('cc-two'), false, 'cc-two is not listed yet');
  t.equal(await reloads('success'), 1);

  volume.update(identities('cc-two'));
  // fs.watch on the directory sees the swap at once; the 10 s poll is the backstop.
  await eventually(() => hasCc('cc-two'), (v) => v, 'cc-two to get container credentials', { everyMs: 200 });
  t.pass('after the swap cc-two gets container credentials');
  const r = await admit(server.port, env.a, podOf('cc-two'));
  t.ok(r.patch.some((op) => JSON.stringify(op.value).includes(`"${FULL_URI}"`)), 'AWS_CONTAINER_CREDENTIALS_FULL_URI in the patch');
  t.equal(await hasCc('cc-one'), false, 'cc-one is no longer listed');
  t.equal(await reloads('success'), 2);

  const errorsBefore = await reloads('error');
  volume.update('{"identities": [ not json');
  await eventually(() => reloads('error'), (n) => n === errorsBefore + 1, 'the invalid file to be counted', { everyMs: 200 });
  t.pass('config_reloads_total{result="error"} increased');
  t.equal(await hasCc('cc-two'), true, 'the last good set stays: cc-two still gets container credentials');
  t.equal(await hasCc('cc-one'), false);
  t.equal((await readyz(env)).status, 200, 'still ready');

  volume.update(identities('cc-one', 'cc-two'));
  await eventually(() => hasCc('cc-one'), (v) => v, 'a valid file after the invalid one to apply', { everyMs: 200 });
  t.equal(await hasCc('cc-two'), true);
  t.equal(await reloads('success'), 3);
});

t.test('--watch-config-map: the pod-identity-webhook ConfigMap of --namespace gives roles; updates and deletion apply', async (t) => {
  const NS = 'piw-system';
  const config = (role: string): Record<string, string> => ({ config: JSON.stringify({ 'default/cm-sa': { RoleARN: role } }) });
  const env = await setup(t, ['--watch-config-map', '--namespace', NS], (fake) => {
    fake.serviceAccount('default', 'cm-sa');
    fake.configMap(NS, 'pod-identity-webhook', config(roleFor('cm-first')));
    // The same name in another namespace must be ignored.
    fake.configMap('default', 'pod-identity-webhook', config(roleFor('wrong-namespace')));
  });
  const { fake, server } = env;
  await waitReady(env);
  const roleOf = async (): Promise<string> => {
    const r = await admit(server.port, env.a, podOf('cm-sa'));
    const env_ = r.patch.flatMap((op) => (Array.isArray(op.value) ? op.value : [op.value])) as Array<{ name?: string; value?: string }>;
    return env_.find((e) => e?.name === 'AWS_ROLE_ARN')?.value ?? (r.patch.length === 0 ? 'no patch' : 'patch without AWS_ROLE_ARN');
  };

  t.equal(await roleOf(), roleFor('cm-first'), 'the unannotated ServiceAccount gets the ConfigMap role');
  fake.configMap(NS, 'pod-identity-webhook', config(roleFor('cm-second')));
  t.equal(await eventually(roleOf, (r) => r === roleFor('cm-second'), 'the updated role'), roleFor('cm-second'), 'an update changes the role');
  fake.remove('configmaps', NS, 'pod-identity-webhook');
  t.equal(await eventually(roleOf, (r) => r === 'no patch', 'no patch after deletion'), 'no patch', 'deleting the ConfigMap removes the role');
  t.ok((await metric(server.metricsPort, 'pod_identity_webhook_config_reloads_total{source="config-map",result="success"}')) >= 3);
});

t.test('bad serve flags: exit 2 with one line on stderr', async (t) => {
  const fake = await startFakeApiServer();
  t.teardown(() => fake.close());
  // Everything else is valid: were a bad flag accepted, the server would start (and be stopped below).
  const valid = ['--kubeconfig', fake.kubeconfigPath, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile, '--port', '0', '--metrics-port', '0', '--bind-address', '127.0.0.1'];
  const cases: Array<{ args: string[]; message: RegExp }> = [
    { args: ['--tls-min-version', '9'], message: /tls-min-version 9/ },
    { args: ['--port', '99999'], message: /99999/ },
    { args: ['--metrics-port', '-1'], message: /-1/ },
    { args: ['--log-level', 'loud'], message: /--log-level.*'?loud'?/ },
    { args: ['--kubeconfig', '/nope'], message: /--kubeconfig \/nope/ },
    { args: ['--shutdown-delay', 'soon'], message: /shutdown-delay/ },
    { args: ['--tls-cipher-suites', 'TLS_NOT_A_SUITE'], message: /TLS_NOT_A_SUITE/ },
  ];
  const [cmd, ...rest] = SERVE_COMMAND;
  await Promise.all(
    cases.map(async (c) => {
      const child = spawnTied(cmd, [...rest, ...valid, ...c.args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let stdout = '';
      child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      // Were the flag accepted, the server would run: stop it once it says it listens.
      child.stdout!.on('data', () => {
        if (stdout.includes('webhook listening')) child.kill('SIGKILL');
      });
      const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
      const name = c.args.join(' ');
      t.equal(code, 2, `${name}: exit 2`);
      t.equal(stderr.trimEnd().split('\n').length, 1, `${name}: one line (${JSON.stringify(stderr)})`);
      t.match(stderr, /^error: /, `${name}: starts with "error: "`);
      t.match(stderr, c.message, `${name}: names the problem`);
      t.notMatch(stderr, /\n\s+at /, `${name}: no stack trace`);
      t.notMatch(stdout, /webhook listening/, `${name}: nothing started`);
    }),
  );
});

t.test('a crash is logged as fatal with its error, and exits 1', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'piw-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Stands in for a bug: SIGUSR2 throws inside the running server.
  const bug = join(dir, 'bug.mjs');
  writeFileSync(bug, "process.on('SIGUSR2', () => { throw new Error('a bug for the test'); });\n");
  const fake = await startFakeApiServer();
  t.teardown(() => fake.close());
  const server = await startServeProcess({
    args: ['--kubeconfig', fake.kubeconfigPath, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile],
    env: { NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --import=${bug}` },
  });
  t.teardown(() => server.stop());
  server.child.kill('SIGUSR2');
  const exit = await server.exited;
  t.equal(exit.code, 1, 'exit code 1');
  // The exit event can come before the last output is read.
  await new Promise((resolve) => (server.child.stdout?.readableEnded ? resolve(undefined) : server.child.stdout?.once('end', resolve)));
  const fatal = server.logs.find((l) => l.level === 'fatal');
  t.equal(fatal?.msg, 'uncaught exception');
  t.equal((fatal?.['err'] as { message?: string } | undefined)?.message, 'a bug for the test', 'with the error');
});
