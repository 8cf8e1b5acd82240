// The --manage-certificates controller against an in-process stand-in for the
// three objects it writes (Secret, Lease, MutatingWebhookConfiguration), with
// resourceVersion checks as the API server does them, so that a write based on
// stale data gets 409. The real API server is in test/e2e/managed-certificates.
import http, { type ServerResponse } from 'node:http';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { createManagedCertificates } from '../../src/certificates/controller.js';
import { loadKubeConfig } from '../../src/kube/client.js';
import { waitUntil } from '../helpers/wait.js';

const NS = 'piw';
const NAME = 'pod-identity-webhook';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

/** Secret, Lease and webhook configuration in memory; `conflicts` Secret writes are beaten by "someone else". */
async function startFake() {
  let rv = 10;
  const objects: Record<string, Obj> = {
    secret: { apiVersion: 'v1', kind: 'Secret', metadata: { name: NAME, namespace: NS, resourceVersion: String(rv++), labels: { keep: 'me' } }, type: 'Opaque' },
    lease: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: NAME, namespace: NS, resourceVersion: String(rv++) }, spec: {} },
    mwc: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: NAME, resourceVersion: String(rv++) },
      webhooks: [{ name: 'a.example.com', clientConfig: { url: 'https://127.0.0.1/mutate' } }, { name: 'b.example.com', clientConfig: { url: 'https://127.0.0.1/mutate' } }],
    },
  };
  const paths: Record<string, string> = {
    [`/api/v1/namespaces/${NS}/secrets/${NAME}`]: 'secret',
    [`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${NAME}`]: 'lease',
    [`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${NAME}`]: 'mwc',
  };
  const state = { conflicts: 0, conflictsServed: 0, writes: [] as string[], reads: {} as Record<string, number> };
  const watchers = new Set<ServerResponse>();
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  };
  const status = (res: ServerResponse, code: number, reason: string): void => send(res, code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code, message: reason });
  const store = (key: string, obj: Obj): Obj => {
    obj.metadata.resourceVersion = String(rv++);
    objects[key] = obj;
    if (key === 'secret') for (const w of watchers) w.write(`${JSON.stringify({ type: 'MODIFIED', object: obj })}\n`);
    return obj;
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let text = '';
    req.setEncoding('utf8').on('data', (c: string) => (text += c));
    req.on('end', () => {
      if (url.pathname === `/api/v1/namespaces/${NS}/secrets` && req.method === 'GET') {
        if (url.searchParams.get('fieldSelector') !== `metadata.name=${NAME}`) return status(res, 403, 'Forbidden');
        if (url.searchParams.get('watch')) {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.flushHeaders();
          watchers.add(res);
          res.on('close', () => watchers.delete(res));
          return undefined;
        }
        return send(res, 200, { kind: 'SecretList', apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items: [objects['secret']] });
      }
      const key = paths[url.pathname];
      if (!key) return status(res, 404, 'NotFound');
      if (req.method === 'GET') {
        state.reads[key] = (state.reads[key] ?? 0) + 1;
        return send(res, 200, objects[key]);
      }
      if (req.method !== 'PUT') return status(res, 405, 'MethodNotAllowed');
      const body = JSON.parse(text) as Obj;
      state.writes.push(key);
      if (key === 'secret' && state.conflicts > 0) {
        // Someone else writes the Secret just before us.
        state.conflicts--;
        state.conflictsServed++;
        const current = objects['secret'] as Obj;
        store('secret', { ...current, metadata: { ...current.metadata, labels: { ...current.metadata.labels, touched: String(state.conflictsServed) } } });
      }
      if (body.metadata.resourceVersion !== objects[key]?.metadata.resourceVersion) return status(res, 409, 'Conflict');
      return send(res, 200, store(key, body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url,
    objects,
    state,
    async close() {
      for (const w of watchers) w.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function logger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

const settings = {
  secretName: NAME,
  leaseName: NAME,
  webhookConfigurationName: NAME,
  serviceName: NAME,
  extraDnsNames: [],
  ipAddresses: ['127.0.0.1'],
  caLifetimeMs: 3_600_000,
  certificateLifetimeMs: 600_000,
  renewFraction: 2 / 3,
  caOverlapMs: 60_000,
  leaseDurationSeconds: 15,
  leaseRenewMs: 5_000,
};

const b64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString();

t.test('creates the certificates through write conflicts, publishes the bundle, hands the Lease back on stop', async (t) => {
  const fake = await startFake();
  t.teardown(() => fake.close());
  fake.state.conflicts = 2;
  const { log, lines } = logger();
  const served: { cert: string; key: string }[] = [];
  const certs = createManagedCertificates({
    ...settings,
    kc: loadKubeConfig({ kubeApi: fake.url }),
    namespace: NS,
    logger: log,
    identity: 'replica-a',
    onServing: (cert, key) => served.push({ cert, key }),
  });
  certs.start();
  t.teardown(() => certs.stop());
  await waitUntil('a serving certificate', () => (served.length > 0 ? true : undefined));
  await waitUntil('the leader to wait', () => (lines.some((l) => l['msg'] === 'certificates: nothing to do until then') ? true : undefined));
  t.ok(certs.isLeader(), 'the only replica leads');
  t.equal((fake.objects['lease']?.['spec'] as { holderIdentity?: string }).holderIdentity, 'replica-a');
  t.equal(fake.state.conflictsServed, 2, 'two writes met a conflict');
  t.equal(lines.filter((l) => l['msg'] === 'certificate write conflict; retrying on fresh data').length, 2, 'each was retried on fresh data');

  const secret = fake.objects['secret'] as Obj & { data: Record<string, string> };
  t.same(secret.metadata.labels, { keep: 'me', touched: '2' }, 'what others wrote to the Secret is kept');
  const ca = new X509Certificate(b64(secret.data['ca.crt']));
  const cert = new X509Certificate(b64(secret.data['tls.crt']));
  t.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'the serving certificate is signed by the CA');
  t.equal(served.at(-1)?.cert, b64(secret.data['tls.crt']), 'the listener got the Secret\'s certificate');
  t.match(cert.subjectAltName ?? '', /DNS:pod-identity-webhook\.piw\.svc\.cluster\.local.*IP Address:127\.0\.0\.1/);
  const lifetime = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
  t.ok(lifetime >= 600_000 && lifetime <= 660_000, `the certificate lifetime is --certificate-lifetime, plus a little backdating (${lifetime} ms)`);
  for (const w of (fake.objects['mwc']?.['webhooks'] as { name: string; clientConfig: { caBundle?: string; url: string } }[])) {
    t.equal(new X509Certificate(b64(w.clientConfig.caBundle)).fingerprint256, ca.fingerprint256, `${w.name}: caBundle is the CA`);
    t.equal(w.clientConfig.url, 'https://127.0.0.1/mutate', `${w.name}: the rest of its clientConfig is kept`);
  }

  await certs.stop();
  t.notOk(certs.isLeader(), 'no longer leads');
  t.equal((fake.objects['lease']?.['spec'] as { holderIdentity?: string }).holderIdentity, undefined, 'the Lease was handed back');
  const writes = fake.state.writes.length;
  t.ok(lines.some((l) => l['msg'] === 'released the certificate Lease'));
  t.equal(fake.state.writes.length, writes, 'nothing is written after stop');
});

t.test('a second replica follows while the Lease is held, and only serves', async (t) => {
  const fake = await startFake();
  t.teardown(() => fake.close());
  const now = new Date().toISOString().replace('Z', '000Z');
  (fake.objects['lease'] as Obj)['spec'] = { holderIdentity: 'someone-else', leaseDurationSeconds: 3600, renewTime: now, acquireTime: now };
  const { log, lines } = logger();
  // Renewed often, so that several decisions are made quickly.
  const certs = createManagedCertificates({ ...settings, leaseRenewMs: 20, kc: loadKubeConfig({ kubeApi: fake.url }), namespace: NS, logger: log, identity: 'replica-b', onServing: () => undefined });
  certs.start();
  t.teardown(() => certs.stop());
  await waitUntil('the Secret to be listed', () => (lines.some((l) => l['msg'] === 'listed') ? true : undefined));
  await waitUntil('three Lease reads', () => ((fake.state.reads['lease'] ?? 0) >= 3 ? true : undefined));
  t.notOk(certs.isLeader());
  await certs.stop();
  t.same(fake.state.writes, [], 'a follower writes nothing');
  t.equal((fake.objects['lease']?.['spec'] as { holderIdentity?: string }).holderIdentity, 'someone-else');
});

t.test('a replica that stops hands the Lease to the other at once, without waiting for it to expire', async (t) => {
  const fake = await startFake();
  t.teardown(() => fake.close());
  const start = (identity: string) => {
    const { log } = logger();
    const c = createManagedCertificates({ ...settings, leaseRenewMs: 50, kc: loadKubeConfig({ kubeApi: fake.url }), namespace: NS, logger: log, identity, onServing: () => undefined });
    c.start();
    t.teardown(() => c.stop());
    return c;
  };
  const a = start('replica-a');
  await waitUntil('replica-a to lead', () => (a.isLeader() ? true : undefined));
  const b = start('replica-b');
  const reads = fake.state.reads['lease'] ?? 0;
  await waitUntil('replica-b to read the Lease twice', () => ((fake.state.reads['lease'] ?? 0) >= reads + 4 ? true : undefined));
  t.notOk(b.isLeader(), 'b follows while a holds the Lease (15s)');
  await a.stop();
  await waitUntil('replica-b to take the Lease', () => (b.isLeader() ? true : undefined));
  t.equal((fake.objects['lease']?.['spec'] as { holderIdentity?: string }).holderIdentity, 'replica-b');
});
