// End to end, the opt-in features: a real kube-apiserver calls the webhook for
// pod creation and for updates of pods/ephemeralcontainers, applies its JSON
// patches, validates and stores the result. Every assertion reads what the API
// server stored, or the warnings kubectl printed.
import t, { type Test as Tap } from 'tap';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { type Cluster, kubectl, startCluster, startWebhook, tempDir, until, WEBHOOK_HOST, webhookConfiguration, webhookCertificates } from '../helpers/cluster.js';

const ROLE = 'arn:aws:iam::111122223333:role/e2e-features';
const CONFIG = 'a-pod-identity-webhook-features';
const TEST_LABEL = 'piw-e2e-features';
const TOKEN_FILE = '/var/run/secrets/eks.amazonaws.com/serviceaccount/token';
const TOKEN_MOUNT = { name: 'aws-iam-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount', readOnly: true };
const SESSION = { name: 'AWS_ROLE_SESSION_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } };

const started = await startCluster('e2e-features');
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  await t.test('opt-in features against a real API server', async (t) => run(t, started.cluster));
}

function envOf(c: V1Container | undefined): Record<string, unknown> {
  return Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
}

/** The token mounts of a container (the API server's ServiceAccount admission adds its own mount too). */
function tokenMounts(c: V1Container | undefined): unknown[] {
  return (c?.volumeMounts ?? []).filter((m) => m.name === 'aws-iam-token');
}



async function run(t: Tap, cluster: Cluster): Promise<void> {
  const { core, admission } = cluster;
  const dir = tempDir('piw-e2e-features-');
  t.teardown(() => cluster.down());

  const { ca, tlsArgs } = webhookCertificates(dir);
  const webhook = await startWebhook([
    '--kubeconfig', cluster.kubeconfig,
    ...tlsArgs,
    '--namespace', 'default',
    '--mutate-ephemeral-containers',
  ], ca);
  t.teardown(() => webhook.stop());

  // The base manifest's rules, with the commented-out pods/ephemeralcontainers rule switched on.
  await admission.createMutatingWebhookConfiguration({
    body: webhookConfiguration({
      name: CONFIG, url: `https://${WEBHOOK_HOST}:${webhook.port}/mutate`, ca, label: TEST_LABEL,
      reinvoke: true, ephemeralContainers: true, admissionReviewVersions: ['v1', 'v1beta1'],
    }),
  });

  const ns = `features-${Date.now().toString(36)}`;
  await core.createNamespace({ body: { metadata: { name: ns, labels: { [TEST_LABEL]: 'true' } } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  await core.createNamespacedServiceAccount({
    namespace: ns,
    body: { metadata: { name: 'sessions', annotations: { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/role-session-name': 'pod-name' } } },
  });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'plain' } } });
  const read = (name: string): Promise<V1Pod> => core.readNamespacedPod({ name, namespace: ns });
  /** kubectl create, so that the admission warnings it prints can be read. */
  const create = (pod: Record<string, unknown>): { status: number; stdout: string; stderr: string } =>
    kubectl(cluster.kubeconfig, ['create', '-n', ns, '-o', 'name', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }));

  // A new configuration takes effect within a moment: wait for the first mutated pod.
  let warm = 0;
  await until('the webhook configuration to take effect', async () => {
    const pod = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: `warm-${warm++}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } } });
    return envOf(pod.spec?.containers[0])['AWS_ROLE_ARN'] === ROLE ? pod : undefined;
  }, { everyMs: 300 });

  await t.test('include-containers: only the named containers get credentials', async (t) => {
    const r = create({
      metadata: { name: 'include', annotations: { 'eks.amazonaws.com/include-containers': 'app,setup,ghost' } },
      spec: {
        serviceAccountName: 'app',
        initContainers: [{ name: 'setup', image: 'busybox' }, { name: 'other-init', image: 'busybox' }],
        containers: [{ name: 'app', image: 'busybox' }, { name: 'worker', image: 'busybox' }],
      },
    });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stderr, 'Warning: pod-identity-webhook: 1 name(s) in annotation eks.amazonaws.com/include-containers match no container of this pod: "ghost"');
    const pod = await read('include');
    t.same(envOf(pod.spec!.initContainers![0]), { AWS_ROLE_ARN: ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: TOKEN_FILE });
    t.same(tokenMounts(pod.spec!.initContainers![0]), [TOKEN_MOUNT]);
    t.same(envOf(pod.spec!.containers[0]), { AWS_ROLE_ARN: ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: TOKEN_FILE });
    t.same(tokenMounts(pod.spec!.containers[0]), [TOKEN_MOUNT]);
    t.same(tokenMounts(pod.spec!.initContainers![1]), []);
    t.equal(pod.spec!.initContainers![1]!.env, undefined);
    t.equal(pod.spec!.containers[1]!.env, undefined);
    t.same(tokenMounts(pod.spec!.containers[1]), []);
    t.ok(pod.spec!.volumes!.some((v) => v.name === 'aws-iam-token'));
  });

  await t.test('role-session-name: from the ServiceAccount and the pod, through the downward API', async (t) => {
    const bySa = create({ metadata: { name: 'by-service-account' }, spec: { serviceAccountName: 'sessions', containers: [{ name: 'app', image: 'busybox' }] } });
    t.equal(bySa.status, 0, bySa.stderr);
    t.notMatch(bySa.stderr, 'Warning');
    const pod = await read('by-service-account');
    t.same(pod.spec!.containers[0]!.env, [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE }, SESSION]);

    // A controller's pod: no name at admission; the API server cuts generateName to 58 and adds 5.
    const generated = create({ metadata: { generateName: `${'g'.repeat(70)}-` }, spec: { serviceAccountName: 'sessions', containers: [{ name: 'app', image: 'busybox' }] } });
    t.equal(generated.status, 0, generated.stderr);
    t.notMatch(generated.stderr, 'Warning');
    const name = generated.stdout.trim().replace(/^pod\//, '');
    t.equal(name.length, 63);
    t.same((await read(name)).spec!.containers[0]!.env![2], SESSION);

    // A pod annotation, on a pod whose name STS would refuse: stored, with a warning.
    const long = 'l'.repeat(70);
    const byPod = create({
      metadata: { name: long, annotations: { 'eks.amazonaws.com/role-session-name': 'pod-name' } },
      spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox', env: [{ name: 'AWS_ROLE_SESSION_NAME', value: 'mine' }] }, { name: 'side', image: 'busybox' }] },
    });
    t.equal(byPod.status, 0, byPod.stderr);
    t.match(byPod.stderr, 'Warning: pod-identity-webhook: AWS_ROLE_SESSION_NAME is the pod name, 70 characters long, but STS accepts at most 64: AssumeRoleWithWebIdentity will fail; shorten the name or remove eks.amazonaws.com/role-session-name (or --role-session-name)\n');
    const stored = await read(long);
    t.same(envOf(stored.spec!.containers[0])['AWS_ROLE_SESSION_NAME'], 'mine', 'a container\'s own session name is kept');
    t.same(stored.spec!.containers[1]!.env![2], SESSION);

    const bad = create({ metadata: { name: 'bad-session', annotations: { 'eks.amazonaws.com/role-session-name': 'yes' } }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } });
    t.equal(bad.status, 0, bad.stderr);
    t.match(bad.stderr, 'Warning: pod-identity-webhook: annotation eks.amazonaws.com/role-session-name="yes" is not "pod-name"; it is ignored');
    t.equal(envOf((await read('bad-session')).spec!.containers[0])['AWS_ROLE_SESSION_NAME'], undefined);
  });

  await t.test('ephemeral containers: a debug container gets the identity the pod has', async (t) => {
    const r = create({ metadata: { name: 'debugged' }, spec: { serviceAccountName: 'sessions', containers: [{ name: 'app', image: 'busybox' }] } });
    t.equal(r.status, 0, r.stderr);
    // The pods/ephemeralcontainers subresource, as kubectl debug uses it.
    const patched = kubectl(cluster.kubeconfig, [
      'patch', 'pod', 'debugged', '-n', ns, '--subresource=ephemeralcontainers', '--type=strategic',
      '-p', JSON.stringify({ spec: { ephemeralContainers: [{ name: 'debugger', image: 'busybox', targetContainerName: 'app' }] } }),
    ]);
    t.equal(patched.status, 0, patched.stderr);
    let pod = await read('debugged');
    const debugger0 = pod.spec!.ephemeralContainers![0]!;
    t.same(debugger0.env, [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE }, SESSION]);
    t.same(debugger0.volumeMounts, [TOKEN_MOUNT]);
    t.equal(pod.spec!.volumes!.filter((v) => v.name === 'aws-iam-token').length, 1, 'no volume added');

    // kubectl debug: a second one; the first is left as it is.
    const debug = kubectl(cluster.kubeconfig, ['debug', 'debugged', '-n', ns, '--image=busybox', '--container=debugger-2']);
    t.equal(debug.status, 0, debug.stderr);
    pod = await read('debugged');
    t.same(pod.spec!.ephemeralContainers!.map((c) => c.name), ['debugger', 'debugger-2']);
    t.same(pod.spec!.ephemeralContainers![0]!.env, debugger0.env);
    t.same(pod.spec!.ephemeralContainers![1]!.env, debugger0.env);
    t.same(pod.spec!.ephemeralContainers![1]!.volumeMounts, [TOKEN_MOUNT]);
  });

  await t.test('ephemeral containers: a pod without an identity is not changed', async (t) => {
    const r = create({ metadata: { name: 'no-identity' }, spec: { serviceAccountName: 'plain', containers: [{ name: 'app', image: 'busybox' }] } });
    t.equal(r.status, 0, r.stderr);
    const patched = kubectl(cluster.kubeconfig, [
      'patch', 'pod', 'no-identity', '-n', ns, '--subresource=ephemeralcontainers', '--type=strategic',
      '-p', JSON.stringify({ spec: { ephemeralContainers: [{ name: 'debugger', image: 'busybox' }] } }),
    ]);
    t.equal(patched.status, 0, patched.stderr);
    const pod = await read('no-identity');
    t.equal(pod.spec!.ephemeralContainers![0]!.env, undefined);
    t.equal(pod.spec!.ephemeralContainers![0]!.volumeMounts, undefined);
  });
}
