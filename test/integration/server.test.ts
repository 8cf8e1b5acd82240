import t from 'tap';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import pino from 'pino';
import { DEFAULT_MUTATION_OPTIONS } from '../../src/config.js';
import { startWebhookServer, type WebhookServer } from '../../src/server/serve.js';
import { staticIdentities, type StaticIdentities } from '../helpers/identities.js';
import { until } from '../helpers/fake-apiserver.js';
import { agent, review, send } from '../helpers/https.js';
import { ROLE, pod } from '../helpers/pods.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';

const logger = pino({ level: 'silent' });

async function start(pki: TestPki, ids: StaticIdentities, over: Partial<Parameters<typeof startWebhookServer>[0]> = {}): Promise<WebhookServer> {
  const serving = pki.issue(`serving-${Math.random().toString(36).slice(2)}`);
  return startWebhookServer({
    port: 0,
    metricsPort: 0,
    host: '127.0.0.1',
    tls: { certFile: serving.certFile, keyFile: serving.keyFile },
    mutation: { ...DEFAULT_MUTATION_OPTIONS },
    namespace: 'default',
    watchConfigMap: false,
    lookupGracePeriodMs: 2000,
    debuggingHandlers: false,
    bodyLimit: 64 * 1024,
    shutdownTimeoutMs: 5000,
    shutdownDelayMs: 0,
    logger,
    identityRuntime: ids,
    filePollMs: 200,
    ...over,
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject); // e.g. ECONNRESET mid-body: a failure, never an unhandled 'error'
    }).on('error', reject).end();
  });
}

const pki = createTestPki();

t.test('/mutate answers v1 and v1beta1 reviews with a patch, uid and warnings', async (t) => {
  const ids = staticIdentities();
  ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/token-expiration': '5' });
  const server = await start(pki, ids);
  t.teardown(() => server.shutdown());
  const a = agent(pki.caCert);
  t.teardown(() => a.destroy());

  for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']) {
    const r = await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }]), {}, apiVersion) });
    t.equal(r.status, 200);
    const body = JSON.parse(r.body);
    t.equal(body.apiVersion, apiVersion);
    t.equal(body.kind, 'AdmissionReview');
    t.equal(body.response.uid, 'uid-1');
    t.equal(body.response.allowed, true);
    t.equal(body.response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(body.response.patch, 'base64').toString());
    t.ok(patch.some((op: { value?: unknown }) => JSON.stringify(op.value).includes(ROLE)));
    t.match(body.response.warnings, [/pod-identity-webhook: .*below the minimum/]);
  }

  const none = await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }], { spec: { serviceAccountName: 'plain' } })) });
  t.same(JSON.parse(none.body).response, { uid: 'uid-1', allowed: true });

  for (const over of [{ operation: 'UPDATE' }, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { resource: 'deployments' } }, { subResource: 'status' }]) {
    const r = await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }]), over) });
    t.same(JSON.parse(r.body).response, { uid: 'uid-1', allowed: true }, JSON.stringify(over));
  }
  // dryRun requests are handled like any other: there are no side effects.
  const dry = await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }]), { dryRun: true }) });
  t.equal(JSON.parse(dry.body).response.patchType, 'JSONPatch');
});

t.test('bad input gets the right status and a one-line reason', async (t) => {
  const ids = staticIdentities();
  const server = await start(pki, ids, { bodyLimit: 4096 });
  t.teardown(() => server.shutdown());
  const a = agent(pki.caCert);
  t.teardown(() => a.destroy());
  const cases: Array<{ name: string; body?: string; contentType?: string | null; status: number; reason: RegExp }> = [
    { name: 'text/plain', body: '{}', contentType: 'text/plain', status: 415, reason: /Content-Type text\/plain is not supported/ },
    { name: 'yaml', body: 'a: 1', contentType: 'application/yaml', status: 415, reason: /not supported/ },
    { name: 'empty', body: '', status: 400, reason: /empty/ },
    { name: 'malformed', body: '{"apiVersion":', status: 400, reason: /not valid JSON/ },
    { name: 'array', body: '[]', status: 400, reason: /not a JSON object/ },
    { name: 'no request', body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), status: 400, reason: /has no request/ },
    { name: 'wrong kind', body: JSON.stringify({ apiVersion: 'v1', kind: 'Pod' }), status: 400, reason: /expected "AdmissionReview"/ },
    { name: 'no uid', body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), status: 400, reason: /uid/ },
    { name: 'pod without spec', body: review({ kind: 'Pod' }), status: 400, reason: /not a Pod with a spec/ },
    { name: 'too large', body: review(pod([{ name: 'c', image: 'x'.repeat(8000) }])), status: 413, reason: /larger than 4096 bytes/ },
  ];
  for (const c of cases) {
    const r = await send(server.port, 'POST', '/mutate', { agent: a, body: c.body, contentType: c.contentType });
    t.equal(r.status, c.status, c.name);
    t.match(r.body, c.reason, c.name);
    t.equal(r.body.trim().split('\n').length, 1, `${c.name}: one line`);
  }
  // The server is still healthy afterwards.
  t.equal((await send(server.port, 'GET', '/healthz', { agent: a })).status, 200);
  const metrics = await httpGet(server.metricsPort, '/metrics');
  t.match(metrics.body, /pod_identity_webhook_admission_requests_total\{outcome="bad_request"\} 10/);
});

t.test('a large review (decoded in the worker thread) gets the same answer as a small one', async (t) => {
  const ids = staticIdentities();
  ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE });
  const server = await start(pki, ids, { bodyLimit: 4 * 1024 * 1024 });
  t.teardown(() => server.shutdown());
  const a = agent(pki.caCert);
  t.teardown(() => a.destroy());
  // A pod annotation of ours (token-expiration) among megabytes of others.
  const annotations: Record<string, string> = { 'eks.amazonaws.com/token-expiration': '7200' };
  for (let i = 0; i < 24; i++) annotations[`example.com/a${i}`] = 'x'.repeat(128 * 1024);
  const large = review(pod([{ name: 'c' }], { metadata: { name: 'p', namespace: 'default', annotations } }));
  const small = review(pod([{ name: 'c' }], { metadata: { name: 'p', namespace: 'default', annotations: { 'eks.amazonaws.com/token-expiration': '7200' } } }));
  t.ok(large.length > 3 * 1024 * 1024, 'the review is over 3 MiB');
  const answers = await Promise.all([large, small, large].map((body) => send(server.port, 'POST', '/mutate', { agent: a, body })));
  for (const r of answers) t.equal(r.status, 200);
  t.equal(answers[0]!.body, answers[1]!.body, 'the large review gets exactly the small one\'s answer');
  t.equal(answers[2]!.body, answers[1]!.body);
  const patch = JSON.parse(Buffer.from(JSON.parse(answers[0]!.body).response.patch, 'base64').toString()) as Array<{ value?: unknown }>;
  t.ok(patch.some((op) => JSON.stringify(op.value).includes('"expirationSeconds":7200')), 'the pod\'s own annotation was read');

  const padded = (body: string): string => body.padEnd(200 * 1024, ' ');
  const cases: Array<{ name: string; body: string; status: number; reason: RegExp }> = [
    { name: 'malformed', body: padded('{"apiVersion":'), status: 400, reason: /not valid JSON/ },
    { name: 'array', body: padded('[]'), status: 400, reason: /not a JSON object/ },
    { name: 'pod without spec', body: padded(review({ kind: 'Pod' })), status: 400, reason: /not a Pod with a spec/ },
    { name: 'unreadable pod', body: padded(review(pod([{ name: 'c' }], { metadata: { name: 'p', annotations: { a: 1 as unknown as string } } }))), status: 200, reason: /could not be read/ },
  ];
  for (const c of cases) {
    const r = await send(server.port, 'POST', '/mutate', { agent: a, body: c.body });
    t.equal(r.status, c.status, c.name);
    t.match(r.body, c.reason, c.name);
  }
});

t.test('a body that does not fit the decoder\'s heap gets 413; the next large body is decoded again', async (t) => {
  const ids = staticIdentities();
  ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE });
  const server = await start(pki, ids, { bodyLimit: 8 * 1024 * 1024 });
  t.teardown(() => server.shutdown());
  const a = agent(pki.caCert);
  t.teardown(() => a.destroy());
  // Two million empty objects: 6 MiB of JSON, far more than that once parsed.
  const bomb = `[${Array.from({ length: 2_000_000 }, () => '{}').join(',')}]`;
  const r = await send(server.port, 'POST', '/mutate', { agent: a, body: bomb });
  t.equal(r.status, 413);
  t.match(r.body, /could not be decoded within the webhook's memory bound/);
  const after = await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }])).padEnd(100 * 1024, ' ') });
  t.equal(after.status, 200);
  t.match(JSON.parse(after.body).response, { allowed: true, patchType: 'JSONPatch' });
});

t.test('readiness, metrics port and debug handlers', async (t) => {
  const ids = staticIdentities();
  ids.ready = false;
  const server = await start(pki, ids, { debuggingHandlers: true });
  t.teardown(() => server.shutdown());
  const a = agent(pki.caCert);
  t.teardown(() => a.destroy());
  const notReady = await send(server.port, 'GET', '/readyz', { agent: a });
  t.equal(notReady.status, 503);
  t.match(notReady.body, /ServiceAccount cache not synced/);
  t.equal((await send(server.port, 'GET', '/healthz', { agent: a })).status, 200);
  ids.ready = true;
  t.equal((await send(server.port, 'GET', '/readyz', { agent: a })).status, 200);

  ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE });
  await send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }])) });
  const metrics = await httpGet(server.metricsPort, '/metrics');
  t.equal(metrics.status, 200);
  for (const name of [
    'pod_identity_webhook_admission_requests_total{outcome="mutated"} 1',
    'pod_identity_webhook_admission_duration_seconds_bucket',
    'pod_identity_webhook_pods_mutated_total{mode="web-identity"} 1',
    'pod_identity_webhook_service_account_cache_size 1',
    'pod_identity_webhook_serving_certificate_expiry_timestamp_seconds',
    'process_cpu_seconds_total',
  ]) t.ok(metrics.body.includes(name), name);
  const debug = await httpGet(server.metricsPort, '/debug/alpha/cache');
  t.match(JSON.parse(debug.body), { 'default/app': { roleArn: ROLE } });
  t.equal((await httpGet(server.metricsPort, '/mutate')).status, 404, 'metrics port serves no admission');
});

t.test('debug handlers are off by default', async (t) => {
  const server = await start(pki, staticIdentities());
  t.teardown(() => server.shutdown());
  t.equal((await httpGet(server.metricsPort, '/debug/alpha/cache')).status, 404);
});

t.test('certificate reload under load: no failed request, new handshakes see the new certificate', async (t) => {
  const ids = staticIdentities();
  ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE });
  const first = pki.issue('reload');
  const server = await start(pki, ids, { tls: { certFile: first.certFile, keyFile: first.keyFile } });
  t.teardown(() => server.shutdown());
  const keepAlive = agent(pki.caCert);
  const fresh = agent(pki.caCert, { keepAlive: false });
  t.teardown(() => { keepAlive.destroy(); fresh.destroy(); });
  const before = await send(server.port, 'GET', '/healthz', { agent: fresh });

  const failures: string[] = [];
  let done = 0;
  let reloaded = false;
  let doneAfterReload = 0;
  let newSerialSeen = false;
  let stop = false;
  const body = review(pod([{ name: 'c' }]));
  const worker = async (a: typeof keepAlive): Promise<void> => {
    while (!stop) {
      const afterReload = reloaded;
      try {
        const r = await send(server.port, 'POST', '/mutate', { agent: a, body });
        if (r.status !== 200) failures.push(`status ${r.status}`);
        if (afterReload && a === fresh && r.peerSerial !== before.peerSerial) newSerialSeen = true;
      } catch (err) {
        failures.push((err as NodeJS.ErrnoException).code ?? (err as Error).message);
      }
      done++;
      if (afterReload) doneAfterReload++;
    }
  };
  const workers = [worker(keepAlive), worker(keepAlive), worker(fresh), worker(fresh)];
  // Traffic on every worker before the rotation, and until new handshakes carry the new certificate after it.
  await until(() => done >= 8, 'requests before the reload');
  const doneBeforeReload = done;
  // Rotate the way a Secret volume does: new files, renamed into place.
  const next = pki.issue('reload-next');
  writeFileSync(join(pki.dir, 'tmp.crt'), next.cert);
  writeFileSync(join(pki.dir, 'tmp.key'), next.key);
  renameSync(join(pki.dir, 'tmp.key'), first.keyFile);
  renameSync(join(pki.dir, 'tmp.crt'), first.certFile);
  server.reloadCertificate();
  reloaded = true;
  await until(() => newSerialSeen && doneAfterReload >= 8, 'requests on new handshakes after the reload');
  stop = true;
  await Promise.all(workers);
  t.same(failures, [], `no failures in ${done} requests (${doneBeforeReload} before the reload, ${doneAfterReload} started after it)`);
  const after = await send(server.port, 'GET', '/healthz', { agent: fresh });
  t.not(after.peerSerial, before.peerSerial, 'a new handshake gets the new certificate');
  const metrics = await httpGet(server.metricsPort, '/metrics');
  t.match(metrics.body, /config_reloads_total\{source="certificate",result="success"\} 2/);
});

t.test('a key that does not match the certificate is refused and the old pair kept', async (t) => {
  const first = pki.issue('mismatch');
  const server = await start(pki, staticIdentities(), { tls: { certFile: first.certFile, keyFile: first.keyFile } });
  t.teardown(() => server.shutdown());
  const other = pki.issue('mismatch-other');
  writeFileSync(first.keyFile, other.key);
  server.reloadCertificate();
  const fresh = agent(pki.caCert, { keepAlive: false });
  t.teardown(() => fresh.destroy());
  const r = await send(server.port, 'GET', '/healthz', { agent: fresh });
  t.equal(r.status, 200);
  const metrics = await httpGet(server.metricsPort, '/metrics');
  t.match(metrics.body, /config_reloads_total\{source="certificate",result="error"\} 1/);
});

t.test('--client-ca: only clients with a certificate from that CA may call /mutate', async (t) => {
  const serving = pki.issue('mtls-serving');
  const client = pki.issue('apiserver-client', { client: true });
  const server = await start(pki, staticIdentities(), {
    tls: { certFile: serving.certFile, keyFile: serving.keyFile, clientCaFile: join(pki.dir, 'ca.crt') },
  });
  t.teardown(() => server.shutdown());
  const anonymous = agent(pki.caCert, { keepAlive: false });
  const withCert = agent(pki.caCert, { keepAlive: false, cert: client.cert, key: client.key });
  t.teardown(() => { anonymous.destroy(); withCert.destroy(); });
  // Probes (the kubelet has no client certificate) still work; admissions do not.
  t.equal((await send(server.port, 'GET', '/healthz', { agent: anonymous })).status, 200);
  const refused = await send(server.port, 'POST', '/mutate', { agent: anonymous, body: review(pod([{ name: 'c' }])) });
  t.equal(refused.status, 403);
  t.match(refused.body, /client certificate signed by --client-ca is required/);
  const stranger = createTestPki().issue('stranger', { client: true });
  const wrongCa = agent(pki.caCert, { keepAlive: false, cert: stranger.cert, key: stranger.key });
  t.teardown(() => wrongCa.destroy());
  // The /healthz connection's TLS session is resumed by the next request: still refused.
  t.equal((await send(server.port, 'GET', '/healthz', { agent: wrongCa })).status, 200);
  t.equal((await send(server.port, 'POST', '/mutate', { agent: wrongCa, body: review(pod([{ name: 'c' }])) })).status, 403, 'a certificate from another CA is refused');
  t.equal((await send(server.port, 'POST', '/mutate', { agent: withCert, body: review(pod([{ name: 'c' }])) })).status, 200);
  const metrics = (await httpGet(server.metricsPort, '/metrics')).body;
  t.match(metrics, /pod_identity_webhook_admission_requests_total\{outcome="forbidden"\} 2\n/, 'refusals are counted as forbidden');
  t.notMatch(metrics, /outcome="bad_request"/, 'not as bad requests');
});

t.test('shutdown: readiness goes false and in-flight requests finish', async (t) => {
  const ids = staticIdentities();
  ids.missDelayMs = 0;
  let release = (): void => undefined;
  ids.missGate = new Promise((resolve) => (release = resolve));
  const server = await start(pki, ids, { shutdownDelayMs: 200 });
  const a = agent(pki.caCert);
  t.teardown(() => a.destroy());
  t.teardown(() => release());
  const inflight = Array.from({ length: 8 }, () => send(server.port, 'POST', '/mutate', { agent: a, body: review(pod([{ name: 'c' }])) }));
  // All 8 are being handled (each waits on its ServiceAccount lookup) before the shutdown starts.
  await until(() => ids.missesStarted === 8, 'the 8 requests to be in flight');
  const closing = server.shutdown();
  const ready = await send(server.port, 'GET', '/readyz', { agent: a });
  t.equal(ready.status, 503, 'unready during the shutdown delay');
  release();
  const results = await Promise.all(inflight);
  t.same(results.map((r) => r.status), Array(8).fill(200));
  t.ok(results.every((r) => /could not be read in time/.test(r.body)));
  await closing;
  await t.rejects(send(server.port, 'GET', '/healthz', { agent: agent(pki.caCert, { keepAlive: false }) }));
});
