// The Helm chart (charts/pod-identity-webhook), rendered by a real helm built
// from its Go module (scripts/controlplane.sh build): lint, the values schema,
// the certificate modes, and default values kept in step with manifests/
// (`kubectl kustomize manifests`), with the intended differences listed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = path.join(ROOT, 'charts', 'pod-identity-webhook');
const CACHE = path.join(process.env['XDG_CACHE_HOME'] ?? path.join(os.homedir(), '.cache'), 'pod-identity-webhook');
const HELM = path.join(CACHE, 'bin', 'helm');
const NS = 'pod-identity-webhook';
const RELEASE = 'pod-identity-webhook';
const inCI = Boolean(process.env['CI'] && process.env['CI'] !== 'false');

interface KObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

function parse(text: string): KObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KObject | null)
    .filter((o): o is KObject => o !== null && o !== undefined);
}

function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function helm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return run(HELM, args);
}

function template(...set: string[]): KObject[] {
  const r = helm('template', RELEASE, CHART, '--namespace', NS, ...set.flatMap((s) => ['--set', s]));
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parse(r.stdout);
}

const key = (o: KObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const find = (objects: KObject[], kind: string, name = RELEASE): KObject | undefined => objects.find((o) => o.kind === kind && o.metadata.name === name);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const missing = !existsSync(HELM) ? `no helm at ${HELM} (scripts/controlplane.sh build builds it)` : undefined;
if (missing && inCI) throw new Error(`${missing}, and CI is set: the chart tests must run in CI`);

t.test('helm lint', { skip: missing ?? false }, async (t) => {
  const r = helm('lint', CHART, '--strict');
  t.equal(r.status, 0, `helm lint passes:\n${r.stdout}${r.stderr}`);
});

t.test('values.schema.json refuses bad values with a clear message', { skip: missing ?? false }, async (t) => {
  for (const [set, message] of [
    ['mutatingWebhook.failurePolicy=Sometimes', /\/mutatingWebhook\/failurePolicy.*'Ignore', 'Fail'/],
    ['replicaCont=3', /additional properties 'replicaCont' not allowed/],
    ['pki.mode=self-signed', /\/pki\/mode/],
    ['config.tokenExpiration=60', /\/config\/tokenExpiration/],
    ['config.shutdownDelay=soon', /\/config\/shutdownDelay/],
    ['config.ports.webhook=70000', /\/config\/ports\/webhook/],
    ['config.extraArgs[0]=rm -rf', /\/config\/extraArgs\/0/],
  ] as const) {
    const r = helm('template', RELEASE, CHART, '--set', set);
    t.not(r.status, 0, `${set} is refused`);
    t.match(r.stderr, /values don't meet the specifications of the schema/, `${set}: a schema error`);
    t.match(r.stderr, message, `${set}: names the value`);
  }
});

t.test('certificate modes', { skip: missing ?? false }, async (t) => {
  const argsOf = (objects: KObject[]): string[] => (find(objects, 'Deployment') as Any).spec.template.spec.containers[0].args;
  const managed = template();
  t.ok(argsOf(managed).includes('--manage-certificates'), 'managed by default');
  t.ok(find(managed, 'Secret') && find(managed, 'Lease'), 'empty Secret and Lease');
  t.notOk((find(managed, 'MutatingWebhookConfiguration') as Any).webhooks[0].clientConfig.caBundle, 'no caBundle (the webhook writes it)');

  for (const set of [['pki.mode=cert-manager'], ['pki.certManager.enabled=true']]) {
    const o = template(...set);
    t.notOk(argsOf(o).includes('--manage-certificates'), `${set}: file mode`);
    t.ok(argsOf(o).includes('--tls-cert=/etc/webhook/certs/tls.crt'), `${set}: --tls-cert`);
    t.equal((find(o, 'Certificate', `${RELEASE}-cert`) as Any)?.spec.secretName, `${RELEASE}-cert`, `${set}: a Certificate`);
    t.equal(find(o, 'MutatingWebhookConfiguration')?.metadata.annotations?.['cert-manager.io/inject-ca-from'], `${NS}/${RELEASE}-cert`, `${set}: CA injected`);
    t.notOk(find(o, 'Secret') || find(o, 'Lease') || find(o, 'Role', `${RELEASE}-certificates`), `${set}: no managed-certificate objects`);
    t.equal((find(o, 'ClusterRole') as Any).rules.length, 1, `${set}: no write access to the webhook configuration`);
  }
  const issuer = template('pki.certManager.enabled=true', 'pki.certManager.existingIssuer.enabled=true', 'pki.certManager.existingIssuer.name=corp', 'pki.certManager.existingIssuer.kind=ClusterIssuer');
  t.same((find(issuer, 'Certificate', `${RELEASE}-cert`) as Any).spec.issuerRef, { group: 'cert-manager.io', kind: 'ClusterIssuer', name: 'corp' }, 'existing issuer');
  t.notOk(issuer.some((o) => o.kind === 'Issuer'), 'no Issuer of its own');

  const existing = template('pki.existingSecret=my-tls', 'pki.caBundle=Y2E=');
  t.same((find(existing, 'Deployment') as Any).spec.template.spec.volumes, [{ name: 'cert', secret: { secretName: 'my-tls', defaultMode: 288 } }], 'existingSecret mounted');
  t.equal((find(existing, 'MutatingWebhookConfiguration') as Any).webhooks[0].clientConfig.caBundle, 'Y2E=', 'pki.caBundle');
  const r = helm('template', RELEASE, CHART, '--set', 'pki.mode=existingSecret');
  t.match(r.stderr, /pki.existingSecret is required/, 'existingSecret mode without a Secret name is refused');
});

t.test('values reach the objects', { skip: missing ?? false }, async (t) => {
  const o = template(
    'mutatingWebhook.url=https://10.0.0.1:8443/mutate',
    'mutatingWebhook.failurePolicy=Fail',
    'config.defaultAwsRegion=eu-west-1',
    'config.logFormat=text',
    'config.extraArgs[0]=--max-connections=5',
    'config.watchConfigMap=true',
    'serviceMonitor.enabled=true',
    'replicaCount=3',
  );
  const w = (find(o, 'MutatingWebhookConfiguration') as Any).webhooks[0];
  t.same(w.clientConfig, { url: 'https://10.0.0.1:8443/mutate' }, 'mutatingWebhook.url replaces the Service');
  t.equal(w.failurePolicy, 'Fail');
  const d = find(o, 'Deployment') as Any;
  t.equal(d.spec.replicas, 3);
  const args: string[] = d.spec.template.spec.containers[0].args;
  for (const a of ['--aws-default-region=eu-west-1', '--log-format=text', '--max-connections=5', '--watch-config-map', '--certificate-ip-addresses=10.0.0.1']) t.ok(args.includes(a), a);
  const byName = (template('mutatingWebhook.url=https://webhook.example.com/mutate').find((x) => x.kind === 'Deployment') as Any).spec.template.spec.containers[0].args as string[];
  t.ok(byName.includes('--certificate-dns-names=webhook.example.com'), 'managed certificates name the host of mutatingWebhook.url');
  t.notOk(byName.some((a) => a.startsWith('--certificate-ip-addresses')));
  t.notOk((find(template(), 'Deployment') as Any).spec.template.spec.containers[0].args.some((a: string) => a.startsWith('--certificate-')), 'no extra names without a URL');
  t.same((find(o, 'Role') as Any).rules[0].resources, ['configmaps'], 'ConfigMap Role with watchConfigMap');
  t.equal(find(o, 'ServiceMonitor')?.apiVersion, 'monitoring.coreos.com/v1', 'ServiceMonitor');
  t.notOk(find(template(), 'ServiceMonitor'), 'no ServiceMonitor by default');
});

// ------------------------------------------------- chart == manifests/ ---

/** Objects in manifests/ only, on purpose. */
const ONLY_MANIFESTS = new Set(['Namespace//pod-identity-webhook']); // helm install --create-namespace
/** Objects in the chart only, on purpose. */
const ONLY_CHART = new Set([`Pod/${NS}/${RELEASE}-test-readyz`]); // the `helm test` hook

/** The meaningful part of each kind, compared as is. Labels differ on purpose: the chart adds the Helm ones and selects on app.kubernetes.io/instance too. */
function meaningful(o: KObject): unknown {
  const x = o as Any;
  switch (o.kind) {
    case 'Deployment': {
      const spec = x.spec.template.spec;
      const c = spec.containers[0];
      return {
        replicas: x.spec.replicas,
        strategy: x.spec.strategy,
        annotations: x.spec.template.metadata.annotations,
        skip: x.spec.template.metadata.labels['eks.amazonaws.com/skip-pod-identity-webhook'],
        pod: { ...spec, affinity: undefined, containers: undefined, volumes: spec.volumes ?? [] },
        container: { ...c, volumeMounts: c.volumeMounts ?? [] },
      };
    }
    case 'ClusterRole':
    case 'Role':
      return x.rules;
    case 'ClusterRoleBinding':
    case 'RoleBinding':
      return { roleRef: x.roleRef, subjects: x.subjects };
    case 'MutatingWebhookConfiguration':
      return x.webhooks;
    case 'Service':
      return { type: x.spec.type ?? 'ClusterIP', ports: x.spec.ports };
    case 'NetworkPolicy':
      return { ingress: x.spec.ingress, policyTypes: x.spec.policyTypes };
    case 'PodDisruptionBudget':
      return x.spec.minAvailable;
    case 'Secret':
      return { type: x.type, data: x.data };
    default:
      return x.spec;
  }
}

function kustomize(): KObject[] | undefined {
  const r = spawnSync('kubectl', ['kustomize', path.join(ROOT, 'manifests')], { encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    if (inCI) throw new Error('kubectl is not installed, and CI is set');
    return undefined;
  }
  if (r.status !== 0) throw new Error(`kubectl kustomize failed: ${r.stderr}`);
  return parse(r.stdout);
}

const manifests = missing ? undefined : kustomize();
t.test('default values render what manifests/ holds', { skip: missing ?? (manifests ? false : 'kubectl is not installed') }, async (t) => {
  if (!manifests) return;
  const chart = template('image.repository=pod-identity-webhook', 'image.tag=latest');
  const chartKeys = new Map(chart.map((o) => [key(o), o]));
  const manifestKeys = new Map(manifests.map((o) => [key(o), o]));
  t.same([...manifestKeys.keys()].filter((k) => !chartKeys.has(k)).sort(), [...ONLY_MANIFESTS].sort(), 'objects only in manifests/ are the intended ones');
  t.same([...chartKeys.keys()].filter((k) => !manifestKeys.has(k)).sort(), [...ONLY_CHART].sort(), 'objects only in the chart are the intended ones');
  for (const [k, m] of manifestKeys) {
    const c = chartKeys.get(k);
    if (!c) continue;
    t.equal(c.apiVersion, m.apiVersion, `${k}: apiVersion`);
    t.same(meaningful(c), meaningful(m), `${k}: same spec`);
  }
  // Anti-affinity: both prefer one pod per node; the selector labels differ (intended).
  const aff = (objects: KObject[]): Any => (find(objects, 'Deployment') as Any).spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0];
  t.equal(aff(chart).podAffinityTerm.topologyKey, aff(manifests).podAffinityTerm.topologyKey, 'anti-affinity topology');
  t.match(aff(chart).podAffinityTerm.labelSelector.matchLabels, aff(manifests).podAffinityTerm.labelSelector.matchLabels, 'chart selector includes the manifests one');
});
