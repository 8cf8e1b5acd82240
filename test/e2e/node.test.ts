// The promise itself, on a real node (issue #13): a pod that names only an
// annotated ServiceAccount is mutated by the webhook, the kubelet projects the
// token, containerd passes the environment, and the container, non-root with a
// read-only root filesystem, reads the token and gets the role's credentials
// with the AWS SDK's default chain from the STS stand-in (IRSA), or from a
// stand-in of the EKS Pod Identity agent (container credentials); a pod of an
// unannotated ServiceAccount gets nothing. The node is
// `scripts/controlplane.sh run --with-node` (containerd + kubelet); the images
// are built here (no registry): the sandbox "pause" and one with this
// process's Node binary, the probe script below and the SDK's packages.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import t, { type Test } from 'tap';
import type { V1Pod } from '@kubernetes/client-node';
import { CONTROLPLANE_CACHE, type Cluster, startCluster, startWebhook, tempDir, until, WEBHOOK_HOST, webhookConfiguration, webhookCertificates } from '../helpers/cluster.js';
import { cli } from '../helpers/serve-command.js';
import { addNode, buildImage, buildPause, copyPackages } from '../helpers/oci-image.js';
import { startPodIdentityAgent } from '../helpers/pod-identity-agent.js';
import { credentialsForRole, startStsStandin } from '../helpers/sts-standin.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE = 'piw-node';
const PAUSE_IMAGE = 'docker.io/library/piw-pause:1';
const APP_IMAGE = 'docker.io/library/piw-node-probe:1';
const ISSUER = 'https://oidc.node-e2e.example.com';
const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/node-app`;
const AGENT_ROLE = `arn:aws:iam::${ACCOUNT}:role/node-pod-identity`;
const LABEL = 'piw-node-e2e';
const UID = 1000;
const GID = 3000;

// What the container runs: the token file and the environment as the
// container sees them, then (argument `sdk`) the SDK's default chain.
const PROBE = `
import { readFileSync, statSync, writeFileSync } from 'node:fs';
const out = { uid: process.getuid(), gid: process.getgid(), env: {} };
for (const [k, v] of Object.entries(process.env)) if (k.startsWith('AWS_')) out.env[k] = v;
const file = process.env.AWS_WEB_IDENTITY_TOKEN_FILE ?? process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;
if (file) {
  const st = statSync(file);
  out.file = { mode: (st.mode & 0o777).toString(8), uid: st.uid, gid: st.gid };
  const token = readFileSync(file, 'utf8');
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
  out.claims = { iss: claims.iss, aud: claims.aud, sub: claims.sub, iat: claims.iat, exp: claims.exp };
}
try { writeFileSync('/probe-write', 'x'); out.rootWritable = true; } catch (err) { out.rootWritable = err.code; }
if (process.argv[2] === 'sdk') {
  const { fromNodeProviderChain } = await import('@aws-sdk/credential-providers');
  try {
    const c = await fromNodeProviderChain()();
    out.credentials = { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken };
  } catch (err) {
    out.sdkError = { name: err.name, message: String(err.message).slice(0, 300) };
  }
}
console.log('PROBE ' + JSON.stringify(out));
`;

interface Probe {
  uid: number;
  gid: number;
  env: Record<string, string>;
  file?: { mode: string; uid: number; gid: number };
  claims?: { iss: string; aud: string[] | string; sub: string; iat: number; exp: number };
  rootWritable: true | string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  sdkError?: { name: string; message: string };
}

/** Container states the kubelet does not recover from by itself. */
const FATAL_WAITING = new Set(['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError']);

/** The end of the kubelet's and containerd's logs, for a failure message. */
function nodeLogs(cluster: Cluster): string {
  if (!cluster.stateDir) return '';
  return ['kubelet', 'containerd']
    .map((name) => {
      const file = join(cluster.stateDir!, `${name}.log`);
      const lines = existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-12).join('\n') : '(no log)';
      return `--- last lines of ${name}.log ---\n${lines}`;
    })
    .join('\n');
}

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: containerd and the kubelet need root';
  if (!existsSync('/sys/fs/cgroup')) return 'no /sys/fs/cgroup';
  for (const cmd of ['containerd', 'ctr', 'runc', 'ldd', 'ip']) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status !== 0) return `${cmd} is not installed (apt-get install containerd runc)`;
  }
  if (!existsSync(join(CONTROLPLANE_CACHE, 'bin', 'kubelet')) && spawnSync('go', ['version'], { stdio: 'ignore' }).status !== 0) {
    return 'no kubelet, and no Go to build it (scripts/controlplane.sh build-node)';
  }
  return undefined;
}


const why = missing();
if (why) {
  // Only where containerd cannot run at all (not root, no cgroups) is a skip allowed in CI.
  const cannotRun = why.startsWith('not root') || why.startsWith('no /sys');
  if (!cannotRun && process.env['CI'] && process.env['CI'] !== 'false') throw new Error(`CI is set, and the node tests cannot run: ${why}`);
  t.skip(`node end-to-end tests: ${why}`, () => undefined);
} else {
  const dir = tempDir('piw-node-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let since = Date.now();
  const images = buildImages(dir);
  t.comment(`images built in ${Date.now() - since} ms`);
  // The API server signs with a key of ours, so `oidc` can write the keys the STS stand-in checks.
  const signingKey = join(dir, 'sa.key');
  const publicKey = join(dir, 'sa.pub');
  since = Date.now();
  spawnSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', signingKey], { stdio: 'ignore' });
  spawnSync('openssl', ['pkey', '-in', signingKey, '-pubout', '-out', publicKey], { stdio: 'ignore' });
  const started = await startCluster(
    'e2e-node',
    { PIW_NODE_IMAGES: images.join(' '), PIW_NODE_SANDBOX_IMAGE: PAUSE_IMAGE, PIW_NODE_NAME: NODE, PIW_SA_ISSUER: ISSUER, PIW_SA_SIGNING_KEY_FILE: signingKey, PIW_SA_KEY_FILE: publicKey },
    { withNode: true },
  );
  t.comment(`control plane and node ready in ${Date.now() - since} ms`);
  if ('skip' in started) t.skip(`node end-to-end tests: ${started.skip}`, () => undefined);
  else await t.test('a pod on a real node gets the token and the role', async (t) => run(t, started.cluster, dir, publicKey));
}

/** The sandbox image and the probe's image, as archives for containerd. */
function buildImages(dir: string): string[] {
  const pause = join(dir, 'pause');
  mkdirSync(join(pause, 'rootfs'), { recursive: true });
  buildPause(ROOT, join(pause, 'rootfs', 'pause'), CONTROLPLANE_CACHE);
  const pauseImage = buildImage({ rootfs: join(pause, 'rootfs'), name: PAUSE_IMAGE, entrypoint: ['/pause'] }, join(pause, 'build'));

  const app = join(dir, 'app');
  const rootfs = join(app, 'rootfs');
  mkdirSync(join(rootfs, 'app', 'node_modules'), { recursive: true });
  const node = addNode(rootfs);
  writeFileSync(join(rootfs, 'app', 'probe.mjs'), PROBE);
  copyPackages(join(ROOT, 'node_modules'), ['@aws-sdk/credential-providers'], join(rootfs, 'app', 'node_modules'));
  const appImage = buildImage({ rootfs, name: APP_IMAGE, entrypoint: [node, '/app/probe.mjs'] }, join(app, 'build'));
  // Only the archives are needed from here on (the app's tree is about 125 MB, three times over).
  for (const d of [pause, app]) {
    rmSync(join(d, 'rootfs'), { recursive: true, force: true });
    rmSync(join(d, 'build', 'layout'), { recursive: true, force: true });
    rmSync(join(d, 'build', 'layer.tar'), { force: true });
  }
  return [pauseImage.archive, appImage.archive];
}

async function run(t: Test, cluster: Cluster, dir: string, publicKey: string): Promise<void> {
  t.teardown(() => cluster.down());
  const { core, admission } = cluster;

  const issuerDir = join(dir, 'issuer');
  const oidc = cli(['oidc', '--issuer', ISSUER, '--public-key', publicKey, '--out', issuerDir]);
  t.equal(oidc.status, 0, oidc.stderr);
  const jwks = JSON.parse(readFileSync(join(issuerDir, 'keys.json'), 'utf8')) as { keys: object[] };

  const ns = `node-${Date.now().toString(36)}`;
  const sub = (sa: string): string => `system:serviceaccount:${ns}:${sa}`;
  // Container-credentials mode: the ServiceAccount `agent` is in the identities
  // file, and the injected URI points at a stand-in of the Pod Identity agent.
  const agent = await startPodIdentityAgent({ issuer: ISSUER, jwks, associations: new Map([[sub('agent'), AGENT_ROLE]]) });
  t.teardown(() => agent.close());
  const identitiesFile = join(dir, 'identities.json');
  writeFileSync(identitiesFile, JSON.stringify({ identities: [{ namespace: ns, serviceAccount: 'agent' }] }));

  const { ca, tlsArgs } = webhookCertificates(dir);
  const webhook = await startWebhook([
    '--kubeconfig', cluster.kubeconfig,
    ...tlsArgs,
    '--aws-default-region', 'eu-west-1',
    '--watch-container-credentials-config', identitiesFile,
    '--container-credentials-full-uri', agent.url,
  ], ca);
  t.teardown(() => webhook.stop());

  await core.createNamespace({ body: { metadata: { name: ns, labels: { [LABEL]: 'true' } } } });
  // What kube-controller-manager (not run here) would publish: every pod's
  // default API access volume needs it, or the kubelet never starts the pod.
  const clusterCa = cluster.kc.getCurrentCluster()!.caData!;
  await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'kube-root-ca.crt' }, data: { 'ca.crt': Buffer.from(clusterCa, 'base64').toString('utf8') } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'agent', annotations: { 'eks.amazonaws.com/role-arn': AGENT_ROLE } } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  await core.createNamespacedServiceAccount({
    namespace: ns,
    body: { metadata: { name: 'custom', annotations: { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/audience': 'custom.example.com', 'eks.amazonaws.com/token-expiration': '7200' } } },
  });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'plain' } } });

  await admission.createMutatingWebhookConfiguration({
    body: webhookConfiguration({ name: 'a-pod-identity-webhook-node-e2e', url: `https://${WEBHOOK_HOST}:${webhook.port}/mutate`, ca, label: LABEL, reinvoke: true }),
  });

  const sts = await startStsStandin({ issuer: ISSUER, jwks, roles: new Map([[ROLE, { subjects: [sub('app')], audience: 'sts.amazonaws.com' }]]) });
  t.teardown(() => sts.close());

  /** A pod as a user writes it: the ServiceAccount, the image, and (for the stand-in) the STS endpoint. */
  const podSpec = (name: string, sa: string, args: string[]): V1Pod => ({
    metadata: { name },
    spec: {
      nodeName: NODE, // no scheduler
      hostNetwork: true, // no CNI network; the STS stand-in listens on loopback
      serviceAccountName: sa,
      restartPolicy: 'Never',
      securityContext: { runAsNonRoot: true, runAsUser: UID, runAsGroup: GID },
      containers: [{
        name: 'app',
        image: APP_IMAGE,
        imagePullPolicy: 'Never',
        args,
        env: [{ name: 'AWS_ENDPOINT_URL_STS', value: sts.url }],
        securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      }],
    },
  });

  let attempt = 0;
  /** Creates the pod (once the webhook configuration is in effect for annotated ServiceAccounts), waits for it to finish, returns its probe output. */
  const runPod = async (sa: string, args: string[], mutated: boolean): Promise<{ pod: V1Pod; probe: Probe; phase: string }> => {
    const pod = await until('the webhook configuration to take effect', async () => {
      const name = `${sa}-${attempt++}`;
      const p = await core.createNamespacedPod({ namespace: ns, body: podSpec(name, sa, args) });
      const injected = p.spec!.containers[0]!.env!.some((e) => e.name === 'AWS_ROLE_ARN' || e.name === 'AWS_CONTAINER_CREDENTIALS_FULL_URI');
      if (injected === mutated) return p;
      await core.deleteNamespacedPod({ name, namespace: ns, gracePeriodSeconds: 0 });
      return undefined;
    }, { everyMs: 300 });
    const name = pod.metadata!.name!;
    // A pod the node cannot start (image, config, sandbox) ends the wait with the reason and the node's logs.
    let stuck: string | undefined;
    const phase = await until(`pod ${name} to finish on the node`, async () => {
      const p = await core.readNamespacedPod({ name, namespace: ns });
      if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') return p.status.phase;
      const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
      if (waiting?.reason && FATAL_WAITING.has(waiting.reason)) stuck = `${waiting.reason}: ${waiting.message ?? ''}`;
      const events = await core.listNamespacedEvent({ namespace: ns, fieldSelector: `involvedObject.name=${name}` });
      const sandbox = events.items.find((e) => e.reason === 'FailedCreatePodSandBox' && (e.count ?? 1) >= 3);
      if (sandbox) stuck = `FailedCreatePodSandBox: ${sandbox.message ?? ''}`;
      return undefined;
    }, { everyMs: 250, giveUpIf: () => (stuck ? `${stuck}\n${nodeLogs(cluster)}` : undefined) });
    const logs = await core.readNamespacedPodLog({ name, namespace: ns, container: 'app' });
    const line = logs.split('\n').find((l) => l.startsWith('PROBE '));
    if (!line) throw new Error(`pod ${name} (${phase}) printed no probe line:\n${logs}`);
    return { pod, probe: JSON.parse(line.slice('PROBE '.length)) as Probe, phase };
  };

  await t.test('the token the kubelet projects: the webhook\'s path and audience, readable by the non-root user, in a read-only root filesystem', async (t) => {
    const { pod, probe, phase } = await runPod('app', ['sdk'], true);
    t.equal(phase, 'Succeeded');
    t.equal(probe.uid, UID);
    t.equal(probe.gid, GID);
    t.equal(probe.rootWritable, 'EROFS', 'the root filesystem is read-only');
    t.equal(probe.env['AWS_ROLE_ARN'], ROLE);
    t.equal(probe.env['AWS_WEB_IDENTITY_TOKEN_FILE'], '/var/run/secrets/eks.amazonaws.com/serviceaccount/token');
    t.equal(probe.env['AWS_REGION'], 'eu-west-1');
    t.equal(probe.env['AWS_DEFAULT_REGION'], 'eu-west-1');
    t.same(probe.claims?.aud, ['sts.amazonaws.com']);
    t.equal(probe.claims?.iss, ISSUER);
    t.equal(probe.claims?.sub, sub('app'));
    t.equal(probe.claims!.exp - probe.claims!.iat, 86400, 'the webhook\'s default lifetime');
    // All containers run as one non-root user: the kubelet makes it the file's
    // owner, readable by it alone (the group stays root, not runAsGroup).
    t.same(probe.file, { mode: '600', uid: UID, gid: 0 }, JSON.stringify(probe.file));
    t.ok(pod.spec!.volumes!.some((v) => v.name === 'aws-iam-token'));
    t.comment(`token file in the container: ${JSON.stringify(probe.file)}`);

    // The SDK's default chain, given only what the webhook injected (and the stand-in's endpoint).
    t.same(probe.credentials, credentialsForRole(ROLE), probe.sdkError ? JSON.stringify(probe.sdkError) : 'the role\'s credentials');
    const last = sts.requests.at(-1);
    t.equal(last?.params['RoleArn'], ROLE);
    t.equal(last?.claims?.sub, sub('app'));
  });

  await t.test('custom audience and token-expiration annotations reach the token in the container', async (t) => {
    const { probe, phase } = await runPod('custom', [], true);
    t.equal(phase, 'Succeeded');
    t.same(probe.claims?.aud, ['custom.example.com']);
    t.equal(probe.claims!.exp - probe.claims!.iat, 7200);
    t.equal(probe.env['AWS_WEB_IDENTITY_TOKEN_FILE'], '/var/run/secrets/eks.amazonaws.com/serviceaccount/token');
  });

  await t.test('container credentials: the SDK calls the Pod Identity agent with the projected token', async (t) => {
    const { probe, phase } = await runPod('agent', ['sdk'], true);
    t.equal(phase, 'Succeeded');
    t.equal(probe.env['AWS_CONTAINER_CREDENTIALS_FULL_URI'], agent.url);
    t.equal(probe.env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token');
    t.equal(probe.env['AWS_ROLE_ARN'], undefined);
    t.same(probe.claims?.aud, ['pods.eks.amazonaws.com']);
    t.equal(probe.claims?.sub, sub('agent'));
    t.same(probe.file, { mode: '600', uid: UID, gid: 0 }, JSON.stringify(probe.file));
    t.same(probe.credentials, credentialsForRole(AGENT_ROLE), probe.sdkError ? JSON.stringify(probe.sdkError) : 'the association\'s credentials');
    t.same(agent.requests.at(-1), { status: 200, sub: sub('agent') });
  });

  await t.test('a pod of an unannotated ServiceAccount gets no AWS credentials', async (t) => {
    const { probe, phase } = await runPod('plain', ['sdk'], false);
    t.equal(phase, 'Succeeded');
    t.same(Object.keys(probe.env).sort(), ['AWS_ENDPOINT_URL_STS']);
    t.equal(probe.file, undefined);
    t.equal(probe.credentials, undefined);
    t.match(probe.sdkError?.name, /CredentialsProviderError/);
  });
}
