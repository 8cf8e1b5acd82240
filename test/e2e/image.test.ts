// End to end: the container image, built from the Dockerfile and run the way
// the manifests run it (read-only root, UID 65532, no capabilities, no new
// privileges) against a real kube-apiserver. Without a registry, the bases
// come from scripts/base-image.sh (the distroless layout, from local files).
// Every container and image is named piw-e2e-image-*: leftovers of a killed run
// are removed at the start of the next one (and by .ci/run on exit).
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { type Cluster, freePort, httpsStatus, startCluster, tempDir, until, webhookConfiguration } from '../helpers/cluster.js';
import { spawnTied } from '../helpers/child.js';
import { createTestPki } from '../helpers/tls.js';

const PREFIX = 'piw-e2e-image';
const ROLE = 'arn:aws:iam::111122223333:role/e2e-image';
const LABEL = 'piw-e2e-image';
const CONFIG = 'a-pod-identity-webhook-image-e2e';
const GRACE_SECONDS = 30;

function docker(args: string[], env: Record<string, string> = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('docker', args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' };
}

function removeLeftovers(): void {
  const containers = docker(['ps', '-aq', '--filter', `name=${PREFIX}-`]).stdout.split('\n').filter(Boolean);
  if (containers.length > 0) docker(['rm', '-f', ...containers]);
  const images = docker(['images', '-q', PREFIX]).stdout.split('\n').filter(Boolean);
  if (images.length > 0) docker(['rmi', '-f', ...new Set(images)]);
}

const info = docker(['info', '--format', '{{.ServerVersion}}']);
const dockerMissing = info.status === 0 ? undefined : `Docker is not available (${info.stderr.trim().split('\n')[0] ?? 'docker info failed'})`;
if (dockerMissing) {
  if (process.env['CI'] === 'true') t.fail(`image test: ${dockerMissing}`);
  else t.skip(`image test: ${dockerMissing}`, () => undefined);
} else {
  const started = await startCluster('e2e-image');
  if ('skip' in started) {
    t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
  } else {
    await t.test('the container image against a real API server', async (t) => run(t, started.cluster));
  }
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  t.teardown(() => cluster.down());
  removeLeftovers();
  const id = `${PREFIX}-${process.pid}-${Date.now().toString(36)}`;
  const image = `${PREFIX}:${id.slice(PREFIX.length + 1)}`;
  t.teardown(removeLeftovers);
  process.once('exit', () => void spawnSync('docker', ['rm', '-f', `${id}-serve`, `${id}-webhook`], { stdio: 'ignore' }));

  // Files the container's user (65532) can read: certificates and an admin kubeconfig with embedded data.
  const dir = tempDir('piw-image-');
  const pki = createTestPki();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
  const serving = pki.issue('webhook');
  chmodSync(dir, 0o755);
  copyFileSync(serving.certFile, join(dir, 'tls.crt'));
  copyFileSync(serving.keyFile, join(dir, 'tls.key'));
  const flat = execFileSync('kubectl', ['--kubeconfig', cluster.kubeconfig, 'config', 'view', '--raw', '--flatten'], { encoding: 'utf8' });
  writeFileSync(join(dir, 'kubeconfig'), flat);
  for (const f of ['tls.crt', 'tls.key', 'kubeconfig']) chmodSync(join(dir, f), 0o644);

  const bases = spawnSync('scripts/base-image.sh', [], { encoding: 'utf8' });
  t.equal(bases.status, 0, bases.status === 0 ? 'scripts/base-image.sh' : `scripts/base-image.sh: ${bases.stderr}`);
  // The classic builder: it needs no buildx, and the Dockerfile needs nothing BuildKit-only.
  const build = docker(['build', '--network', 'host', '--build-arg', 'BUILD_IMAGE=pod-identity-webhook-base:build', '--build-arg', 'BASE_IMAGE=pod-identity-webhook-base:runtime', '-t', image, '.'], { DOCKER_BUILDKIT: '0' });
  t.equal(build.status, 0, build.status === 0 ? 'docker build' : `docker build: ${build.stderr.slice(-4000)}`);
  if (build.status !== 0) return;
  const size = Number(docker(['image', 'inspect', '--format', '{{.Size}}', image]).stdout.trim());
  t.comment(`image size ${(size / 1e6).toFixed(1)} MB`);
  const user = docker(['image', 'inspect', '--format', '{{.Config.User}}', image]).stdout.trim();
  t.equal(user, '65532:65532', 'the image runs as 65532:65532');
  const tools = docker(['run', '--rm', '--entrypoint', '/nodejs/bin/node', image, '-e',
    "const fs=require('fs');console.log(JSON.stringify(['/bin/sh','/usr/local/bin/npm','/app/node_modules/typescript','/app/node_modules/tap'].filter((f)=>fs.existsSync(f))))"]);
  t.same(JSON.parse(tools.stdout || 'null'), [], 'no shell, no npm, no dev dependencies in the image');

  const locked = ['--read-only', '--user', '65532:65532', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges'];
  const hardened = [...locked, '--network', 'host', '-v', `${dir}:/config:ro`];

  // The compile cache made at build time is what serve loads its modules from,
  // read-only (Node's own debug output says which cached code it accepted).
  // With no API server to find, serve stops once its modules are loaded.
  const cached = docker(['run', '--rm', ...locked, '-e', 'NODE_DEBUG_NATIVE=COMPILE_CACHE', image]);
  const accepted = [...cached.stderr.matchAll(/code cache for ESM file:\/\/\/app\/(\S+) was accepted/g)].map((m) => m[1]);
  const fromCache = accepted.includes('dist/cli.js') && accepted.some((f) => /^dist\/lib\/serve-[\w-]+\.js$/.test(f ?? ''));
  t.ok(fromCache, `serve's modules come from /app/compile-cache (${accepted.length} accepted)${fromCache ? '' : `\n${cached.stderr.slice(-2000)}`}`);
  t.notMatch(cached.stderr, /was rejected|Cannot create cache directory/, 'no cached code is rejected');
  t.match(cached.stderr, /no API server/, 'serve stopped for want of an API server');
  const flags = ['--kubeconfig', '/config/kubeconfig', '--tls-cert', '/config/tls.crt', '--tls-key', '/config/tls.key', '--namespace', 'pod-identity-webhook', '--bind-address', '127.0.0.1'];

  /** `docker run --rm` in the foreground, tied to this test; resolves when /healthz answers 200. */
  const start = async (name: string, entry: string[], port: number, metricsPort: number): Promise<() => string> => {
    const child = spawnTied('docker', ['run', '--rm', '--name', name, ...hardened, ...entry, image, ...flags, '--port', String(port), '--metrics-port', String(metricsPort)], { stdio: ['ignore', 'pipe', 'pipe'] }, 'TERM');
    let output = '';
    child.stdout!.on('data', (c) => (output += c));
    child.stderr!.on('data', (c) => (output += c));
    const began = process.hrtime.bigint();
    await until(`${name} to answer /healthz`, async () => ((await httpsStatus(port, '/healthz', pki.caCert)) === 200 ? true : undefined), {
      giveUpIf: () => (child.exitCode !== null ? `docker run exited (${child.exitCode}): ${output}` : undefined),
    });
    t.comment(`${name}: /healthz after ${(Number(process.hrtime.bigint() - began) / 1e6).toFixed(0)} ms (docker run included)`);
    return () => output;
  };

  const ns = `image-${Date.now().toString(36)}`;
  await cluster.core.createNamespace({ body: { metadata: { name: ns, labels: { [LABEL]: 'true' } } } });
  await cluster.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  let n = 0;
  const mutatedThrough = async (port: number): Promise<V1Pod> => {
    const name = `${CONFIG}-${port}`;
    await cluster.admission.createMutatingWebhookConfiguration({
      body: webhookConfiguration({ name, url: `https://127.0.0.1:${port}/mutate`, ca: pki.caCert, label: LABEL }),
    });
    try {
      return await until('a pod mutated through the container', async () => {
        // failurePolicy Fail: a webhook the API server cannot reach rejects the pod.
        const pod: V1Pod = await cluster.core.createNamespacedPod({
          namespace: ns,
          body: { metadata: { name: `pod-${n++}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } },
        }).catch(() => ({}) as V1Pod);
        return pod.spec?.containers[0]?.env?.some((e) => e.name === 'AWS_ROLE_ARN') ? pod : undefined;
      }, { everyMs: 300 });
    } finally {
      await cluster.admission.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
    }
  };

  const stop = (name: string): { seconds: number; status: number } => {
    const began = process.hrtime.bigint();
    // docker stop sends SIGTERM, waits GRACE_SECONDS, then SIGKILL (exit code 137).
    const r = docker(['stop', '--time', String(GRACE_SECONDS), name]);
    return { status: r.status, seconds: Number(process.hrtime.bigint() - began) / 1e9 };
  };

  await t.test('ENTRYPOINT: serve, hardened, mutates pods and stops cleanly', async (t) => {
    const name = `${id}-serve`;
    const port = await freePort();
    const logs = await start(name, [], port, await freePort());
    const pod = await mutatedThrough(port);
    t.equal(pod.spec?.containers[0]?.env?.find((e) => e.name === 'AWS_ROLE_ARN')?.value, ROLE, 'the API server called the container and applied its patch');
    const stats = docker(['stats', '--no-stream', '--format', '{{.MemUsage}}', name]);
    t.comment(`${name}: memory at rest ${stats.stdout.trim()}`);
    // --rm removes the container on exit; watch its exit code with docker wait, started before stop.
    const wait = spawnSync('docker', ['inspect', '--format', '{{.State.Running}}', name], { encoding: 'utf8' });
    t.equal(wait.stdout.trim(), 'true', 'running before stop');
    const waiter = new Promise<string>((resolve) => {
      const w = spawnTied('docker', ['wait', name], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      w.stdout!.on('data', (c) => (out += c));
      w.once('exit', () => resolve(out.trim()));
    });
    await until('docker wait to attach', async () => (docker(['inspect', name]).status === 0 ? true : undefined));
    const stopped = stop(name);
    t.equal(stopped.status, 0, 'docker stop succeeded');
    t.ok(stopped.seconds < GRACE_SECONDS, `docker stop returned before the ${GRACE_SECONDS}s grace period ran out (${stopped.seconds.toFixed(1)}s)`);
    const code = await waiter;
    t.equal(code, '0', code === '0' ? 'the container exited with code 0 on SIGTERM' : `exit code ${code}\n${logs()}`);
  });

  await t.test("/webhook: the reference's entry point", async (t) => {
    const name = `${id}-webhook`;
    const port = await freePort();
    const logs = await start(name, ['--entrypoint', '/webhook'], port, await freePort());
    const pod = await mutatedThrough(port);
    t.equal(pod.spec?.containers[0]?.env?.find((e) => e.name === 'AWS_ROLE_ARN')?.value, ROLE, 'pods are mutated through /webhook');
    const stopped = stop(name);
    t.equal(stopped.status, 0, stopped.status === 0 ? 'docker stop succeeded' : `docker stop failed\n${logs()}`);
  });
}
