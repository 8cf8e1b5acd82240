// End to end: the webhook's ServiceAccount cache converges after the real
// kube-apiserver goes away and comes back: stopped (SIGSTOP/SIGCONT), killed
// and restarted (etcd keeps the data), and cut off for longer than the etcd
// history (compaction every second, no watch cache for ServiceAccounts, so the
// webhook's resourceVersion is gone and only a relist helps).
//
// Each scenario changes a ServiceAccount's role ARN once the API server is
// back (or while the webhook is cut off) and waits until the webhook's
// /debug/alpha/cache shows it. The time from "API server ready again" to
// "change seen" is reported as a comment; speed goals are not asserted here.
import t, { type Test } from 'tap';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { type Cluster, kubectl, startCluster, startWebhook, tempDir, until, type WebhookProcess, webhookCertificates } from '../helpers/cluster.js';

const ROLE = (n: number): string => `arn:aws:iam::111122223333:role/outage-${n}`;
const NS = 'outage-e2e';
const SA = 'converging';

const started = await startCluster('e2e-outage', {
  PIW_APISERVER_EXTRA_ARGS: '--etcd-compaction-interval=1s --watch-cache-sizes=serviceaccounts#0',
});
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else if (!started.cluster.controlplane || !started.cluster.stateDir) {
  const reason = 'API server outage tests skipped: they stop and restart the local control plane, not an E2E_KUBECONFIG cluster';
  t.skip(reason, () => undefined);
  await started.cluster.down();
} else {
  await t.test('the ServiceAccount cache converges after API server outages', async (t) => run(t, started.cluster));
}

/** A TCP relay in front of the API server: cut() is a network partition, heal() ends it. */
async function startRelay(target: number): Promise<{ port: number; cut(): Promise<void>; heal(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      server = createServer((client) => {
        const upstream = connect(target, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => {
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream).pipe(client);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const cut = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const s of sockets) s.destroy();
    await closed;
    server = undefined;
  };
  await listen();
  return { port, cut, heal: listen, close: cut };
}

function httpGetText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject).end();
  });
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  const controlplane = cluster.controlplane!;
  t.teardown(() => cluster.down());
  const dir = tempDir('piw-outage-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const apiPort = Number(readFileSync(join(cluster.stateDir!, 'apiserver.port'), 'utf8').trim());
  const apiserverPid = (): number => Number(readFileSync(join(cluster.stateDir!, 'kube-apiserver.pid'), 'utf8').trim());

  // The webhook reaches the API server through the relay, as the admin user.
  const relay = await startRelay(apiPort);
  t.teardown(() => relay.close());
  const admin = readFileSync(cluster.kubeconfig, 'utf8');
  const kubeconfig = join(dir, 'relayed.kubeconfig');
  writeFileSync(kubeconfig, admin.replace(`https://127.0.0.1:${apiPort}`, `https://127.0.0.1:${relay.port}`));

  const { ca, tlsArgs } = webhookCertificates(dir);

  const { core } = cluster;
  const created = kubectl(cluster.kubeconfig, ['create', 'namespace', NS]);
  t.ok(created.status === 0 || /AlreadyExists/.test(created.stderr), created.stderr);
  kubectl(cluster.kubeconfig, ['-n', NS, 'delete', 'serviceaccount', SA, '--ignore-not-found']);
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: SA, annotations: { 'eks.amazonaws.com/role-arn': ROLE(0) } } } });

  const webhook: WebhookProcess = await startWebhook([
    '--kubeconfig', kubeconfig,
    ...tlsArgs,
    '--namespace', 'pod-identity-webhook',
    '--enable-debugging-handlers',
  ], ca);
  t.teardown(() => webhook.stop());

  const cachedRole = async (): Promise<string | undefined> => {
    const snapshot = JSON.parse(await httpGetText(webhook.metricsPort, '/debug/alpha/cache')) as { annotated?: Record<string, unknown> };
    const entry = JSON.stringify(snapshot.annotated?.[`${NS}/${SA}`] ?? null);
    return /arn:aws:iam::111122223333:role\/outage-\d+/.exec(entry)?.[0];
  };
  const expiredRestarts = async (): Promise<number> => {
    const metrics = await httpGetText(webhook.metricsPort, '/metrics');
    const line = metrics.split('\n').find((l) => l.includes('reflector_restarts_total') && l.includes('resource="serviceaccounts"') && l.includes('reason="expired"'));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const failedAttempts = (): number => (webhook.logs().match(/"msg":"(watch failed; retrying|list failed|watch silent; restarting it)"/g) ?? []).length;
  /** Sets role n; returns the ServiceAccount's new resourceVersion. */
  const setRole = async (n: number): Promise<string> => {
    const sa = await core.readNamespacedServiceAccount({ name: SA, namespace: NS });
    sa.metadata!.annotations = { 'eks.amazonaws.com/role-arn': ROLE(n) };
    const replaced = await core.replaceNamespacedServiceAccount({ name: SA, namespace: NS, body: sa });
    return replaced.metadata!.resourceVersion!;
  };
  /** Waits (polling every 25 ms) until the webhook's cache has role n; returns when it did. */
  const seen = async (n: number, what: string): Promise<number> => {
    await until(`${what}: role ${n} in the webhook's cache`, async () => ((await cachedRole()) === ROLE(n) ? true : undefined), { everyMs: 25 });
    const at = Date.now();
    t.equal(await cachedRole(), ROLE(n), `${what}: the webhook has role ${n}`);
    return at;
  };
  const report = (t: Test, scenario: string, ms: number): void => {
    const line = `convergence after ${scenario}: ${ms} ms from the API server being ready again to the change in the webhook's cache`;
    t.comment(line);
    console.error(`# ${line}`);
  };

  await seen(0, 'the initial list');

  await t.test('stopped (SIGSTOP) and continued', async (t) => {
    await setRole(1);
    await seen(1, 'before the stop');
    const pid = apiserverPid();
    process.kill(pid, 'SIGSTOP');
    try {
      // An outage, not a wait for an effect: the webhook's requests hang meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 20_000));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const ready = Date.now();
    await setRole(2);
    report(t, 'SIGSTOP for 20 s', (await seen(2, 'after SIGCONT')) - ready);
  });

  await t.test('killed and restarted (etcd kept)', async (t) => {
    const failuresBefore = failedAttempts();
    controlplane('stop-apiserver');
    const killed = Date.now();
    // A 15 s outage (the scenario, like the SIGSTOP above), which the webhook must have noticed.
    await until('failed attempts to reach the killed API server', () => (failedAttempts() >= failuresBefore + 3 && Date.now() - killed >= 15_000 ? true : undefined), { everyMs: 100 });
    controlplane('start-apiserver'); // returns once /readyz answers ok
    const ready = Date.now();
    t.ok(apiserverPid() > 0, 'a new kube-apiserver process');
    await setRole(3);
    report(t, `kill + restart (${failedAttempts() - failuresBefore} failed attempts meanwhile)`, (await seen(3, 'after the restart')) - ready);
  });

  await t.test('cut off while the history is compacted away: relist', async (t) => {
    const expiredBefore = await expiredRestarts();
    await relay.cut();
    // Everything the webhook knows is older than this change. A watch from the
    // webhook's version starts at the revision after it, at most this one, so
    // the history must be compacted past this change, not only past the
    // webhook's version: compaction stops at the newest revision, so the loop
    // writes elsewhere (an annotation on the namespace, which the webhook does
    // not watch) until it gets there.
    const changedAt = await setRole(4);
    let tick = 0;
    // Compaction is visible through the API server: an exact read at that version fails with 410.
    await until('etcd compaction past the change made while the webhook is cut off', () => {
      kubectl(cluster.kubeconfig, ['annotate', 'namespace', NS, `piw-outage-tick=${tick++}`, '--overwrite']);
      const r = kubectl(cluster.kubeconfig, ['get', '--raw', `/api/v1/namespaces/${NS}/serviceaccounts?limit=1&resourceVersion=${changedAt}&resourceVersionMatch=Exact`]);
      return r.status !== 0 && /too old|Expired|Gone|compacted/i.test(r.stderr) ? true : undefined;
    }, { everyMs: 250 });
    t.not(await cachedRole(), ROLE(4), 'the change did not reach the cut-off webhook');
    await relay.heal();
    const back = Date.now();
    report(t, 'a partition past etcd compaction', (await seen(4, 'after the partition')) - back);
    t.ok((await expiredRestarts()) > expiredBefore, 'the webhook saw 410 Gone and relisted');
  });
}
