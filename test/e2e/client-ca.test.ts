// End to end: mTLS between the API server and the webhook. The real
// kube-apiserver runs with --admission-control-config-file naming a kubeconfig
// whose user entry for the webhook's host:port carries a client certificate;
// the webhook runs with --client-ca. Pods are mutated through the API server,
// while a direct call to /mutate without that certificate gets 403.
import t, { type Test } from 'tap';
import { request } from 'node:https';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { type Cluster, freePort, startCluster, startWebhook, tempDir, until, WEBHOOK_HOST, webhookConfiguration } from '../helpers/cluster.js';
import { createTestPki } from '../helpers/tls.js';

const ROLE = 'arn:aws:iam::111122223333:role/e2e-mtls';
const LABEL = 'piw-e2e-mtls';
const CONFIG = 'a-pod-identity-webhook-mtls-e2e';

const dir = tempDir('piw-mtls-');
const pki = createTestPki();
const serving = pki.issue('webhook');
const apiserverClient = pki.issue('apiserver-client', { client: true, cn: 'kube-apiserver' });
const strangerPki = createTestPki();
const stranger = strangerPki.issue('stranger', { client: true, cn: 'someone-else' });
const port = await freePort();
t.teardown(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const d of [pki.dir, strangerPki.dir]) rmSync(d, { recursive: true, force: true });
});

// What a user puts on the control-plane node (see README: "mTLS from the API server").
const admissionKubeconfig = join(dir, 'admission-kubeconfig.yaml');
writeFileSync(admissionKubeconfig, `apiVersion: v1
kind: Config
users:
  # A Service webhook would be named <service>.<namespace>.svc; a URL webhook is named by host:port.
  - name: "${WEBHOOK_HOST}:${port}"
    user:
      client-certificate: ${apiserverClient.certFile}
      client-key: ${apiserverClient.keyFile}
`);
const admissionConfig = join(dir, 'admission-config.yaml');
writeFileSync(admissionConfig, `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: ${admissionKubeconfig}
`);

const started = process.env['E2E_KUBECONFIG']
  ? { skip: 'mTLS test skipped: it starts its own kube-apiserver with an admission configuration, not possible with E2E_KUBECONFIG' }
  : await startCluster('e2e-client-ca', { PIW_APISERVER_EXTRA_ARGS: `--admission-control-config-file=${admissionConfig}` });
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  await t.test('mTLS from the API server to the webhook', async (t) => run(t, started.cluster));
}

/** POSTs an AdmissionReview to /mutate, with or without a client certificate; resolves with the status. */
function postMutate(client?: { cert: string; key: string }): Promise<number> {
  const review = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'direct', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'default', operation: 'CREATE', object: { metadata: { name: 'p' }, spec: { serviceAccountName: 'default', containers: [{ name: 'c', image: 'busybox' }] } } },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/mutate', method: 'POST', ca: pki.caCert, agent: false, headers: { 'content-type': 'application/json' }, ...(client ?? {}) },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(review);
  });
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  t.teardown(() => cluster.down());
  const { core, admission } = cluster;
  const webhook = await startWebhook(
    ['--kubeconfig', cluster.kubeconfig, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile, '--client-ca', join(pki.dir, 'ca.crt'), '--namespace', 'pod-identity-webhook'],
    pki.caCert,
    { port },
  );
  t.teardown(() => webhook.stop());

  const ns = `mtls-${Date.now().toString(36)}`;
  await core.createNamespace({ body: { metadata: { name: ns, labels: { [LABEL]: 'true' } } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  await admission.createMutatingWebhookConfiguration({
    body: webhookConfiguration({ name: CONFIG, url: `https://${WEBHOOK_HOST}:${port}/mutate`, ca: pki.caCert, label: LABEL }),
  });
  t.teardown(() => admission.deleteMutatingWebhookConfiguration({ name: CONFIG }).catch(() => undefined));

  let n = 0;
  const pod = await until('a pod mutated through the API server', async () => {
    // failurePolicy Fail: a webhook refusing the API server's call would reject the pod instead.
    const created: V1Pod = await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: `pod-${n++}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } },
    });
    return created.spec?.containers[0]?.env?.some((e) => e.name === 'AWS_ROLE_ARN') ? created : undefined;
  }, { everyMs: 300 });
  t.equal(pod.spec?.containers[0]?.env?.find((e) => e.name === 'AWS_ROLE_ARN')?.value, ROLE, 'the API server presented its client certificate and the pod was mutated');

  t.equal(await postMutate(), 403, 'no client certificate: 403');
  t.equal(await postMutate({ cert: stranger.cert, key: stranger.key }), 403, 'a certificate from another CA: 403');
  t.equal(await postMutate({ cert: apiserverClient.cert, key: apiserverClient.key }), 200, 'the API server\'s certificate: 200');
}
