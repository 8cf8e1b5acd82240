// Drop-in: the command lines written for the reference webhook start our
// `serve` unmodified against a real kube-apiserver, it becomes ready, and the
// pods the API server stores are mutated. Two command lines: the reference's
// deploy/deployment-base.yaml (run through the image's /webhook script) and
// what a typical community chart renders (through the image's ENTRYPOINT,
// finding its kubeconfig in KUBECONFIG as kubectl would). Only what a local run
// needs is added: the certificate paths, the kubeconfig, and free ports. Last,
// --compose-role-arn with the account from an instance-metadata stand-in.
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1Pod } from '@kubernetes/client-node';
import { type Cluster, freePort, httpsStatus, startCluster, tempDir, until, WEBHOOK_HOST, webhookConfiguration, webhookCertificates } from '../helpers/cluster.js';
import { SERVE_COMMAND } from '../helpers/serve-command.js';
import { spawnTied } from '../helpers/child.js';
import { exitedReason } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ROLE = 'arn:aws:iam::111122223333:role/e2e-drop-in';
const TEST_LABEL = 'piw-drop-in';

const started = await startCluster('e2e-drop-in');
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  await t.test('manifests written for the reference webhook', async (t) => run(t, started.cluster));
}

interface Running {
  logs: () => string;
  stop(): Promise<number | null>;
}

/** Starts a command and resolves once its /readyz answers 200 over TLS. */
async function startReady(t: Test, argv: string[], env: NodeJS.ProcessEnv, port: number, ca: string): Promise<Running> {
  const [cmd, ...args] = argv as [string, ...string[]];
  // Tied to this test process: it dies with it, however the test ends.
  const child = spawnTied(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  t.teardown(stop);
  await until('the webhook to be ready', async () => ((await httpsStatus(port, '/readyz', ca)) === 200 ? true : undefined), {
    giveUpIf: () => exitedReason(child, 'the webhook', () => output),
  });
  return { logs: () => output, stop };
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  const { core, admission } = cluster;
  const dir = tempDir('piw-drop-in-');
  t.teardown(() => cluster.down());

  const { ca, tlsArgs } = webhookCertificates(dir);

  // The image's /webhook, with its /app pointed at this checkout and its Node.js at this one.
  const webhookScript = join(dir, 'webhook');
  const script = readFileSync(join(ROOT, 'image/webhook'), 'utf8');
  if (!script.startsWith('#!/nodejs/bin/node\n')) throw new Error('image/webhook no longer starts with #!/nodejs/bin/node: adapt this test');
  writeFileSync(webhookScript, script.replace('#!/nodejs/bin/node', `#!${process.execPath}`).split('/app/').join(`${ROOT}/`), { mode: 0o755 });

  let n = 0;
  const namespace = async (): Promise<string> => {
    const name = `drop-in-${Date.now().toString(36)}-${n++}`;
    await core.createNamespace({ body: { metadata: { name, labels: { [TEST_LABEL]: 'true' } } } });
    return name;
  };
  const envOf = (pod: V1Pod): Record<string, string | undefined> =>
    Object.fromEntries((pod.spec?.containers?.[0]?.env ?? []).map((e) => [e.name, e.value]));

  /** Points a MutatingWebhookConfiguration at `port` and returns the first pod it mutates. */
  const mutatedPod = async (name: string, port: number, roleArnAnnotation = ROLE): Promise<V1Pod> => {
    await admission.createMutatingWebhookConfiguration({
      body: webhookConfiguration({
        name, url: `https://${WEBHOOK_HOST}:${port}/mutate`, ca, label: TEST_LABEL, failurePolicy: 'Ignore', admissionReviewVersions: ['v1beta1'],
      }),
    });
    const ns = await namespace();
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': roleArnAnnotation } } } });
    let i = 0;
    // A new configuration reaches the API server's admission chain within a moment.
    const pod = await until('a mutated pod', async () => {
      const created = await core.createNamespacedPod({
        namespace: ns,
        body: { metadata: { name: `pod-${i++}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } },
      });
      return envOf(created)['AWS_ROLE_ARN'] ? created : undefined;
    }, { everyMs: 300 });
    await admission.deleteMutatingWebhookConfiguration({ name });
    return core.readNamespacedPod({ name: pod.metadata!.name!, namespace: ns });
  };

  await t.test("the reference's deploy/deployment-base.yaml, through /webhook", async (t) => {
    const port = await freePort();
    const metricsPort = await freePort();
    const referenceArgs = [
      '--in-cluster=false', '--namespace=eks', '--service-name=pod-identity-webhook',
      '--annotation-prefix=eks.amazonaws.com', '--token-audience=sts.amazonaws.com', '--logtostderr',
    ];
    const local = [`--kubeconfig=${cluster.kubeconfig}`, ...tlsArgs, `--port=${port}`, `--metrics-port=${metricsPort}`];
    const env = { ...process.env };
    delete env['KUBECONFIG'];
    const webhook = await startReady(t, [webhookScript, ...referenceArgs, ...local], env, port, ca);

    const pod = await mutatedPod('drop-in-reference', port);
    const e = envOf(pod);
    t.equal(e['AWS_ROLE_ARN'], ROLE);
    t.equal(e['AWS_WEB_IDENTITY_TOKEN_FILE'], '/var/run/secrets/eks.amazonaws.com/serviceaccount/token');
    t.equal(e['AWS_REGION'], undefined, 'no --aws-default-region: no region');
    const volume = pod.spec!.volumes!.find((v) => v.name === 'aws-iam-token');
    t.same(volume?.projected?.sources, [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }]);

    t.equal(await webhook.stop(), 0, 'SIGTERM: a clean exit');
    const lines = webhook.logs().split('\n').filter((l) => l.includes('has no effect here'));
    t.same(lines.map((l) => (JSON.parse(l) as { flag: string }).flag).sort(), ['--logtostderr', '--service-name'], 'each flag without effect is logged once');
  });

  await t.test('a community chart\'s args, with the kubeconfig in KUBECONFIG', async (t) => {
    const port = await freePort();
    const metricsPort = await freePort();
    // As rendered, with the chart's port values set to free ports.
    const chartArgs = [
      '--in-cluster=false', '--namespace=kube-system', `--port=${port}`, '--annotation-prefix=eks.amazonaws.com',
      '--token-audience=sts.amazonaws.com', '--logtostderr', '--v=2', '--aws-default-region=eu-central-1',
      `--metrics-port=${metricsPort}`, '--sts-regional-endpoint=true',
    ];
    const [cmd, ...rest] = SERVE_COMMAND;
    const webhook = await startReady(t, [cmd, ...rest, ...chartArgs, ...tlsArgs], { ...process.env, KUBECONFIG: cluster.kubeconfig }, port, ca);

    const e = envOf(await mutatedPod('drop-in-chart', port));
    t.equal(e['AWS_ROLE_ARN'], ROLE);
    t.equal(e['AWS_REGION'], 'eu-central-1', 'the region of --aws-default-region');
    t.equal(e['AWS_DEFAULT_REGION'], 'eu-central-1');
    t.equal(e['AWS_STS_REGIONAL_ENDPOINTS'], 'regional');
    t.equal(await webhook.stop(), 0);
    t.match(webhook.logs(), /"flag":"--v"/);
  });

  await t.test('--compose-role-arn: a bare role name, completed from instance metadata', async (t) => {
    // EC2's instance metadata (IMDSv2), as a local stand-in.
    const imds = createServer((req, res) => {
      if (req.method === 'PUT' && req.url === '/latest/api/token') return res.end('token');
      if (req.url === '/latest/dynamic/instance-identity/document' && req.headers['x-aws-ec2-metadata-token'] === 'token') {
        return res.end(JSON.stringify({ accountId: '444455556666', region: 'cn-north-1' }));
      }
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => imds.listen(0, '127.0.0.1', () => r()));
    t.teardown(() => new Promise<void>((r) => imds.close(() => r())));
    const port = await freePort();
    const metricsPort = await freePort();
    const [cmd, ...rest] = SERVE_COMMAND;
    const env = { ...process.env, KUBECONFIG: cluster.kubeconfig, AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://127.0.0.1:${(imds.address() as AddressInfo).port}` };
    const webhook = await startReady(t, [cmd, ...rest, '--compose-role-arn', `--port=${port}`, `--metrics-port=${metricsPort}`, ...tlsArgs], env, port, ca);
    const e = envOf(await mutatedPod('drop-in-compose', port, 'team/reader'));
    t.equal(e['AWS_ROLE_ARN'], 'arn:aws-cn:iam::444455556666:role/team/reader', 'partition from the region, account from the document');
    t.equal(await webhook.stop(), 0);
  });
}
