// End to end: a real kube-apiserver (and etcd) calls the webhook through a
// MutatingWebhookConfiguration, applies its JSON patch, validates the result
// and stores it. Every assertion reads what the API server stored or returned.
import t, { type Test } from 'tap';

type Tap = Test;
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import type { V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import {
  type Cluster,
  jwtClaims,
  kubectl,
  startCluster,
  startWebhook,
  tempDir,
  tokenKubeconfig,
  until,
  WEBHOOK_HOST,
  webhookCertificates,
  webhookConfiguration,
  type WebhookProcess,
} from '../helpers/cluster.js';
import { cli } from '../helpers/serve-command.js';

const ROLE = 'arn:aws:iam::111122223333:role/e2e-reader';
const NEW_ROLE = 'arn:aws:iam::111122223333:role/e2e-writer';
const CM_ROLE = 'arn:aws:iam::111122223333:role/e2e-config-map';
const WEBHOOK_NS = 'pod-identity-webhook';
const CONFIG = 'a-pod-identity-webhook-e2e';
const TEST_LABEL = 'piw-e2e';

const started = await startCluster('e2e-webhook');
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  // One parent test holds the whole flow, so teardown waits for all of it.
  await t.test('webhook against a real API server', async (t) => run(t, started.cluster));
}


async function run(t: Tap, cluster: Cluster): Promise<void> {
  const { core, admission } = cluster;
  const dir = tempDir('piw-e2e-');
  t.teardown(() => cluster.down());

  let namespaceCount = 0;
  const namespace = async (extraLabels: Record<string, string> = {}): Promise<string> => {
    // Namespaces never finish terminating without a controller-manager: a fresh one per scenario.
    const name = `e2e-${Date.now().toString(36)}-${namespaceCount++}`;
    await core.createNamespace({ body: { metadata: { name, labels: { [TEST_LABEL]: 'true', ...extraLabels } } } });
    return name;
  };
  const serviceAccount = (ns: string, name: string, annotations: Record<string, string> = {}) =>
    core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name, annotations } } });
  let podCount = 0;
  const createPod = (ns: string, sa: string, extra: Partial<V1Pod['spec']> = {}): Promise<V1Pod> =>
    core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: `pod-${podCount++}` }, spec: { serviceAccountName: sa, containers: [{ name: 'app', image: 'busybox' }], ...extra } },
    });
  const envOf = (pod: V1Pod, container = 0, init = false): Record<string, string | undefined> =>
    Object.fromEntries(((init ? pod.spec?.initContainers : pod.spec?.containers)?.[container]?.env ?? []).map((e) => [e.name, e.value]));

  // --- manifests/ on a real API server --------------------------------------
  await t.test('manifests/ are accepted by the API server', async (t) => {
    const real = kubectl(cluster.kubeconfig, ['apply', '-k', 'manifests']);
    t.equal(real.status, 0, real.stderr);
    t.match(real.stdout, /mutatingwebhookconfiguration.admissionregistration.k8s.io\/pod-identity-webhook (created|configured|unchanged)/);
    t.match(real.stdout, /deployment.apps\/pod-identity-webhook (created|configured|unchanged)/);
    t.match(real.stdout, /networkpolicy.networking.k8s.io\/pod-identity-webhook (created|configured|unchanged)/);
    t.match(real.stdout, /service\/pod-identity-webhook-metrics (created|configured|unchanged)/);
    // Config-map mode for real: its Role is what the webhook below runs with.
    const component = kubectl(cluster.kubeconfig, ['apply', '-k', 'manifests/overlays/config-map-mode']);
    t.equal(component.status, 0, component.stderr);
    t.match(component.stdout, /role.rbac.authorization.k8s.io\/pod-identity-webhook (created|configured|unchanged)/);
    const mtls = kubectl(cluster.kubeconfig, ['apply', '-k', 'manifests/overlays/client-ca', '--dry-run=server']);
    t.equal(mtls.status, 0, mtls.stderr);
    t.match(mtls.stdout, /deployment.apps\/pod-identity-webhook (created|configured|unchanged) \(server dry run\)/);
    // The manifests' own webhook points at an in-cluster Service nothing serves here.
    await admission.deleteMutatingWebhookConfiguration({ name: 'pod-identity-webhook' });
  });

  // --- the webhook, as its own ServiceAccount --------------------------------
  const token = await core.createNamespacedServiceAccountToken({
    name: 'pod-identity-webhook',
    namespace: WEBHOOK_NS,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const webhookKubeconfig = tokenKubeconfig(cluster.kc, token.status!.token, dir);

  await t.test('the manifests\' RBAC is enough, and least privilege', async (t) => {
    const list = kubectl(webhookKubeconfig, ['get', 'serviceaccounts', '--all-namespaces', '-o', 'name']);
    t.equal(list.status, 0, list.stderr);
    t.match(list.stdout, /serviceaccount\/pod-identity-webhook/);
    const watch = kubectl(webhookKubeconfig, ['auth', 'can-i', 'watch', 'serviceaccounts', '--all-namespaces']);
    t.equal(watch.stdout.trim(), 'yes');
    // Config-map mode's Role names one ConfigMap: other ConfigMaps, and lists without the name selector, are refused.
    const other = kubectl(cluster.kubeconfig, ['-n', WEBHOOK_NS, 'create', 'configmap', 'not-for-the-webhook', '--from-literal=secret=value']);
    t.equal(other.status, 0, other.stderr);
    for (const forbidden of [
      ['get', 'secrets', '-n', 'kube-system'],
      ['get', 'secrets', '-n', WEBHOOK_NS],
      ['get', 'configmaps', '-n', WEBHOOK_NS],
      ['get', 'configmap', 'not-for-the-webhook', '-n', WEBHOOK_NS],
      ['get', 'configmaps', '-n', WEBHOOK_NS, '--field-selector', 'metadata.name=not-for-the-webhook'],
      ['get', 'configmaps', '-n', 'default', '--field-selector', `metadata.name=${WEBHOOK_NS}`],
      ['get', 'pods', '-A'],
    ]) {
      const r = kubectl(webhookKubeconfig, forbidden);
      t.not(r.status, 0, `forbidden: ${forbidden.join(' ')}`);
      t.match(r.stderr, /Forbidden/, forbidden.join(' '));
    }
    // What the webhook's ConfigMap reflector does: list and watch with the name as field selector.
    const named = kubectl(webhookKubeconfig, ['get', 'configmaps', '-n', WEBHOOK_NS, '--field-selector', 'metadata.name=pod-identity-webhook', '-o', 'name']);
    t.equal(named.status, 0, `list by name is allowed: ${named.stderr}`);
    const canWatch = kubectl(webhookKubeconfig, ['auth', 'can-i', 'watch', 'configmaps/pod-identity-webhook', '-n', WEBHOOK_NS]);
    t.equal(canWatch.stdout.trim(), 'yes', 'watch on the named ConfigMap');
  });

  // Certificates from our own `certs`, with an IP SAN: the API server calls 127.0.0.1.
  const { ca, certDir, tlsArgs } = webhookCertificates(dir, ['--namespace', WEBHOOK_NS]);

  const identitiesFile = join(dir, 'identities.json');
  const ccNamespace = await namespace();
  writeFileSync(identitiesFile, JSON.stringify({ identities: [{ namespace: ccNamespace, serviceAccount: 'pod-identity' }] }));

  // ConfigMap mode, through the Role limited to this one ConfigMap (the webhook is not ready until it has listed it).
  const cmNamespace = await namespace();
  await core.createNamespacedConfigMap({
    namespace: WEBHOOK_NS,
    body: { metadata: { name: 'pod-identity-webhook' }, data: { config: JSON.stringify({ [`${cmNamespace}/mapped`]: { RoleARN: CM_ROLE } }) } },
  });
  t.teardown(() => core.deleteNamespacedConfigMap({ name: 'pod-identity-webhook', namespace: WEBHOOK_NS }).catch(() => undefined));

  const serveArgs = [
    '--watch-config-map',
    '--kubeconfig', webhookKubeconfig,
    ...tlsArgs,
    '--namespace', WEBHOOK_NS,
    '--watch-container-credentials-config', identitiesFile,
    '--aws-default-region', 'eu-west-1',
  ];
  let webhook: WebhookProcess = await startWebhook(serveArgs, ca);
  t.teardown(() => webhook.stop());

  const webhookConfig = (port: number, failurePolicy: 'Ignore' | 'Fail'): V1MutatingWebhookConfiguration => webhookConfiguration({
    name: CONFIG, url: `https://${WEBHOOK_HOST}:${port}/mutate`, label: TEST_LABEL, failurePolicy, reinvoke: true,
    admissionReviewVersions: ['v1', 'v1beta1'],
    objectSelector: { matchExpressions: [{ key: 'eks.amazonaws.com/skip-pod-identity-webhook', operator: 'DoesNotExist' }] },
  });
  await admission.createMutatingWebhookConfiguration({ body: webhookConfig(webhook.port, 'Fail') });

  await t.test('`certs --patch-webhook` writes the CA into the caBundle', async (t) => {
    const r = cli(['certs', '--out-dir', certDir, '--ip', WEBHOOK_HOST, '--namespace', WEBHOOK_NS, '--patch-webhook', CONFIG, '--kubeconfig', cluster.kubeconfig]);
    t.equal(r.status, 0, r.stderr);
    const stored = await admission.readMutatingWebhookConfiguration({ name: CONFIG });
    t.equal(Buffer.from(stored.webhooks![0]!.clientConfig.caBundle!, 'base64').toString('utf8'), ca);
  });

  // A new configuration takes effect within a moment: wait for the first mutated pod.
  const warmNs = await namespace();
  await serviceAccount(warmNs, 'warm', { 'eks.amazonaws.com/role-arn': ROLE });
  await until('the webhook configuration to take effect', async () => {
    const pod = await createPod(warmNs, 'warm');
    return envOf(pod)['AWS_ROLE_ARN'] === ROLE ? pod : undefined;
  }, { everyMs: 300 });

  await t.test('a ServiceAccount with a role ARN: the stored pod has env, volume and mount', async (t) => {
    const ns = await namespace();
    await serviceAccount(ns, 'reader', { 'eks.amazonaws.com/role-arn': ROLE });
    const created = await createPod(ns, 'reader', { initContainers: [{ name: 'init', image: 'busybox' }] });
    const pod = await core.readNamespacedPod({ name: created.metadata!.name!, namespace: ns });
    for (const env of [envOf(pod), envOf(pod, 0, true)]) {
      t.equal(env['AWS_ROLE_ARN'], ROLE);
      t.equal(env['AWS_WEB_IDENTITY_TOKEN_FILE'], '/var/run/secrets/eks.amazonaws.com/serviceaccount/token');
      t.equal(env['AWS_REGION'], 'eu-west-1');
      t.equal(env['AWS_DEFAULT_REGION'], 'eu-west-1');
    }
    const volume = pod.spec!.volumes!.find((v) => v.name === 'aws-iam-token');
    t.same(volume?.projected?.sources, [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }]);
    t.same(pod.spec!.containers[0]!.volumeMounts!.find((m) => m.name === 'aws-iam-token'), {
      name: 'aws-iam-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount', readOnly: true,
    });
    // The API server's own mutation (the kube-api-access volume) is still there: our patch only appended.
    t.ok(pod.spec!.volumes!.some((v) => v.name.startsWith('kube-api-access-')), 'the service-account admission volume is kept');
  });

  await t.test('container credentials for ServiceAccounts in the identities file, reloaded live', async (t) => {
    await serviceAccount(ccNamespace, 'pod-identity', { 'eks.amazonaws.com/role-arn': ROLE });
    const pod = await createPod(ccNamespace, 'pod-identity');
    t.equal(envOf(pod)['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://169.254.170.23/v1/credentials');
    t.equal(envOf(pod)['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token');
    t.equal(envOf(pod)['AWS_ROLE_ARN'], undefined, 'container credentials take precedence over the role ARN');
    t.equal(pod.metadata!.labels!['eks.amazonaws.com/pod-identity'], 'enabled');
    const token = pod.spec!.volumes!.find((v) => v.name === 'eks-pod-identity-token')!.projected!.sources![0]!.serviceAccountToken!;
    t.equal(token.audience, 'pods.eks.amazonaws.com');
    t.ok(token.expirationSeconds! >= 79200 && token.expirationSeconds! <= 86400, `jittered lifetime ${token.expirationSeconds}`);

    await serviceAccount(ccNamespace, 'late');
    writeFileSync(identitiesFile, JSON.stringify({ identities: [{ namespace: ccNamespace, serviceAccount: 'pod-identity' }, { namespace: ccNamespace, serviceAccount: 'late' }] }));
    const late = await until('the identities file to be reloaded', async () => {
      const p = await createPod(ccNamespace, 'late');
      return envOf(p)['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ? p : undefined;
    }, { everyMs: 250 });
    t.ok(late, 'a newly listed ServiceAccount gets container credentials');
  });

  await t.test('ConfigMap mode works with the Role limited to the one ConfigMap', async (t) => {
    await serviceAccount(cmNamespace, 'mapped');
    const pod = await createPod(cmNamespace, 'mapped');
    t.equal(envOf(pod)['AWS_ROLE_ARN'], CM_ROLE, 'the role from the ConfigMap');
    // A change arrives through the watch (a forbidden watch would be retried, never showing it).
    const cm = await core.readNamespacedConfigMap({ name: 'pod-identity-webhook', namespace: WEBHOOK_NS });
    cm.data = { config: JSON.stringify({ [`${cmNamespace}/mapped`]: { RoleARN: NEW_ROLE } }) };
    await core.replaceNamespacedConfigMap({ name: 'pod-identity-webhook', namespace: WEBHOOK_NS, body: cm });
    const changed = await until('the ConfigMap change to reach the webhook', async () => {
      const p = await createPod(cmNamespace, 'mapped');
      return envOf(p)['AWS_ROLE_ARN'] === NEW_ROLE ? p : undefined;
    }, { everyMs: 250 });
    t.ok(changed, 'the changed role from the ConfigMap');
    t.notMatch(webhook.logs(), /configmaps[^\n]*(403|forbidden)/i, 'no 403 on the ConfigMap list/watch');
  });

  await t.test('a ServiceAccount without annotations: the pod is stored unchanged', async (t) => {
    const ns = await namespace();
    await serviceAccount(ns, 'plain');
    const pod = await createPod(ns, 'plain');
    t.same(pod.spec!.containers[0]!.env, undefined);
    t.notOk(pod.spec!.volumes!.some((v) => v.name === 'aws-iam-token'));
    t.notOk(pod.metadata!.labels?.['eks.amazonaws.com/pod-identity']);
  });

  await t.test('race: ServiceAccount and pod created back to back', async (t) => {
    const ns = await namespace();
    for (let i = 0; i < 5; i++) {
      await serviceAccount(ns, `racer-${i}`, { 'eks.amazonaws.com/role-arn': ROLE });
      const pod = await createPod(ns, `racer-${i}`);
      t.equal(envOf(pod)['AWS_ROLE_ARN'], ROLE, `pod ${i} mutated`);
    }
  });

  await t.test('a changed role ARN reaches the next pods, and the old one never comes back', async (t) => {
    const ns = await namespace();
    await serviceAccount(ns, 'changing', { 'eks.amazonaws.com/role-arn': ROLE });
    t.equal(envOf(await createPod(ns, 'changing'))['AWS_ROLE_ARN'], ROLE);
    const sa = await core.readNamespacedServiceAccount({ name: 'changing', namespace: ns });
    sa.metadata!.annotations = { 'eks.amazonaws.com/role-arn': NEW_ROLE };
    await core.replaceNamespacedServiceAccount({ name: 'changing', namespace: ns, body: sa });
    // How fast the watch delivers the change is a benchmark's question; here: the old role until then, the new one after.
    const seen: Array<string | undefined> = [];
    await until('the new role ARN in a pod', async () => {
      const role = envOf(await createPod(ns, 'changing'))['AWS_ROLE_ARN'];
      seen.push(role);
      return role === NEW_ROLE ? role : undefined;
    }, { everyMs: 100 });
    t.ok(seen.slice(0, -1).every((r) => r === ROLE), `only the old role before the change arrived (${seen.length - 1} pods)`);
    for (let i = 0; i < 3; i++) t.equal(envOf(await createPod(ns, 'changing'))['AWS_ROLE_ARN'], NEW_ROLE, `pod ${i} after the change`);
  });

  await t.test('warnings reach the client', async (t) => {
    const ns = await namespace();
    await serviceAccount(ns, 'odd', { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123:role/short-account', 'eks.amazonaws.com/token-expiration': 'soon' });
    const manifest = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'warned', namespace: ns }, spec: { serviceAccountName: 'odd', containers: [{ name: 'app', image: 'busybox' }] } });
    const r = kubectl(cluster.kubeconfig, ['create', '-f', '-'], manifest);
    t.equal(r.status, 0, r.stderr);
    t.match(r.stderr, /Warning: pod-identity-webhook: annotation eks.amazonaws.com\/role-arn="arn:aws:iam::123:role\/short-account" is not a role ARN/);
    t.match(r.stderr, /Warning: pod-identity-webhook: annotation eks.amazonaws.com\/token-expiration="soon" is not a whole number/);
  });

  await t.test('reinvocation: a container added by a later webhook is mutated too', async (t) => {
    const ns = await namespace({ 'piw-e2e-adder': 'true' });
    await serviceAccount(ns, 'reinvoked', { 'eks.amazonaws.com/role-arn': ROLE });
    // A second webhook, called after ours (configurations run in name order), adds a container.
    const adder = createHttpsServer({ cert: readFileSync(join(certDir, 'tls.crt')), key: readFileSync(join(certDir, 'tls.key')) }, (req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const review = JSON.parse(body) as { apiVersion: string; request: { uid: string } };
        const patch = [{ op: 'add', path: '/spec/containers/-', value: { name: 'added-later', image: 'busybox' } }];
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ apiVersion: review.apiVersion, kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') } }));
      });
    });
    await new Promise<void>((resolve) => adder.listen(0, WEBHOOK_HOST === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0', resolve));
    t.teardown(() => new Promise<void>((resolve) => adder.close(() => resolve())));
    const adderPort = (adder.address() as { port: number }).port;
    await admission.createMutatingWebhookConfiguration({
      body: webhookConfiguration({ name: 'z-container-adder-e2e', webhookName: 'adder.e2e.example.com', url: `https://${WEBHOOK_HOST}:${adderPort}/`, ca, label: 'piw-e2e-adder' }),
    });
    t.teardown(() => admission.deleteMutatingWebhookConfiguration({ name: 'z-container-adder-e2e' }));
    const pod = await until('the adder webhook to take effect', async () => {
      const p = await createPod(ns, 'reinvoked');
      return p.spec!.containers.length === 2 ? p : undefined;
    }, { everyMs: 300 });
    t.equal(pod.spec!.containers[1]!.name, 'added-later');
    t.equal(envOf(pod, 1)['AWS_ROLE_ARN'], ROLE, 'the added container got credentials on reinvocation');
    t.ok(pod.spec!.containers[1]!.volumeMounts?.some((m) => m.name === 'aws-iam-token'));
  });

  await t.test('TokenRequest: the token the projected volume will carry', async (t) => {
    const ns = await namespace();
    await serviceAccount(ns, 'tokened', { 'eks.amazonaws.com/role-arn': ROLE });
    const pod = await createPod(ns, 'tokened');
    const audience = pod.spec!.volumes!.find((v) => v.name === 'aws-iam-token')!.projected!.sources![0]!.serviceAccountToken!.audience!;
    const tr = await core.createNamespacedServiceAccountToken({ name: 'tokened', namespace: ns, body: { spec: { audiences: [audience], expirationSeconds: 3600 } } });
    const claims = jwtClaims(tr.status!.token);
    const discovery = JSON.parse(kubectl(cluster.kubeconfig, ['get', '--raw', '/.well-known/openid-configuration']).stdout) as { issuer: string };
    t.equal(claims['iss'], discovery.issuer);
    t.same(claims['aud'], ['sts.amazonaws.com']);
    t.equal(claims['sub'], `system:serviceaccount:${ns}:tokened`);
  });

  await t.test('the webhook is down: Ignore admits unmutated, Fail rejects', async (t) => {
    const ns = await namespace();
    await serviceAccount(ns, 'orphan', { 'eks.amazonaws.com/role-arn': ROLE });
    const code = await webhook.stop();
    t.equal(code, 0, 'SIGTERM ends the webhook with exit code 0');

    const setPolicy = async (policy: 'Ignore' | 'Fail') => {
      const cfg = await admission.readMutatingWebhookConfiguration({ name: CONFIG });
      cfg.webhooks![0]!.failurePolicy = policy;
      await admission.replaceMutatingWebhookConfiguration({ name: CONFIG, body: cfg });
    };
    await setPolicy('Ignore');
    const admitted = await until('failurePolicy Ignore to take effect', async () => {
      try {
        return await createPod(ns, 'orphan');
      } catch {
        return undefined;
      }
    }, { everyMs: 300 });
    t.same(admitted.spec!.containers[0]!.env, undefined, 'admitted without credentials');

    await setPolicy('Fail');
    const rejection = await until('failurePolicy Fail to take effect', async () => {
      try {
        await createPod(ns, 'orphan');
        return undefined;
      } catch (err) {
        return err as Error;
      }
    }, { everyMs: 300 });
    t.match(String((rejection as { body?: unknown }).body ?? rejection.message), /failed calling webhook/);

    // Back up: pods are mutated again.
    webhook = await startWebhook(serveArgs, ca);
    const cfg = await admission.readMutatingWebhookConfiguration({ name: CONFIG });
    cfg.webhooks![0]!.clientConfig.url = `https://${WEBHOOK_HOST}:${webhook.port}/mutate`;
    await admission.replaceMutatingWebhookConfiguration({ name: CONFIG, body: cfg });
    const again = await until('the restarted webhook', async () => {
      try {
        const p = await createPod(ns, 'orphan');
        return envOf(p)['AWS_ROLE_ARN'] === ROLE ? p : undefined;
      } catch {
        return undefined;
      }
    }, { everyMs: 300 });
    t.ok(again);
  });
}
