// npm run storm: hostile pods through a real kube-apiserver. Each round creates
// six pods whose eks.amazonaws.com/skip-containers annotation lists 300,000
// container names (2.3 MB, under the API server's 3 MiB request limit) and,
// while they are in flight, ordinary pods one after another. Prints how long an
// ordinary pod's creation took, with and without the storm, how often the API
// server failed open (the webhook did not answer within timeoutSeconds), and
// serve's peak RSS.
// The API server calls mutating webhooks before it validates the object, so the
// hostile pods reach the webhook and are then refused (422: annotations over
// 256 KiB) by the API server itself.
//   STORM_ROUNDS=3          rounds of six hostile pods
//   STORM_CLI=path/cli.js   another build's cli.js under the same storm
// Needs the test control plane (scripts/controlplane.sh prepare).
import { type ChildProcess, execFileSync } from 'node:child_process';
import type { V1Pod } from '@kubernetes/client-node';
import { startCluster, until, webhookConfiguration } from '../test/helpers/cluster.js';
import { createTestPki } from '../test/helpers/tls.js';
import { memory, startServe, stop } from './lib.js';

const ROUNDS = Number(process.env['STORM_ROUNDS'] ?? 3);
const CLI = process.env['STORM_CLI'] ?? 'dist/cli.js';
const HOSTILE_PODS = 6;
const NAMES = 300_000;
const LABEL = 'piw-storm';
const ROLE = 'arn:aws:iam::111122223333:role/storm';

/** The API server's own counters for the webhook: calls, and calls that failed open. */
function apiServerCounters(kubeconfig: string): { calls: number; failOpen: number } {
  const text = execFileSync('kubectl', ['--kubeconfig', kubeconfig, 'get', '--raw', '/metrics'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const sum = (pattern: RegExp): number => text.split('\n').filter((l) => pattern.test(l)).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
  return {
    calls: sum(/^apiserver_admission_webhook_admission_duration_seconds_count\{.*name="pod-identity-webhook/),
    failOpen: sum(/^apiserver_admission_webhook_fail_open_count\{/),
  };
}

async function main(): Promise<void> {
  const controlPlane = await startCluster('storm');
  if ('skip' in controlPlane) throw new Error(`npm run storm needs the test control plane: ${controlPlane.skip}`);
  const { cluster } = controlPlane;
  const { core, admission, kubeconfig } = cluster;
  const pki = createTestPki();
  const ca = pki.caCert;
  let serve: ChildProcess | undefined;
  try {
    const started = await startServe({ kubeconfigPath: kubeconfig, cert: pki.issue('storm'), ca, cli: CLI });
    serve = started.child;
    const { port } = started;
    await admission.createMutatingWebhookConfiguration({ body: webhookConfiguration({ name: 'piw-storm', url: `https://127.0.0.1:${port}/mutate`, ca, label: LABEL, failurePolicy: 'Ignore' }) });
    const namespace = `storm-${Date.now().toString(36)}`;
    await core.createNamespace({ body: { metadata: { name: namespace, labels: { [LABEL]: 'true' } } } });
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
    let count = 0;
    const pod = (annotations: Record<string, string> = {}): V1Pod => ({
      metadata: { name: `pod-${count++}`, annotations },
      spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] },
    });
    /** Creates an ordinary pod and returns how long it took; it must come back mutated. */
    const ordinary = async (): Promise<number> => {
      const t0 = performance.now();
      const created = await core.createNamespacedPod({ namespace, body: pod() });
      const ms = performance.now() - t0;
      return created.spec?.containers[0]?.env?.some((e) => e.name === 'AWS_ROLE_ARN') ? ms : NaN;
    };
    // The webhook learns of the ServiceAccount through its watch: wait for a mutated pod.
    await until('a pod to be mutated', async () => (Number.isNaN(await ordinary()) ? undefined : true));
    const quiet: number[] = [];
    for (let i = 0; i < 5; i++) quiet.push(await ordinary());
    const skip = Array.from({ length: NAMES }, (_, i) => `c${i}`).join(',');
    const before = apiServerCounters(kubeconfig);
    const rssBefore = memory(serve.pid!).now;
    const during: number[] = [];
    const answers = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round++) {
      const hostile = Array.from({ length: HOSTILE_PODS }, () =>
        core.createNamespacedPod({ namespace, body: pod({ 'eks.amazonaws.com/skip-containers': skip }) }).then(
          () => 'created',
          (err: { code?: number }) => `HTTP ${err.code ?? '?'}`,
        ));
      // Ordinary pods one after another for as long as the hostile ones are in flight.
      let pending = true;
      const all = Promise.all(hostile).finally(() => (pending = false));
      while (pending) during.push(await ordinary());
      for (const answer of await all) answers.set(answer, (answers.get(answer) ?? 0) + 1);
    }
    const after = apiServerCounters(kubeconfig);
    const ms = (list: number[]): string => list.map((v) => (Number.isNaN(v) ? 'not mutated' : v.toFixed(0))).join(', ');
    const sorted = [...during].sort((a, b) => a - b);
    const spread = `${during.length} created, median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(0)} ms, slowest ${sorted.at(-1)?.toFixed(0)} ms${during.some(Number.isNaN) ? `, ${during.filter(Number.isNaN).length} NOT mutated` : ''}`;
    console.log(`serve: ${CLI}; ${ROUNDS} rounds of ${HOSTILE_PODS} pods with ${NAMES.toLocaleString('en')} skip-containers names (${(skip.length / 1e6).toFixed(1)} MB) each`);
    console.log(`ordinary pods: alone ${ms(quiet)} ms; during the storm, one after another: ${spread}`);
    console.log(`hostile pods: ${[...answers].map(([k, v]) => `${k} × ${v}`).join(', ')}`);
    console.log(`API server: ${after.calls - before.calls} calls to the webhook, ${after.failOpen - before.failOpen} failed open`);
    console.log(`serve RSS: before ${rssBefore.toFixed(0)} MiB, peak ${memory(serve.pid!).peak.toFixed(0)} MiB`);
  } finally {
    if (serve) await stop(serve);
    await cluster.down();
  }
}

await main();
