// End to end: `serve --manage-certificates` against a real API server, with
// the manifests' own Secret, Lease and RBAC (the webhook runs as their
// ServiceAccount). A fresh install (empty Secret) becomes ready and mutates
// pods the API server sends it; a forced rotation (short lifetimes) under a
// steady stream of pod creations rejects none; killing the Lease holder hands
// the work to the other replica. The webhook configuration calls the webhook
// by URL with failurePolicy Fail, so any TLS mistake is a rejected pod.
import { X509Certificate } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import t, { type Test } from 'tap';
import { CoordinationV1Api, type V1Pod } from '@kubernetes/client-node';
import { spawnTied } from '../helpers/child.js';
import { type Cluster, freePort, kubectl, startCluster, tempDir, tokenKubeconfig, until, WEBHOOK_HOST } from '../helpers/cluster.js';
import { SERVE_COMMAND } from '../helpers/serve-command.js';
import { exitedReason } from '../helpers/wait.js';

const NS = 'pod-identity-webhook';
const NAME = 'pod-identity-webhook';
const ROLE = 'arn:aws:iam::111122223333:role/e2e-managed';
const BIND_ADDRESS = WEBHOOK_HOST === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0';
// Short enough to see a CA rotation (at 2/3 of 45s) and serving renewals within a minute.
const LIFETIMES = ['--ca-lifetime=45s', '--certificate-lifetime=15s', '--ca-overlap=3s', '--lease-duration=6s'];

const started = await startCluster('e2e-managed-certs');
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  await t.test('self-managed certificates against a real API server', async (t) => run(t, started.cluster));
}

interface Replica {
  port: number;
  metricsPort: number;
  logs(): string;
  exited(): string | undefined;
  /** JSON log lines whose msg starts with this. */
  lines(msg: string): Record<string, unknown>[];
  kill(signal: NodeJS.Signals): Promise<void>;
  readyAfterMs: number;
}

function metricsGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body }));
    }).on('error', () => resolve({ status: 0, body: '' })).end();
  });
}
async function metricsStatus(port: number, path: string): Promise<number> {
  return (await metricsGet(port, path)).status;
}

/** Starts a replica and resolves once its /readyz (on the metrics port: HTTPS has no certificate at first) says ready. */
/** Every replica's output also goes to a file, named in the test's comments, to read after a failure. */
async function startReplica(args: string[], port: number, logFile: string, waitReady = true): Promise<Replica> {
  const metricsPort = await freePort();
  const [cmd, ...rest] = SERVE_COMMAND;
  const begun = performance.now();
  const child = spawnTied(cmd, [...rest, ...args, '--port', String(port), '--metrics-port', String(metricsPort), '--bind-address', BIND_ADDRESS], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const capture = (c: Buffer): void => {
    output += c.toString();
    appendFileSync(logFile, c);
  };
  child.stdout!.on('data', capture);
  child.stderr!.on('data', capture);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (waitReady) {
    await until('the replica to be ready', async () => ((await metricsStatus(metricsPort, '/readyz')) === 200 ? true : undefined), {
      giveUpIf: () => exitedReason(child, 'the webhook', () => output),
    });
  }
  const readyAfterMs = performance.now() - begun;
  const lines = (msg: string): Record<string, unknown>[] =>
    output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => typeof l['msg'] === 'string' && l['msg'].startsWith(msg));
  return {
    port,
    metricsPort,
    exited: () => exitedReason(child, 'the webhook', () => ''),
    logs: () => output,
    lines,
    readyAfterMs,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  const { core, admission } = cluster;
  const dir = tempDir('piw-managed-');
  t.teardown(() => cluster.down());

  // The manifests' objects: the empty Secret, the Lease, the RBAC, the webhook configuration.
  const apply = kubectl(cluster.kubeconfig, ['apply', '-k', 'manifests']);
  t.equal(apply.status, 0, `kubectl apply -k manifests: ${apply.stderr}`);
  const empty = await core.readNamespacedSecret({ name: NAME, namespace: NS });
  t.notOk(empty.data, 'a fresh install: the Secret has no data');

  const token = await core.createNamespacedServiceAccountToken({ name: NAME, namespace: NS, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
  const kubeconfig = tokenKubeconfig(cluster.kc, token.status!.token, dir);
  const args = [
    '--kubeconfig', kubeconfig, '--namespace', NS, '--manage-certificates', '--tls-secret', NAME, '--lease-name', NAME,
    '--webhook-configuration-name', NAME, '--service-name', NAME, '--certificate-ip-addresses', WEBHOOK_HOST,
    '--service-account-lookup-grace-period=5s', ...LIFETIMES,
  ];

  // Pods in a namespace of their own, through the webhook configuration.
  const ns = `managed-${Date.now().toString(36)}`;
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  let podCount = 0;
  const createPod = (): Promise<V1Pod> =>
    core.createNamespacedPod({ namespace: ns, body: { metadata: { name: `pod-${podCount++}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } } });
  const mutated = (pod: V1Pod): boolean => (pod.spec?.containers[0]?.env ?? []).some((e) => e.name === 'AWS_ROLE_ARN' && e.value === ROLE);

  /** Points every webhook of the configuration at `port`, failurePolicy Fail; the caBundle stays as the webhook wrote it. */
  const pointAt = async (port: number): Promise<void> => {
    const mwc = await admission.readMutatingWebhookConfiguration({ name: NAME });
    const ops = (mwc.webhooks ?? []).flatMap((w, i) => [
      { op: 'replace', path: `/webhooks/${i}/clientConfig`, value: { url: `https://${WEBHOOK_HOST}:${port}/mutate`, ...(w.clientConfig.caBundle ? { caBundle: w.clientConfig.caBundle } : {}) } },
      { op: 'replace', path: `/webhooks/${i}/failurePolicy`, value: 'Fail' },
    ]);
    const r = kubectl(cluster.kubeconfig, ['patch', 'mutatingwebhookconfiguration', NAME, '--type=json', '-p', JSON.stringify(ops)]);
    if (r.status !== 0) throw new Error(`kubectl patch: ${r.stderr}`);
  };

  /** Creates pods one after another until `done()`; every outcome is counted. */
  const podStream = (done: () => boolean): Promise<{ created: number; rejected: string[]; unmutated: number }> =>
    (async () => {
      const out = { created: 0, rejected: [] as string[], unmutated: 0 };
      while (!done()) {
        try {
          const pod = await createPod();
          out.created++;
          if (!mutated(pod)) out.unmutated++;
        } catch (err) {
          const body = (err as { body?: unknown }).body;
          out.rejected.push(typeof body === 'string' ? body.slice(0, 300) : String(err));
        }
      }
      return out;
    })();

  const replicas: Replica[] = [];
  t.teardown(async () => {
    await Promise.all(replicas.map((r) => r.kill('SIGTERM')));
  });

  await t.test('without its RBAC: a clear error naming the object, and not ready', async (t) => {
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'no-rbac' } } });
    const bare = await core.createNamespacedServiceAccountToken({ name: 'no-rbac', namespace: NS, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
    const bareDir = tempDir('piw-managed-bare-');
    const bareArgs = args.map((a) => (a === kubeconfig ? tokenKubeconfig(cluster.kc, bare.status!.token, bareDir) : a));
    const r = await startReplica(bareArgs, await freePort(), join(dir, 'replica-no-rbac.log'), false);
    replicas.push(r);
    const line = await until('the error about the Lease', () => r.lines(`forbidden to use Lease ${NS}/${NAME}`)[0]);
    t.equal(line['level'], 'error');
    t.match(String(line['msg']), /needs get, update and patch on leases, resourceNames \[pod-identity-webhook\]/, 'it names the missing permission');
    const ready = await until('/readyz to name the problem', async () => {
      const res = await metricsGet(r.metricsPort, '/readyz');
      return res.body.includes('forbidden to use Lease') ? res : undefined;
    });
    t.equal(ready.status, 503, 'not ready');
    t.match(ready.body, /no serving certificate loaded/);
    t.equal((await metricsGet(r.metricsPort, '/healthz')).status, 200, 'alive (liveness on the metrics port)');
    await r.kill('SIGTERM');
    const secret = await core.readNamespacedSecret({ name: NAME, namespace: NS });
    t.notOk(secret.data, 'it wrote nothing');
  });
  const ports = [await freePort()];
  // The configuration names the first replica's port before it starts: the API server calls it as soon as it is trusted.
  await pointAt(ports[0] as number);

  let leader!: Replica;
  await t.test('fresh install: the webhook creates its certificates, becomes ready and mutates pods', async (t) => {
    leader = await startReplica(args, ports[0] as number, join(dir, 'replica-1.log'));
    replicas.push(leader);
    t.comment(`ready ${Math.round(leader.readyAfterMs)} ms after start, with no certificate in the Secret; logs in ${dir}`);
    // Log lines are written in batches (at least every second): wait for them.
    await until('the Lease to be taken', () => (leader.lines('acquired the certificate Lease').length > 0 ? true : undefined));
    t.equal(leader.lines('acquired the certificate Lease').length, 1, 'the only replica holds the Lease');
    const secret = await core.readNamespacedSecret({ name: NAME, namespace: NS });
    for (const key of ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']) t.ok(secret.data?.[key], `the Secret holds ${key}`);
    const ca = new X509Certificate(Buffer.from(secret.data!['ca.crt']!, 'base64'));
    const cert = new X509Certificate(Buffer.from(secret.data!['tls.crt']!, 'base64'));
    t.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'the serving certificate is signed by the CA');
    t.match(cert.subjectAltName ?? '', `DNS:${NAME}.${NS}.svc`, 'for the Service');
    t.match(cert.subjectAltName ?? '', `IP Address:${WEBHOOK_HOST}`, 'and for the URL the configuration calls');
    const mwc = await admission.readMutatingWebhookConfiguration({ name: NAME });
    for (const w of mwc.webhooks ?? []) {
      t.equal(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString(), ca.toString(), `${w.name}: caBundle is the CA`);
    }
    const lease = await cluster.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: NAME, namespace: NS });
    t.match(lease.spec?.holderIdentity ?? '', /_[0-9a-f]{8}$/, 'the Lease names its holder');
    // The API server may still be picking up the new bundle: the first pod is retried until accepted, the rest must not fail.
    let refused = 0;
    const first = await until('the API server to call the webhook', async () => {
      try {
        return await createPod();
      } catch {
        refused++;
        return undefined;
      }
    });
    t.ok(mutated(first), 'a pod created through the API server got AWS_ROLE_ARN');
    await until('the certificate\'s log line', () => (leader.lines('serving certificate loaded').length > 0 ? true : undefined));
    const at = (msg: string): number => Date.parse(String(leader.lines(msg)[0]?.['time']));
    t.comment(`first certificate loaded ${at('serving certificate loaded') - at('webhook listening')} ms after listening; pods refused before the API server trusted the new CA: ${refused}`);
  });

  await t.test('rotation under a steady stream of pods rejects none', async (t) => {
    const steps = (step: string): number => leader.lines('certificate step done').filter((l) => l['step'] === step).length;
    const before = { ca: steps('rotate-ca'), serving: steps('issue-serving'), dropped: steps('drop-previous-ca') };
    let finished = false;
    const stream = podStream(() => finished);
    try {
      await until('a CA rotation to complete (rotate-ca, issue-serving, drop-previous-ca)', () => (steps('drop-previous-ca') > before.dropped ? true : undefined));
      await until('one more serving renewal under the new CA', () => (steps('issue-serving') >= before.serving + 2 ? true : undefined));
    } finally {
      finished = true;
    }
    const result = await stream;
    t.comment(`rotations: CA ${steps('rotate-ca') - before.ca}, serving ${steps('issue-serving') - before.serving}; pods created ${result.created}, rejected ${result.rejected.length}`);
    t.ok(steps('rotate-ca') > before.ca, 'the CA was rotated');
    t.ok(result.created > 0, 'pods were created during the rotation');
    t.same(result.rejected, [], 'no pod was rejected');
    t.equal(result.unmutated, 0, 'every pod was mutated');
    const mwc = await admission.readMutatingWebhookConfiguration({ name: NAME });
    const secret = await core.readNamespacedSecret({ name: NAME, namespace: NS });
    t.notOk(secret.data?.['ca-previous.crt'], 'the previous CA is gone from the Secret');
    const metrics = (await metricsGet(leader.metricsPort, '/metrics')).body;
    t.match(metrics, /^pod_identity_webhook_certificate_leader 1$/m, 'metrics: this replica leads');
    t.match(metrics, /^pod_identity_webhook_certificate_steps_total\{step="drop-previous-ca"\} [1-9]/m, 'metrics: the steps are counted');
    const bundle = Buffer.from(mwc.webhooks?.[0]?.clientConfig.caBundle ?? '', 'base64').toString();
    const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    t.equal(blocks.length, 1, 'the bundle holds one CA');
    t.equal(new X509Certificate(blocks[0] ?? '').fingerprint256, new X509Certificate(Buffer.from(secret.data!['ca.crt']!, 'base64')).fingerprint256, 'the bundle is the new CA alone');
  });

  await t.test('killing the Lease holder hands the certificates to the other replica', async (t) => {
    const port = await freePort();
    const follower = await startReplica(args, port, join(dir, 'replica-2.log'));
    replicas.push(follower);
    await until('the second replica to log its certificate', () => (follower.lines('serving certificate loaded').length > 0 ? true : undefined));
    t.equal(follower.lines('acquired the certificate Lease').length, 0, 'the second replica follows');
    t.match((await metricsGet(follower.metricsPort, '/metrics')).body, /^pod_identity_webhook_certificate_leader 0$/m, 'metrics: it does not lead');
    await pointAt(port);
    let finished = false;
    const stream = podStream(() => finished);
    try {
      await leader.kill('SIGKILL');
      const giveUpIf = (): string | undefined => follower.exited();
      await until('the other replica to take the Lease', () => (follower.lines('acquired the certificate Lease').length > 0 ? true : undefined), { giveUpIf });
      await until('the new holder to renew a certificate', () => (follower.lines('certificate step done').length > 0 ? true : undefined), { giveUpIf });
    } finally {
      finished = true;
    }
    const result = await stream;
    t.comment(`after the handover: steps ${follower.lines('certificate step done').map((l) => l['step']).join(', ')}; pods created ${result.created}, rejected ${result.rejected.length}`);
    t.same(result.rejected, [], 'no pod was rejected');
    t.equal(result.unmutated, 0, 'every pod was mutated');
    const lease = await cluster.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: NAME, namespace: NS });
    t.ok(lease.spec?.leaseTransitions && lease.spec.leaseTransitions >= 1, 'the Lease records the transition');
    t.ok(follower.lines('acquired the certificate Lease')[0]?.['previousHolder'], 'taken over from the killed holder');
    t.match((await metricsGet(follower.metricsPort, '/metrics')).body, /^pod_identity_webhook_certificate_leader 1$/m, 'metrics: now it leads');

    // An upgrade or a hand edit that drops the caBundle: the holder writes it again.
    const r = kubectl(cluster.kubeconfig, ['patch', 'mutatingwebhookconfiguration', NAME, '--type=json', '-p', JSON.stringify([{ op: 'remove', path: '/webhooks/0/clientConfig/caBundle' }])]);
    t.equal(r.status, 0, `caBundle removed: ${r.stderr}`);
    const restored = await until('the caBundle to be written again', async () => (await admission.readMutatingWebhookConfiguration({ name: NAME })).webhooks?.[0]?.clientConfig.caBundle);
    const secret = await core.readNamespacedSecret({ name: NAME, namespace: NS });
    t.equal(new X509Certificate(Buffer.from(restored, 'base64')).fingerprint256, new X509Certificate(Buffer.from(secret.data!['ca.crt']!, 'base64')).fingerprint256, 'the CA is back in the caBundle');
  });
}
