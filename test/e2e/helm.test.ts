// End to end: `helm install` of charts/pod-identity-webhook into a real API
// server, a pod mutated through the chart's MutatingWebhookConfiguration, and
// `helm uninstall` leaving nothing of the release behind. There is no kubelet,
// so the Deployment's pods never run: the webhook runs here as a local `serve`
// (as the chart's ServiceAccount, so its RBAC is what is tested, with the
// certificates it makes itself: the chart's default) and the chart's webhook
// points at it through mutatingWebhook.url.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { AppsV1Api } from '@kubernetes/client-node';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  type Cluster,
  CONTROLPLANE_CACHE,
  freePort,
  kubectl,
  startCluster,
  startWebhook,
  tempDir,
  tokenKubeconfig,
  until,
  WEBHOOK_HOST,
} from '../helpers/cluster.js';

const HELM = join(CONTROLPLANE_CACHE, 'bin', 'helm');
const CHART = 'charts/pod-identity-webhook';
const RELEASE = 'piw-e2e';
const NS = 'piw-helm';
const ROLE = 'arn:aws:iam::111122223333:role/e2e-helm';
const inCI = Boolean(process.env['CI'] && process.env['CI'] !== 'false');

if (!existsSync(HELM)) {
  const reason = `no helm at ${HELM} (scripts/controlplane.sh build builds it)`;
  if (inCI) throw new Error(`${reason}, and CI is set`);
  t.skip(`helm end-to-end test: ${reason}`, () => undefined);
} else {
  const started = await startCluster('e2e-helm');
  if ('skip' in started) t.skip(`helm end-to-end test: ${started.skip}`, () => undefined);
  else await t.test('helm install, mutate, uninstall', async (t) => run(t, started.cluster));
}

function helm(kubeconfig: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(HELM, ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  const { core, admission } = cluster;
  const dir = tempDir('piw-helm-');
  t.teardown(() => cluster.down());

  const port = await freePort();

  // The chart's defaults: the webhook makes and publishes its own certificates.
  const install = helm(cluster.kubeconfig, [
    'install', RELEASE, CHART, '--namespace', NS, '--create-namespace',
    '--set', `mutatingWebhook.url=https://${WEBHOOK_HOST}:${port}/mutate`,
    '--set', 'mutatingWebhook.failurePolicy=Fail',
  ]);
  t.equal(install.status, 0, `helm install: ${install.stderr}`);
  t.teardown(() => void helm(cluster.kubeconfig, ['uninstall', RELEASE, '--namespace', NS]));
  const mwcName = `${RELEASE}-pod-identity-webhook`;
  const mwc = await admission.readMutatingWebhookConfiguration({ name: mwcName });
  t.equal(mwc.webhooks?.[0]?.clientConfig.url, `https://${WEBHOOK_HOST}:${port}/mutate`, 'the chart\'s webhook points at the local serve');
  t.notOk(mwc.webhooks?.[0]?.clientConfig.caBundle, 'installed without a caBundle: the webhook writes it');

  // The webhook as the chart's ServiceAccount (so its RBAC is what is tested),
  // with the certificate flags of the chart's Deployment.
  const deployment = await cluster.kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: mwcName, namespace: NS });
  const chartArgs = deployment.spec?.template.spec?.containers[0]?.args ?? [];
  const certificateArgs = chartArgs.filter((a) => /^--(manage-certificates|tls-secret|lease-name|webhook-configuration-name|service-name|certificate-)/.test(a));
  t.ok(certificateArgs.includes('--manage-certificates'), `the chart runs the webhook with --manage-certificates (${certificateArgs.join(' ')})`);
  t.ok(certificateArgs.includes(`--certificate-ip-addresses=${WEBHOOK_HOST}`), 'and names the host of mutatingWebhook.url');
  const token = await core.createNamespacedServiceAccountToken({ name: mwcName, namespace: NS, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
  const webhookKubeconfig = tokenKubeconfig(cluster.kc, token.status!.token, dir);
  const webhook = await startWebhook(['--kubeconfig', webhookKubeconfig, ...certificateArgs, '--namespace', NS], undefined, { port });
  t.teardown(() => webhook.stop());
  const published = await until('the caBundle to be published', async () => {
    const now = await admission.readMutatingWebhookConfiguration({ name: mwcName });
    return now.webhooks?.[0]?.clientConfig.caBundle || undefined;
  });
  t.match(Buffer.from(published, 'base64').toString(), /-----BEGIN CERTIFICATE-----/, 'the webhook wrote its CA into the caBundle');

  // No controller-manager: every ServiceAccount is created here.
  const ns = `helm-${Date.now().toString(36)}`;
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'plain' } } });

  await t.test('a pod gets credentials through the chart\'s webhook', async (t) => {
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
    const pod = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'app' }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } } });
    const env = Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    t.equal(env['AWS_ROLE_ARN'], ROLE, 'AWS_ROLE_ARN stored by the API server');
    t.ok(pod.spec?.volumes?.some((v) => v.name === 'aws-iam-token'), 'the projected token volume');
  });

  await t.test('helm uninstall leaves nothing behind', async (t) => {
    const labelled = (): string => {
      const kinds = kubectl(cluster.kubeconfig, ['api-resources', '--verbs=list', '-o', 'name']);
      t.equal(kinds.status, 0, `kubectl api-resources: ${kinds.status === 0 ? 'ok' : kinds.stderr}`);
      const r = kubectl(cluster.kubeconfig, ['get', kinds.stdout.trim().split('\n').join(','), '--all-namespaces', '-l', `app.kubernetes.io/instance=${RELEASE}`, '-o', 'name']);
      t.equal(r.status, 0, `kubectl get -l app.kubernetes.io/instance=${RELEASE}: ${r.status === 0 ? 'ok' : r.stderr}`);
      return r.stdout.trim();
    };
    const before = labelled();
    for (const o of ['mutatingwebhookconfiguration', 'deployment.apps', 'clusterrole', 'clusterrolebinding', 'role', 'rolebinding', 'serviceaccount', 'service', 'secret', 'lease.coordination.k8s.io', 'networkpolicy', 'poddisruptionbudget']) {
      t.match(before, new RegExp(`^${o.replace('.', '\\.')}[^/]*/`, 'm'), `${o} installed with the release label`);
    }
    const r = helm(cluster.kubeconfig, ['uninstall', RELEASE, '--namespace', NS, '--wait']);
    t.equal(r.status, 0, r.stderr);
    t.equal(labelled(), '', 'no object with the release label is left, namespaced or cluster-wide');
    const left = await admission.listMutatingWebhookConfiguration();
    t.notOk(left.items.some((w) => w.metadata?.name === mwcName), 'the MutatingWebhookConfiguration is gone');
    const pod = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'after-uninstall' }, spec: { serviceAccountName: 'plain', containers: [{ name: 'app', image: 'busybox' }] } } });
    t.ok(pod.metadata?.uid, 'pods are created without the webhook (failurePolicy Fail would refuse them otherwise)');
  });
}
