// Checks of manifests/: the base and its two variants (config-map mode,
// cert-manager). Each variant is checked twice when possible:
//  - "files": the YAML files parsed directly, with the few kustomize features
//    the manifests use (resources, components, patches) applied by hand below;
//    this always runs, with or without kubectl;
//  - "kustomize": the output of `kubectl kustomize`, when kubectl is installed.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Deployment,
  V1LabelSelector,
  V1MutatingWebhookConfiguration,
  V1PodDisruptionBudget,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  V1Service,
} from '@kubernetes/client-node';
import t, { type Test } from 'tap';
import { parse as parseYaml, parseAllDocuments } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MANIFESTS = path.join(ROOT, 'manifests');
const NS = 'pod-identity-webhook';
const NAME = 'pod-identity-webhook';
const WEBHOOK_NAME = 'pod-identity-webhook.amazonaws.com';
const SKIP_LABEL = 'eks.amazonaws.com/skip-pod-identity-webhook';
const COMMON_LABELS = { 'app.kubernetes.io/name': NAME };
const CERT_SECRET = 'pod-identity-webhook-cert';
/** Self-managed certificates (all variants but cert-manager): Secret, Lease and their Role. */
const MANAGED_SECRET = 'pod-identity-webhook';
const LEASE = 'pod-identity-webhook';
const CERTS_ROLE = 'pod-identity-webhook-certificates';
const managed = (variant: Variant): boolean => variant !== 'cert-manager';
const UID = 65532;

/** The YAML shape (client-node's type renames `from` to `_from`). */
interface NetworkPolicy {
  apiVersion: string;
  spec?: {
    podSelector?: V1LabelSelector;
    policyTypes?: string[];
    ingress?: { from?: { namespaceSelector?: V1LabelSelector; podSelector?: V1LabelSelector; ipBlock?: unknown }[]; ports?: { port?: number | string; protocol?: string }[] }[];
  };
}

type Variant = 'base' | 'config-map-mode' | 'cert-manager' | 'client-ca';
const VARIANT_DIRS: Record<Variant, string> = {
  base: MANIFESTS,
  'config-map-mode': path.join(MANIFESTS, 'overlays', 'config-map-mode'),
  'cert-manager': path.join(MANIFESTS, 'overlays', 'cert-manager'),
  'client-ca': path.join(MANIFESTS, 'overlays', 'client-ca'),
};

interface KObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']);

// ---------------------------------------------------------------- loading ---

function parseDocs(text: string, source: string): KObject[] {
  const out: KObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]?.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const obj = value as KObject;
    if (typeof obj.kind !== 'string' || typeof obj.metadata?.name !== 'string') throw new Error(`${source}: not a Kubernetes object`);
    out.push(obj);
  }
  return out;
}

interface Kustomization {
  kind?: string;
  namespace?: string;
  resources?: string[];
  components?: string[];
  labels?: { pairs: Record<string, string>; includeSelectors?: boolean; includeTemplates?: boolean }[];
  patches?: { path?: string; patch?: string; target?: { group?: string; version?: string; kind?: string; name?: string } }[];
  images?: { name: string; newName?: string; newTag?: string }[];
}

function readKustomization(dir: string): Kustomization {
  return parseYaml(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
}

type JsonValue = unknown;

/** RFC 6902 test/add/replace/remove, enough for the patches in manifests/. */
function applyJsonPatch(target: JsonValue, ops: { op: string; path: string; value?: unknown }[]): void {
  for (const op of ops) {
    const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const key = parts.pop();
    if (key === undefined) throw new Error(`bad path ${op.path}`);
    let parent = target as Record<string, unknown> | unknown[];
    for (const p of parts) parent = (parent as Record<string, unknown>)[p] as Record<string, unknown>;
    if (parent === undefined) throw new Error(`path ${op.path} does not exist`);
    const list = Array.isArray(parent) ? parent : undefined;
    const map = parent as Record<string, unknown>;
    switch (op.op) {
      case 'test':
        if (JSON.stringify(map[key]) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
        break;
      case 'add':
        if (list) list.splice(key === '-' ? list.length : Number(key), 0, op.value);
        else map[key] = op.value;
        break;
      case 'replace':
        map[key] = op.value;
        break;
      case 'remove':
        if (list) list.splice(Number(key), 1);
        else delete map[key];
        break;
      default:
        throw new Error(`unsupported op ${op.op}`);
    }
  }
}

/** Strategic merge without list semantics: maps merge, everything else replaces. */
function deepMerge(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)) {
      deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else {
      into[k] = v;
    }
  }
}

function applyPatches(dir: string, k: Kustomization, objects: KObject[]): void {
  for (const p of k.patches ?? []) {
    if (p.path !== undefined && p.target) {
      const ops = parseYaml(readFileSync(path.join(dir, p.path), 'utf8')) as { op: string; path: string; value?: unknown }[];
      const targets = objects.filter((o) => o.kind === p.target?.kind && (p.target.name === undefined || o.metadata.name === p.target.name));
      if (targets.length === 0) throw new Error(`${p.path} matches nothing`);
      for (const target of targets) applyJsonPatch(target, ops);
    } else if (p.patch !== undefined && !p.target) {
      // Only `$patch: delete` of one object is used without a target.
      const [patch] = parseDocs(p.patch, dir);
      if (!patch || patch['$patch'] !== 'delete') throw new Error(`unsupported inline patch in ${dir}`);
      const i = objects.findIndex((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
      if (i < 0) throw new Error(`${dir} deletes a missing ${patch.kind}/${patch.metadata.name}`);
      objects.splice(i, 1);
    } else if (p.path !== undefined) {
      const [patch] = parseDocs(readFileSync(path.join(dir, p.path), 'utf8'), p.path);
      if (!patch) throw new Error(`${p.path} is empty`);
      const target = objects.find((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
      if (!target) throw new Error(`${p.path} patches a missing ${patch.kind}/${patch.metadata.name}`);
      deepMerge(target as unknown as Record<string, unknown>, patch as unknown as Record<string, unknown>);
    } else if (p.patch !== undefined && p.target) {
      const ops = parseYaml(p.patch) as { op: string; path: string; value?: unknown }[];
      const targets = objects.filter((o) => o.kind === p.target?.kind && (p.target.name === undefined || o.metadata.name === p.target.name));
      if (targets.length === 0) throw new Error(`inline patch in ${dir} matches nothing`);
      for (const target of targets) applyJsonPatch(target, ops);
    } else {
      throw new Error(`unsupported patch in ${dir}`);
    }
  }
}

/** The objects of a kustomization, built from its files without kubectl. */
function loadFromFiles(dir: string): KObject[] {
  const k = readKustomization(dir);
  const objects: KObject[] = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (statSync(p).isDirectory()) objects.push(...loadFromFiles(p));
    else objects.push(...parseDocs(readFileSync(p, 'utf8'), p));
  }
  for (const c of k.components ?? []) {
    const cdir = path.join(dir, c);
    const ck = readKustomization(cdir);
    if (ck.kind !== 'Component') throw new Error(`${c} is not a kustomize Component`);
    for (const r of ck.resources ?? []) objects.push(...parseDocs(readFileSync(path.join(cdir, r), 'utf8'), r));
    applyPatches(cdir, ck, objects);
  }
  applyPatches(dir, k, objects);
  return objects;
}

let kubectlMissing = false;
/** `kubectl kustomize DIR`, or undefined when kubectl is not installed. */
function render(dir: string): KObject[] | undefined {
  if (kubectlMissing) return undefined;
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    // A missing prerequisite, not a broken product: a skip, except in CI, which must run it.
    if (process.env['CI'] && process.env['CI'] !== 'false') throw new Error('kubectl is not installed, and CI is set: the kustomize checks must run in CI');
    kubectlMissing = true;
    return undefined;
  }
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${r.stderr}`);
  return parseDocs(r.stdout, `kubectl kustomize ${dir}`);
}

// ---------------------------------------------------------------- helpers ---

function selectorMatches(selector: V1LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !(e.values ?? []).includes(value as string)) return false;
        break;
      case 'NotIn':
        if (has && (e.values ?? []).includes(value as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new Error(`unknown operator ${e.operator}`);
    }
  }
  return true;
}

function only<T>(objects: KObject[], kind: string, name = NAME): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind}/${name}, found ${found.length}`);
  return found[0] as unknown as T;
}

const sorted = (xs: readonly string[] | undefined): string[] => [...(xs ?? [])].sort();

function ruleGrants(rule: V1PolicyRule, resource: string): boolean {
  const resources = rule.resources ?? [];
  const groups = rule.apiGroups ?? [];
  return (groups.includes('') || groups.includes('*')) && (resources.includes(resource) || resources.includes('*'));
}

// ------------------------------------------------------------- assertions ---

function checkInstall(t: Test, objects: KObject[], variant: Variant, mode: 'files' | 'kustomize'): void {
  const kinds = (kind: string): KObject[] => objects.filter((o) => o.kind === kind);

  t.test('namespace and names', async (t) => {
    t.ok(only(objects, 'Namespace'), 'Namespace pod-identity-webhook');
    t.ok(only(objects, 'ServiceAccount'), 'ServiceAccount');
    for (const o of objects) {
      if (CLUSTER_SCOPED.has(o.kind)) t.notOk(o.metadata.namespace, `${o.kind}/${o.metadata.name} is cluster-scoped`);
      else t.equal(o.metadata.namespace, NS, `${o.kind}/${o.metadata.name} is in ${NS}`);
      if (mode === 'kustomize') t.match(o.metadata.labels ?? {}, COMMON_LABELS, `${o.kind}/${o.metadata.name} has the common labels`);
    }
    if (managed(variant)) {
      t.equal(kinds('Secret').length, 1, 'one Secret: the empty one the webhook fills');
      const secret = only<KObject>(objects, 'Secret', MANAGED_SECRET);
      t.equal(secret['type'], 'Opaque');
      t.notOk(secret['data'] ?? secret['stringData'], 'shipped without data (the webhook fills it)');
      const lease = only<KObject>(objects, 'Lease', LEASE);
      t.equal(lease.apiVersion, 'coordination.k8s.io/v1');
      t.same(lease['spec'], {}, 'empty Lease spec');
    } else {
      t.equal(kinds('Secret').length, 0, 'no Secret is shipped (cert-manager issues it)');
      t.equal(kinds('Lease').length, 0, 'no Lease');
    }
  });

  t.test('RBAC: ServiceAccounts cluster-wide, ConfigMaps only in config-map mode, Secrets only by name', async (t) => {
    const cr = only<V1ClusterRole>(objects, 'ClusterRole');
    t.equal(cr.rules?.length, managed(variant) ? 2 : 1, 'rules');
    if (managed(variant)) {
      t.same(
        cr.rules?.[1],
        { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [NAME], verbs: ['get', 'list', 'watch', 'update', 'patch'] },
        'its own MutatingWebhookConfiguration only (to write the caBundle)',
      );
    }
    const rule = cr.rules?.[0] as V1PolicyRule;
    t.same(rule.apiGroups, [''], 'core API group');
    t.same(rule.resources, ['serviceaccounts']);
    t.same(sorted(rule.verbs), ['get', 'list', 'watch']);
    t.notOk(rule.resourceNames, 'no resourceNames');
    t.equal(kinds('ClusterRole').length, 1, 'only one ClusterRole');

    const crb = only<V1ClusterRoleBinding>(objects, 'ClusterRoleBinding');
    t.same(crb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: NAME });
    t.same(crb.subjects, [{ kind: 'ServiceAccount', name: NAME, namespace: NS }]);

    const roles = kinds('Role') as unknown as V1Role[];
    const bindings = kinds('RoleBinding') as unknown as V1RoleBinding[];
    if (managed(variant)) {
      const role = only<V1Role>(objects, 'Role', CERTS_ROLE);
      t.equal(role.metadata?.namespace, NS);
      const verbs = ['get', 'list', 'watch', 'update', 'patch'];
      t.same(
        role.rules,
        [
          { apiGroups: [''], resources: ['secrets'], resourceNames: [MANAGED_SECRET], verbs },
          { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [LEASE], verbs },
        ],
        'its certificate Secret and Lease only, never create',
      );
      const rb = only<V1RoleBinding>(objects, 'RoleBinding', CERTS_ROLE);
      t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: CERTS_ROLE });
      t.same(rb.subjects, [{ kind: 'ServiceAccount', name: NAME, namespace: NS }]);
    }
    const extra = managed(variant) ? 1 : 0;
    if (variant === 'config-map-mode') {
      t.equal(roles.length, 1 + extra, 'the ConfigMap Role');
      const role = only<V1Role>(objects, 'Role');
      t.equal(role.metadata?.namespace, NS, 'Role lives in the webhook namespace');
      t.same(
        role.rules,
        [{ apiGroups: [''], resources: ['configmaps'], resourceNames: [NAME], verbs: ['get', 'list', 'watch'] }],
        'get/list/watch on the one ConfigMap pod-identity-webhook only',
      );
      const rb = only<V1RoleBinding>(objects, 'RoleBinding');
      t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: NAME });
      t.same(rb.subjects, [{ kind: 'ServiceAccount', name: NAME, namespace: NS }]);
    } else {
      t.equal(roles.length, extra, `no other Role in ${variant}`);
      t.equal(bindings.length, extra, `no other RoleBinding in ${variant}`);
    }

    for (const r of [...kinds('ClusterRole'), ...kinds('Role')] as unknown as V1ClusterRole[]) {
      for (const rule of r.rules ?? []) {
        t.notOk((rule.verbs ?? []).includes('*') || (rule.apiGroups ?? []).includes('*'), 'no wildcards');
        if (rule.resourceNames?.length) continue; // the named objects above
        t.notOk(ruleGrants(rule, 'secrets'), `${r.metadata?.name}: nothing on secrets`);
        t.notOk(
          (rule.verbs ?? []).some((v) => !['get', 'list', 'watch'].includes(v)),
          `${r.metadata?.name}: read-only verbs`,
        );
      }
    }
  });

  const deployment = only<V1Deployment>(objects, 'Deployment');
  const podSpec = deployment.spec?.template.spec;
  const podLabels = deployment.spec?.template.metadata?.labels ?? {};
  const container = podSpec?.containers.find((c) => c.name === NAME);

  t.test('Deployment: replicas, scheduling, identity', async (t) => {
    t.equal(deployment.spec?.replicas, 2);
    t.ok(selectorMatches(deployment.spec?.selector, podLabels), 'selector matches the pod template');
    t.match(podLabels, COMMON_LABELS, 'pod template has the common labels');
    t.equal(podLabels[SKIP_LABEL], 'true', 'the webhook skips its own pods');
    t.equal(podSpec?.priorityClassName, 'system-cluster-critical');
    t.equal(podSpec?.serviceAccountName, NAME);
    t.equal(podSpec?.automountServiceAccountToken, true, 'token mounted (needed to watch ServiceAccounts)');
    t.notOk(podSpec?.hostNetwork || podSpec?.hostPID || podSpec?.hostIPC, 'no host namespaces');

    const terms = podSpec?.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    t.equal(terms.length, 1, 'one preferred anti-affinity term');
    t.equal(terms[0]?.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
    t.ok(terms[0]?.podAffinityTerm.labelSelector && selectorMatches(terms[0].podAffinityTerm.labelSelector, podLabels), 'anti-affinity selects the webhook pods');
    t.notOk(podSpec?.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution, 'anti-affinity is only preferred');

    const annotations = deployment.spec?.template.metadata?.annotations ?? {};
    t.equal(annotations['prometheus.io/scrape'], 'true');
    t.equal(annotations['prometheus.io/port'], '9999');

    t.ok(container, 'the webhook container');
    t.equal(podSpec?.containers.length, 1, 'a single container');
    t.equal(container?.image, 'pod-identity-webhook:latest');
    t.equal(container?.imagePullPolicy, 'IfNotPresent');
    t.notOk(container?.command, 'no command: the image ENTRYPOINT (node dist/cli.js serve) runs');
  });

  t.test('Deployment: security context', async (t) => {
    const psc = podSpec?.securityContext;
    const csc = container?.securityContext;
    t.equal(psc?.runAsNonRoot, true, 'pod runAsNonRoot');
    t.equal(csc?.runAsUser ?? psc?.runAsUser, UID, 'runAsUser matches the Dockerfile USER');
    t.equal(csc?.runAsGroup ?? psc?.runAsGroup, UID, 'runAsGroup');
    t.not(csc?.runAsNonRoot, false, 'the container does not override runAsNonRoot');
    t.equal((csc?.seccompProfile ?? psc?.seccompProfile)?.type, 'RuntimeDefault');
    t.equal(csc?.readOnlyRootFilesystem, true);
    t.equal(csc?.allowPrivilegeEscalation, false);
    t.not(csc?.privileged, true);
    t.same(csc?.capabilities?.drop, ['ALL']);
    t.notOk(csc?.capabilities?.add?.length, 'no capabilities added');
  });

  t.test('Deployment: resources, probes, ports, env', async (t) => {
    const res = container?.resources;
    t.ok(res?.requests?.cpu, 'cpu request');
    t.ok(res?.requests?.memory, 'memory request');
    t.ok(res?.limits?.memory, 'memory limit');

    const ports = new Map((container?.ports ?? []).map((p) => [p.name, p.containerPort]));
    t.equal(ports.get('https'), 8443);
    t.equal(ports.get('metrics'), 9999);
    // Managed certificates: liveness on the plain-HTTP metrics port, which
    // answers before the first certificate exists.
    for (const [kind, probe, p, scheme, want] of [
      ['liveness', container?.livenessProbe, '/healthz', managed(variant) ? 'HTTP' : 'HTTPS', managed(variant) ? 9999 : 8443],
      ['readiness', container?.readinessProbe, '/readyz', 'HTTPS', 8443],
    ] as const) {
      t.equal(probe?.httpGet?.scheme, scheme, `${kind} probe uses ${scheme}`);
      t.equal(probe?.httpGet?.path, p, `${kind} probe path`);
      const port = probe?.httpGet?.port;
      t.equal(typeof port === 'string' ? ports.get(port) : port, want, `${kind} probe port`);
    }

    const env = container?.env?.find((e) => e.name === 'POD_NAMESPACE');
    t.equal(env?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace', 'POD_NAMESPACE from the downward API');
  });

  t.test('Deployment: args', async (t) => {
    const args = container?.args ?? [];
    for (const a of args) t.match(a, /^--[a-z0-9-]+(=.*)?$/, `${a} is a single --flag or --flag=value`);
    const flags = new Map(args.map((a) => [a.split('=')[0] as string, a.includes('=') ? a.slice(a.indexOf('=') + 1) : true]));
    t.equal(flags.size, args.length, 'no flag given twice');
    t.equal(flags.get('--port'), '8443');
    t.equal(flags.get('--metrics-port'), '9999');
    if (managed(variant)) {
      t.equal(flags.get('--manage-certificates'), true, '--manage-certificates');
      t.equal(flags.get('--tls-secret'), MANAGED_SECRET);
      t.equal(flags.get('--lease-name'), LEASE);
      t.equal(flags.get('--webhook-configuration-name'), NAME);
      t.equal(flags.get('--service-name'), NAME);
      t.notOk(flags.has('--tls-cert') || flags.has('--tls-key'), 'no certificate files');
    } else {
      t.notOk(flags.has('--manage-certificates'), 'file mode');
      t.equal(flags.get('--tls-cert'), '/etc/webhook/certs/tls.crt');
      t.equal(flags.get('--tls-key'), '/etc/webhook/certs/tls.key');
    }
    t.equal(flags.get('--namespace'), '$(POD_NAMESPACE)');
    t.equal(flags.get('--annotation-prefix'), 'eks.amazonaws.com');
    t.equal(flags.get('--token-audience'), 'sts.amazonaws.com');
    t.ok(flags.has('--service-account-lookup-grace-period'));
    if (variant === 'config-map-mode') t.equal(flags.get('--watch-config-map'), true, '--watch-config-map in config-map mode');
    else t.notOk(flags.has('--watch-config-map'), `no --watch-config-map in ${variant}`);
    if (variant === 'client-ca') {
      t.equal(flags.get('--client-ca'), '/etc/webhook/client-ca/ca.crt', '--client-ca in the client-ca variant');
      const mount = container?.volumeMounts?.find((m) => m.mountPath === '/etc/webhook/client-ca');
      t.equal(mount?.readOnly, true, 'the client CA is mounted read-only');
      t.equal(podSpec?.volumes?.find((v) => v.name === mount?.name)?.configMap?.name, 'pod-identity-webhook-client-ca', 'from the ConfigMap pod-identity-webhook-client-ca');
    } else {
      t.notOk(flags.has('--client-ca'), `no --client-ca in ${variant}`);
    }
  });

  t.test('Deployment: serving certificate volume', async (t) => {
    if (managed(variant)) {
      t.notOk(container?.volumeMounts?.some((m) => m.mountPath === '/etc/webhook/certs'), 'no certificate mount (managed certificates)');
      t.notOk(podSpec?.volumes?.some((v) => v.secret), 'no Secret volume');
      for (const m of container?.volumeMounts ?? []) t.equal(m.readOnly, true, `${m.name} is read-only`);
      return;
    }
    const mount = container?.volumeMounts?.find((m) => m.mountPath === '/etc/webhook/certs');
    t.ok(mount, 'mounted at /etc/webhook/certs');
    t.equal(mount?.readOnly, true, 'read-only');
    t.notOk(mount?.subPath, 'no subPath (renewed files must appear in place)');
    const volume = podSpec?.volumes?.find((v) => v.name === mount?.name);
    t.equal(volume?.secret?.secretName, CERT_SECRET);
    t.notOk(volume?.secret?.optional, 'the Secret is required');
    const mode = volume?.secret?.defaultMode;
    if (mode !== undefined) t.equal(mode & 0o007, 0, 'the private key is not world-readable');
    // Anything else mounted must not be writable scratch space on the root FS.
    for (const m of container?.volumeMounts ?? []) t.equal(m.readOnly, true, `${m.name} is read-only`);
  });

  t.test('PodDisruptionBudget', async (t) => {
    const pdb = only<V1PodDisruptionBudget>(objects, 'PodDisruptionBudget');
    t.equal(pdb.apiVersion, 'policy/v1');
    t.equal(pdb.spec?.minAvailable, 1);
    t.ok(pdb.spec?.selector && selectorMatches(pdb.spec.selector, podLabels), 'selects the webhook pods');
  });

  const service = only<V1Service>(objects, 'Service');
  t.test('Service', async (t) => {
    t.ok(service.spec?.selector && Object.keys(service.spec.selector).length > 0, 'has a selector');
    t.ok(selectorMatches({ matchLabels: service.spec?.selector ?? {} }, podLabels), 'selects the webhook pods');
    const ports = new Map((service.spec?.ports ?? []).map((p) => [p.port, p]));
    t.equal(ports.get(443)?.name, 'https');
    t.equal(ports.get(443)?.targetPort, 8443);
    t.same(service.spec?.ports?.map((p) => p.targetPort), [8443], 'only the webhook port: metrics are not reachable through the webhook Service');

    const metrics = only<V1Service>(objects, 'Service', `${NAME}-metrics`);
    t.ok(selectorMatches({ matchLabels: metrics.spec?.selector ?? {} }, podLabels), 'the metrics Service selects the webhook pods');
    t.same(metrics.spec?.ports?.map((p) => [p.name, p.port, p.targetPort]), [['metrics', 9999, 9999]], 'the metrics Service has the metrics port only');
    t.equal(kinds('Service').length, 2, 'two Services');
  });

  t.test('NetworkPolicy: webhook port open, metrics port for monitoring namespaces only, nothing else', async (t) => {
    const policy = only<NetworkPolicy>(objects, 'NetworkPolicy');
    t.equal(policy.apiVersion, 'networking.k8s.io/v1');
    t.ok(selectorMatches(policy.spec?.podSelector, podLabels), 'applies to the webhook pods');
    t.ok(Object.keys(policy.spec?.podSelector?.matchLabels ?? {}).length > 0, 'and not to every pod of the namespace');
    t.same(policy.spec?.policyTypes, ['Ingress'], 'restricts ingress');
    const rules = policy.spec?.ingress ?? [];
    const portsOf = (rule: (typeof rules)[number]): (number | string | undefined)[] => (rule.ports ?? []).map((p) => p.port);
    for (const rule of rules) {
      t.ok(rule.ports && rule.ports.length > 0, 'every rule names its ports (no rule opens all of them)');
      for (const p of rule.ports ?? []) t.ok([8443, 9999].includes(p.port as number), `port ${p.port} is a webhook port (by number)`);
    }
    const webhookRules = rules.filter((r) => portsOf(r).includes(8443));
    t.ok(webhookRules.some((r) => !r.from || r.from.length === 0), 'the webhook port is open to any source (the API server has no selectable address)');
    const metricsRules = rules.filter((r) => portsOf(r).includes(9999));
    t.ok(metricsRules.length > 0, 'the metrics port is admitted somewhere');
    for (const r of metricsRules) {
      t.ok(r.from && r.from.length > 0, 'the metrics port is not open to everyone');
      for (const peer of r.from ?? []) {
        t.notOk(peer.ipBlock, 'no ipBlock peer');
        const labels = peer.namespaceSelector?.matchLabels ?? {};
        t.same(labels, { 'pod-identity-webhook/scrape-metrics': 'true' }, 'namespaces labelled for scraping');
        t.notOk(selectorMatches(peer.namespaceSelector, { 'kubernetes.io/metadata.name': 'team-a' }), 'an ordinary namespace cannot scrape');
      }
    }
  });

  t.test('MutatingWebhookConfiguration', async (t) => {
    const mwc = only<V1MutatingWebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
    t.equal(mwc.apiVersion, 'admissionregistration.k8s.io/v1');
    t.equal(mwc.webhooks?.length, 1, 'one webhook');
    const w = mwc.webhooks?.[0];
    t.equal(w?.name, WEBHOOK_NAME);
    t.same(w?.clientConfig.service, { name: NAME, namespace: NS, path: '/mutate', port: 443 });
    t.notOk(w?.clientConfig.url, 'no url');
    // Absent, not "": `kubectl apply` would reset an injected CA to "" on every apply.
    t.notOk(w?.clientConfig && Object.hasOwn(w.clientConfig, 'caBundle'), 'caBundle is left out (filled later)');
    t.equal(service.metadata?.name, w?.clientConfig.service?.name, 'points at the Service');
    t.ok(service.spec?.ports?.some((p) => p.port === w?.clientConfig.service?.port), 'on a port the Service has');

    t.equal(w?.rules?.length, 1, 'one rule');
    const rule = w?.rules?.[0];
    t.same(rule?.operations, ['CREATE']);
    t.same(rule?.apiGroups, ['']);
    t.same(rule?.apiVersions, ['v1']);
    t.same(rule?.resources, ['pods'], 'pods only, no subresources');

    t.equal(w?.failurePolicy, 'Ignore');
    t.equal(w?.reinvocationPolicy, 'IfNeeded');
    t.equal(w?.sideEffects, 'None');
    t.equal(w?.matchPolicy, 'Equivalent');
    t.same(w?.admissionReviewVersions, ['v1', 'v1beta1']);
    t.ok(w?.timeoutSeconds !== undefined && w.timeoutSeconds >= 3 && w.timeoutSeconds <= 10, `timeoutSeconds ${w?.timeoutSeconds} in 3..10`);

    t.ok(
      w?.objectSelector?.matchExpressions?.some((e) => e.key === SKIP_LABEL && e.operator === 'DoesNotExist'),
      'objectSelector: skip label DoesNotExist',
    );
    t.notOk(selectorMatches(w?.objectSelector, podLabels), 'the webhook does not select its own pods');
    t.ok(selectorMatches(w?.objectSelector, { app: 'anything' }), 'ordinary pods are selected');
    t.ok(selectorMatches(w?.objectSelector, {}), 'unlabelled pods are selected');
    t.notOk(selectorMatches(w?.objectSelector, { [SKIP_LABEL]: 'false' }), 'any value of the skip label opts out (as upstream)');

    t.ok(
      w?.namespaceSelector?.matchExpressions?.some(
        (e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn' && (e.values ?? []).includes(NS),
      ),
      'namespaceSelector excludes the webhook namespace',
    );
    t.notOk(selectorMatches(w?.namespaceSelector, { 'kubernetes.io/metadata.name': NS }), 'own namespace not mutated');
    for (const ns of ['default', 'kube-system', 'team-a']) {
      t.ok(selectorMatches(w?.namespaceSelector, { 'kubernetes.io/metadata.name': ns }), `${ns} is mutated`);
    }

    const injected = mwc.metadata?.annotations?.['cert-manager.io/inject-ca-from'];
    if (variant === 'cert-manager') t.equal(injected, `${NS}/${CERT_SECRET}`, 'cert-manager injects the CA');
    else t.notOk(injected, `no cert-manager annotation in ${variant}`);
  });

  if (variant === 'cert-manager') {
    t.test('cert-manager issuers and certificates', async (t) => {
      const issuers = kinds('Issuer') as (KObject & { spec: { selfSigned?: object; ca?: { secretName: string } } })[];
      const certs = kinds('Certificate') as (KObject & {
        spec: { isCA?: boolean; secretName: string; dnsNames?: string[]; issuerRef: { name: string; kind?: string } };
      })[];
      t.equal(kinds('ClusterIssuer').length, 0, 'no ClusterIssuer: everything stays in the namespace');
      for (const o of [...issuers, ...certs]) t.equal(o.apiVersion, 'cert-manager.io/v1', `${o.kind}/${o.metadata.name} apiVersion`);
      const selfSigned = issuers.find((i) => i.spec.selfSigned !== undefined);
      t.ok(selfSigned, 'a selfSigned Issuer');
      const ca = certs.find((c) => c.spec.isCA === true);
      t.ok(ca, 'a CA Certificate');
      t.equal(ca?.spec.issuerRef.name, selfSigned?.metadata.name, 'the CA is self-signed');
      const caIssuer = issuers.find((i) => i.spec.ca?.secretName === ca?.spec.secretName);
      t.ok(caIssuer, 'a CA Issuer using the CA Certificate Secret');
      const serving = certs.find((c) => c.metadata.name === CERT_SECRET);
      t.ok(serving, 'the serving Certificate named in inject-ca-from');
      t.equal(serving?.spec.secretName, CERT_SECRET, 'writes the Secret the Deployment mounts');
      t.notOk(serving?.spec.isCA, 'the serving certificate is not a CA');
      t.equal(serving?.spec.issuerRef.name, caIssuer?.metadata.name, 'issued by the CA Issuer');
      t.ok(serving?.spec.dnsNames?.includes(`${service.metadata?.name}.${NS}.svc`), 'valid for <service>.<namespace>.svc');
      for (const c of certs) t.not(c.spec.issuerRef.kind, 'ClusterIssuer', `${c.metadata.name} uses a namespaced Issuer`);
    });
  } else {
    t.test('no cert-manager objects', async (t) => {
      t.notOk(objects.some((o) => o.apiVersion.startsWith('cert-manager.io/')), `none in ${variant}`);
    });
  }
}

// ------------------------------------------------------------------ tests ---

t.test('kustomization layout', async (t) => {
  const top = readKustomization(MANIFESTS);
  t.same(top.resources, ['base'], 'manifests/ wraps base/ (overlays cannot reference a directory containing them)');
  const base = readKustomization(path.join(MANIFESTS, 'base'));
  t.equal(base.namespace, NS);
  t.ok(base.labels?.some((l) => l.pairs['app.kubernetes.io/name'] === NAME), 'common label app.kubernetes.io/name');
  t.ok(base.images?.some((i) => i.name === 'pod-identity-webhook'), 'images: entry to retarget the image');
  // Every YAML file in base/ is listed, and every listed file exists.
  const yamlFiles = readdirSync(path.join(MANIFESTS, 'base')).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
  t.same(sorted(base.resources), sorted(yamlFiles), 'base/ resources list every file');
  const component = readKustomization(path.join(MANIFESTS, 'components', 'config-map-mode'));
  t.equal(component.kind, 'Component', 'config-map-mode is a kustomize Component');
  t.ok(existsSync(path.join(MANIFESTS, 'README.md')), 'manifests/README.md');
});

t.test('the failurePolicy trade-off is explained next to it', async (t) => {
  const text = readFileSync(path.join(MANIFESTS, 'base', 'mutating-webhook-configuration.yaml'), 'utf8');
  const before = text.slice(0, text.indexOf('failurePolicy: Ignore'));
  const comment = before.split('\n').slice(-15).filter((l) => l.trim().startsWith('#')).join('\n');
  t.match(comment, /Ignore/);
  t.match(comment, /Fail/);
  t.match(comment, /without/i, 'says pods may start without credentials');
});

for (const variant of Object.keys(VARIANT_DIRS) as Variant[]) {
  const dir = VARIANT_DIRS[variant];
  t.test(`${variant} (files)`, async (t) => {
    checkInstall(t, loadFromFiles(dir), variant, 'files');
  });
  const objects = render(dir);
  t.test(`${variant} (kubectl kustomize)`, { skip: objects ? false : 'kubectl is not installed (kubectl kustomize renders the variants)' }, async (t) => {
    if (!objects) return;
    checkInstall(t, objects, variant, 'kustomize');
    // The hand-applied patches above agree with kustomize.
    const files = loadFromFiles(dir);
    const key = (o: KObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    t.same(sorted(objects.map(key)), sorted(files.map(key)), 'same objects as the files');
    const stripLabels = (o: KObject | undefined): unknown => {
      const d = structuredClone(o) as V1Deployment;
      if (d.metadata) delete d.metadata.labels;
      return d;
    };
    t.same(
      stripLabels(objects.find((o) => o.kind === 'Deployment')),
      stripLabels(files.find((o) => o.kind === 'Deployment')),
      'same Deployment as the files (apart from added labels)',
    );
  });
}

const cli = path.join(ROOT, 'dist', 'cli.js');
t.test('every Deployment flag is one `serve` accepts', async (t) => {
  // npm test builds dist/ first; a CLI that cannot print its help is a failure, not a reason to skip.
  t.ok(existsSync(cli), `${cli} exists (npm run build)`);
  const help = spawnSync(process.execPath, [cli, 'serve', '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0, `serve --help exits 0: ${help.stderr}`);
  t.match(help.stdout, /^Usage: \S+ serve\b/m, 'serve --help prints its usage');
  const known = new Set(help.stdout.match(/--[a-z0-9-]+/g) ?? []);
  for (const variant of Object.keys(VARIANT_DIRS) as Variant[]) {
    const deployment = only<V1Deployment>(loadFromFiles(VARIANT_DIRS[variant]), 'Deployment');
    for (const arg of deployment.spec?.template.spec?.containers[0]?.args ?? []) {
      const flag = arg.split('=')[0] as string;
      t.ok(known.has(flag), `${variant}: ${flag} is a serve flag`);
    }
  }
});
