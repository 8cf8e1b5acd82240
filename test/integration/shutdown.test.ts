// SIGTERM under load, for both kinds of client the API server can be: one that
// keeps its connections alive and one that opens a new connection per request.
// Clients stop sending to this instance once readiness has been failing for a
// while (as the endpoints controller and the API server do); with a
// --shutdown-delay that covers that, not one request fails.
import t from 'tap';
import { existsSync, rmSync } from 'node:fs';
import type { Agent } from 'node:https';
import { startFakeApiServer } from '../helpers/fake-apiserver.js';
import { agent, send } from '../helpers/https.js';
import { pod } from '../helpers/pods.js';
import { admit, eventually, startServeProcess } from '../helpers/serve-process.js';
import { createTestPki } from '../helpers/tls.js';

if (!existsSync('dist/cli.js')) throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');

const pki = createTestPki();
const serving = pki.issue('shutdown');
t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));

interface Outcome {
  client: 'keep-alive' | 'new-connection';
  sentAt: number;
  status?: number;
  allowed?: boolean;
  connection?: string;
  error?: string;
}

/** How many 503s from /readyz in a row make the "endpoints controller" take this instance out. */
const UNREADY_PROBES = 5;

t.test('SIGTERM with --shutdown-delay: keep-alive and new-connection clients lose no request; exit 0', async (t) => {
  const fake = await startFakeApiServer();
  fake.serviceAccount('default', 'app', { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/app' });
  const agents: Agent[] = [];
  const newAgent = (keepAlive: boolean): Agent => {
    const a = agent(pki.caCert, { keepAlive });
    agents.push(a);
    return a;
  };
  const server = await startServeProcess({
    args: ['--kubeconfig', fake.kubeconfigPath, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile, '--shutdown-delay', '3s', '--shutdown-timeout', '10s'],
  });
  t.teardown(async () => {
    for (const a of agents) a.destroy();
    await server.stop();
    await fake.close();
  });
  const probeAgent = newAgent(false);
  await eventually(() => send(server.port, 'GET', '/readyz', { agent: probeAgent }), (r) => r.status === 200, '/readyz 200');

  let sigtermAt = 0;
  let stopSending = false;
  let firstUnreadyAt = 0;
  const outcomes: Outcome[] = [];
  const pollErrors: string[] = [];
  // The endpoints controller: takes the instance out after UNREADY_PROBES failed probes in a row.
  const poller = (async () => {
    let unready = 0;
    while (!stopSending) {
      try {
        const r = await send(server.port, 'GET', '/readyz', { agent: probeAgent });
        unready = r.status === 503 ? unready + 1 : 0;
        if (unready === 1 && sigtermAt > 0) firstUnreadyAt ||= Date.now();
        if (unready >= UNREADY_PROBES) stopSending = true;
      } catch (err) {
        pollErrors.push((err as NodeJS.ErrnoException).code ?? (err as Error).message);
        stopSending = true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const client = async (kind: Outcome['client']): Promise<void> => {
    const a = newAgent(kind === 'keep-alive');
    while (!stopSending) {
      const o: Outcome = { client: kind, sentAt: Date.now() };
      outcomes.push(o);
      try {
        const r = await admit(server.port, a, pod([{ name: 'c' }], { spec: { serviceAccountName: 'app' } }));
        o.status = r.status;
        o.allowed = r.response?.allowed;
        o.connection = String(r.headers['connection'] ?? '');
      } catch (err) {
        o.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      }
    }
  };
  const clients = [client('keep-alive'), client('keep-alive'), client('new-connection'), client('new-connection')];
  // Every client is under way before the signal.
  await eventually(async () => outcomes.filter((o) => o.status === 200).length, (n) => n >= 40, 'requests before SIGTERM', { everyMs: 20 });
  sigtermAt = Date.now();
  server.child.kill('SIGTERM');
  await Promise.all([poller, ...clients]);
  const exit = await server.exited;

  t.equal(exit.code, 0, 'exit code 0');
  t.same(pollErrors, [], 'readiness probes never failed');
  const failed = outcomes.filter((o) => o.status !== 200 || o.allowed !== true);
  t.same(failed, [], `all ${outcomes.length} admissions answered 200`);
  const afterSigterm = outcomes.filter((o) => o.sentAt >= sigtermAt);
  for (const kind of ['keep-alive', 'new-connection'] as const) {
    t.ok(afterSigterm.some((o) => o.client === kind), `${kind} requests were sent during the shutdown delay`);
  }
  // Keep-alive clients are moved off: once unready, every answer closes its connection.
  const afterUnready = outcomes.filter((o) => firstUnreadyAt > 0 && o.sentAt >= firstUnreadyAt);
  t.ok(afterUnready.length > 0, `requests were sent while /readyz was 503 (${afterUnready.length})`);
  t.same(afterUnready.filter((o) => o.connection !== 'close').map((o) => o.connection), [], 'answers while unready carry Connection: close');
  t.notOk(server.logs.some((l) => /did not finish in time/.test(l.msg ?? '')), 'nothing was cut off by --shutdown-timeout');
  t.ok(server.logs.some((l) => l.msg === 'stopped'), 'logged "stopped"');
  t.comment(`${outcomes.length} admissions, ${afterSigterm.length} after SIGTERM; exit ${exit.at - sigtermAt} ms after SIGTERM`);
});
