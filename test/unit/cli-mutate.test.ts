// The mutate command through the real binary: outputs, and one clear line with
// exit code 2 for every kind of bad input.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsonpatch, { type Operation } from 'fast-json-patch';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { CommanderError } from 'commander';
import { buildProgram } from '../../src/cli/program.js';
import { UsageError } from '../../src/cli/flags.js';
import { ROLE } from '../helpers/pods.js';

const CLI = join(process.cwd(), 'dist', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'piw-cli-'));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const run = (args: string[], input?: string) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input });

const podYaml = file('pod.yaml', `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  serviceAccountName: api
  containers:
  - name: app
    image: nginx
`);
const sa = file('sa.yaml', `apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: shop
  annotations:
    eks.amazonaws.com/role-arn: ${ROLE}
`);

t.test('patch, pod and review outputs', async (t) => {
  const patch = run(['mutate', '--pod', podYaml, '--service-account', sa]);
  t.equal(patch.status, 0, patch.stderr);
  const ops = JSON.parse(patch.stdout);
  t.ok(Array.isArray(ops) && ops.length === 3);

  const pod = run(['mutate', '--pod', podYaml, '--service-account', sa, '-o', 'json', '--aws-default-region=eu-west-1', '--sts-regional-endpoint']);
  t.equal(pod.status, 0, pod.stderr);
  const env = JSON.parse(pod.stdout).spec.containers[0].env.map((e: { name: string }) => e.name);
  t.same(env, ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_DEFAULT_REGION', 'AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);

  const off = run(['mutate', '--pod', podYaml, '--service-account', sa, '--output', 'json', '--sts-regional-endpoint=false']);
  t.notOk(JSON.stringify(JSON.parse(off.stdout)).includes('AWS_STS_REGIONAL_ENDPOINTS'));

  const rev = run(['mutate', '--pod', podYaml, '--service-account', sa, '--output', 'review']);
  const body = JSON.parse(rev.stdout);
  t.equal(body.apiVersion, 'admission.k8s.io/v1');
  t.equal(body.response.patchType, 'JSONPatch');
  t.same(JSON.parse(Buffer.from(body.response.patch, 'base64').toString()), ops);
});

t.test('stdin, JSON input, and a ServiceAccount for another pod means not found', async (t) => {
  const json = JSON.stringify({ kind: 'Pod', metadata: { name: 'x' }, spec: { serviceAccountName: 'api', containers: [{ name: 'c' }] } });
  const r = run(['mutate', '--pod', '-', '--service-account', sa], json);
  t.equal(r.status, 0);
  t.equal(r.stdout.trim(), '[]');
  t.match(r.stderr, /^warning: Pod default\/x runs as ServiceAccount default\/api, which is not in the input \(--service-account \S+ holds shop\/api\); treated as not found/);
  const none = run(['mutate', '--pod', podYaml]);
  t.equal(none.stdout.trim(), '[]');
  t.equal(none.status, 0);
  t.match(none.stderr, /^warning: Pod shop\/web runs as ServiceAccount shop\/api, which is not in the input; .*--service-account <file> \(kubectl get serviceaccount api -n shop -o yaml\)/);
  t.equal(none.stderr.trim().split('\n').length, 1, 'one line');
  const given = run(['mutate', '--pod', podYaml, '--service-account', sa]);
  t.equal(given.stderr, '', 'no warning when the ServiceAccount is given');
});

t.test('warnings go to stderr, the patch to stdout', async (t) => {
  const bad = file('sa-bad.yaml', 'kind: ServiceAccount\nmetadata: {name: api, namespace: shop, annotations: {eks.amazonaws.com/role-arn: nope}}\n');
  const r = run(['mutate', '--pod', podYaml, '--service-account', bad]);
  t.equal(r.status, 0);
  t.match(r.stderr, /^warning: annotation eks.amazonaws.com\/role-arn="nope" is not a role ARN/m);
  t.ok(JSON.parse(r.stdout).length > 0);
});

const bad: Array<[string, string[], RegExp]> = [
  ['unreadable file', ['mutate', '--pod', join(dir, 'missing.yaml')], /--pod .*missing.yaml: cannot read: no such file/],
  ['invalid YAML', ['mutate', '--pod', file('bad.yaml', 'a: [\n')], /invalid YAML/],
  ['not a Pod', ['mutate', '--pod', sa], /is a ServiceAccount, not a Pod/],
  ['Pod without containers', ['mutate', '--pod', file('nocont.yaml', 'kind: Pod\nspec: {}\n')], /no spec.containers/],
  ['a document without containers', ['mutate', '--pod', file('two.yaml', 'kind: Pod\nspec: {containers: []}\n---\nkind: Pod\n')], /two.yaml \(document 2\): the Pod has no spec.containers list/],
  ['a workload without a template', ['mutate', '-f', file('dep.yaml', 'kind: Deployment\nmetadata: {name: x}\nspec: {}\n')], /dep.yaml: the Deployment has no spec.template.spec.containers list/],
  ['nothing to mutate', ['mutate', '-f', file('svc.yaml', 'kind: Service\n---\nkind: ConfigMap\n')], /holds no Pod or workload with a pod template \(found Service, ConfigMap\)/],
  ['a document that is not an object', ['mutate', '-f', file('scalar.yaml', 'kind: Pod\nspec: {containers: []}\n---\nhello\n')], /scalar.yaml \(document 2\): expected a Kubernetes object/],
  ['-f and --pod', ['mutate', '-f', podYaml, '--pod', podYaml], /-f <file> or --pod <file>, not both/],
  ['bad -n', ['mutate', '-f', podYaml, '-n', 'Not_A_Namespace'], /not a valid namespace name/],
  ['not a ServiceAccount', ['mutate', '--pod', podYaml, '--service-account', podYaml], /is a Pod, not a ServiceAccount/],
  ['unknown flag', ['mutate', '--pod', podYaml, '--frobnicate'], /unknown option '--frobnicate'/],
  ['unknown output', ['mutate', '--pod', podYaml, '-o', 'xml'], /Allowed choices are patch, pod, json, yaml, review/],
  ['number not a number', ['mutate', '--pod', podYaml, '--token-expiration', '1h'], /--token-expiration .* expected a whole number/],
  ['bool not a bool', ['mutate', '--pod', podYaml, '--sts-regional-endpoint=yes'], /expected true or false/],
  ['bad identities file', ['mutate', '--pod', podYaml, '--watch-container-credentials-config', file('ids.json', '{"identities": [{}]}')], /identities\[0\] must have/],
  ['bad ConfigMap config', ['mutate', '--pod', podYaml, '--config-map', file('cm.yaml', 'kind: ConfigMap\ndata:\n  config: "{bad"\n')], /data.config is not valid JSON/],
  ['annotation value not a string', ['mutate', '--pod', podYaml, '--service-account', file('sa-num.yaml', 'kind: ServiceAccount\nmetadata: {name: api, annotations: {eks.amazonaws.com/token-expiration: 3600}}\n')], /must map names to strings/],
  ['no input', ['mutate'], /no input: give -f <file> \(or --pod <file>\)/],
  ['bad --role-session-name', ['mutate', '--pod', podYaml, '--role-session-name', 'name'], /--role-session-name <mode>' argument 'name' is invalid. expected pod-name or none/],
  ['--old-pod that is not a Pod', ['mutate', '--pod', podYaml, '--old-pod', sa, '--mutate-ephemeral-containers'], /--old-pod \S+sa.yaml: is a ServiceAccount, not a Pod/],
  ['--old-pod with a workload', ['mutate', '-f', file('dep-ok.yaml', 'kind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: a}]}}}\n'), '--old-pod', podYaml], /with --old-pod, give exactly one Pod/],
  ['unknown command', ['frobnicate'], /unknown command/],
];
for (const [name, args, message] of bad) {
  t.test(`bad input: ${name}`, async (t) => {
    const r = run(args);
    t.equal(r.status, 2, r.stderr);
    t.equal(r.stdout, '', 'nothing on stdout');
    t.match(r.stderr, message);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  });
}

t.test('--help and --version', async (t) => {
  const help = run(['mutate', '--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /--watch-container-credentials-config/);
  const version = run(['--version']);
  t.equal(version.status, 0);
  const pkg = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { version: string };
  const m = /^(\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,12}|unknown), Node\.js (v\d+\.\d+\.\d+)\)\n$/.exec(version.stdout);
  t.ok(m, version.stdout);
  t.equal(m?.[1], pkg.version);
  t.equal(m?.[3], process.version);
  // Built in this checkout: the commit is known (compiled in by npm run build, or git).
  if (existsSync(join(process.cwd(), '.git'))) t.not(m?.[2], 'unknown');
});

t.test('ConfigMap mode from the CLI', async (t) => {
  const cm = file('cm-ok.yaml', `kind: ConfigMap
metadata: {name: pod-identity-webhook}
data:
  config: '{"shop/api": {"RoleARN": "${ROLE}", "UseRegionalSTS": true}}'
`);
  const r = run(['mutate', '--pod', podYaml, '--config-map', cm, '--output', 'json']);
  t.equal(r.status, 0, r.stderr);
  const env = JSON.parse(r.stdout).spec.containers[0].env;
  t.same(env.find((e: { name: string }) => e.name === 'AWS_ROLE_ARN').value, ROLE);
  t.ok(env.some((e: { name: string }) => e.name === 'AWS_STS_REGIONAL_ENDPOINTS'));
});

// ------------------------------------------------------------------ streams
// In-process from here on: the same program the binary builds, without a node start per case.

async function inProcessRun(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = buildProgram({ stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
  program.configureOutput({ writeErr: (s) => err.push(s.trimEnd()), writeOut: (s) => out.push(s.trimEnd()) });
  for (const c of program.commands) c.configureOutput({ writeErr: (s) => err.push(s.trimEnd()), writeOut: (s) => out.push(s.trimEnd()) });
  const before = process.exitCode;
  let status = 0;
  try {
    await program.parseAsync(['node', 'cli', ...args]);
    status = Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof CommanderError) status = e.exitCode === 0 ? 0 : 2;
    else if (e instanceof UsageError) {
      status = 2;
      err.push(`error: ${e.message}`);
    } else throw e;
  } finally {
    process.exitCode = before;
  }
  const join = (l: string[]): string => (l.length > 0 ? `${l.join('\n')}\n` : '');
  return { status, stdout: join(out), stderr: join(err) };
}


const manifest = file('manifest.yaml', `apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: shop
  annotations:
    eks.amazonaws.com/role-arn: ${ROLE}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: api
      containers: [{name: app, image: nginx}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          serviceAccountName: api
          restartPolicy: Never
          containers: [{name: job, image: busybox}]
`);

const yamlDocs = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS() as unknown);
/** Pretty-printed JSON values one after another (one patch per input document). */
const jsonStream = (text: string): unknown[] => text.trim().split(/\n(?=\[)/).map((part) => JSON.parse(part) as unknown);
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

t.test('a manifest: ServiceAccounts are used, workload templates mutated, everything else kept, same shape', async (t) => {
  const r = await inProcessRun(['mutate', '-f', manifest, '-o', 'yaml']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  const input = yamlDocs(readFileSync(manifest, 'utf8')) as Obj[];
  const out = yamlDocs(r.stdout) as Obj[];
  t.same(out.map((d) => d['kind']), ['ServiceAccount', 'Service', 'Deployment', 'CronJob']);
  t.same(out[0], input[0], 'the ServiceAccount is printed as it was');
  t.same(out[1], input[1], 'the Service is printed as it was');
  const dep = out[2]?.['spec']['template']['spec'];
  t.same(dep.containers[0].env.map((e: Obj) => e['name']), ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
  t.equal(dep.volumes[0].name, 'aws-iam-token');
  const job = out[3]?.['spec']['jobTemplate']['spec']['template']['spec'];
  t.same(job.containers[0].env.map((e: Obj) => e['name']), ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
  t.equal(job.restartPolicy, 'Never');

  // -o pod follows the input's format: YAML here.
  const pod = await inProcessRun(['mutate', '-f', manifest, '-o', 'pod']);
  t.same(yamlDocs(pod.stdout), out);

  // -o patch: one patch per document, each against its document, so applying them gives -o yaml's objects.
  const patches = jsonStream((await inProcessRun(['mutate', '-f', manifest])).stdout) as Operation[][];
  t.equal(patches.length, 4);
  t.same(patches[0], []);
  t.same(patches[1], []);
  t.ok(patches[2]?.every((op) => op.path.startsWith('/spec/template/spec/')), 'Deployment paths are under its pod template');
  t.ok(patches[3]?.every((op) => op.path.startsWith('/spec/jobTemplate/spec/template/spec/')), 'CronJob paths are under its job template');
  input.forEach((doc, i) => t.same(jsonpatch.applyPatch(doc, patches[i] as Operation[], true, false).newDocument, out[i], `document ${i + 1}`));

  // -o json: several documents become a List, as kubectl prints them.
  const list = JSON.parse((await inProcessRun(['mutate', '-f', manifest, '-o', 'json'])).stdout) as Obj;
  t.equal(list['kind'], 'List');
  t.same(list['items'], out);

  // -o review: the webhook's answer for the pod each template creates.
  const reviews = (await inProcessRun(['mutate', '-f', manifest, '-o', 'review'])).stdout.trim().split(/\n(?=\{)/).map((x) => JSON.parse(x) as Obj);
  t.equal(reviews.length, 2);
  const podPatch = JSON.parse(Buffer.from(reviews[0]?.['response']['patch'], 'base64').toString()) as Operation[];
  t.ok(podPatch.every((op) => op.path.startsWith('/spec/')), 'a review patches the pod, not the workload');
});

t.test('kubectl get -o yaml: a List of pods, and -n for objects without a namespace', async (t) => {
  const listFile = file('list.yaml', `apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
  spec: {serviceAccountName: api, containers: [{name: c, image: x}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: b}
  spec: {serviceAccountName: other, containers: [{name: c, image: x}]}
`);
  const r = await inProcessRun(['mutate', '-f', listFile, '--service-account', sa, '-n', 'shop', '-o', 'pod']);
  t.equal(r.status, 0, r.stderr);
  const out = parseYaml(r.stdout) as Obj;
  t.equal(out['kind'], 'List', 'a List stays a List');
  t.equal(out['items'][0].spec.containers[0].env[0].name, 'AWS_ROLE_ARN');
  t.equal(out['items'][1].spec.containers[0].env, undefined);
  t.match(r.stderr, /^warning: Pod shop\/b runs as ServiceAccount shop\/other, which is not in the input/);
  t.equal(r.stderr.trim().split('\n').length, 1);

  const patch = JSON.parse((await inProcessRun(['mutate', '-f', listFile, '--service-account', sa, '-n', 'shop'])).stdout) as Operation[];
  t.ok(patch.length > 0 && patch.every((op) => op.path.startsWith('/items/0/spec/')), 'one patch against the List');

  // Without -n the pods are in "default", where the ServiceAccount is not.
  const elsewhere = await inProcessRun(['mutate', '-f', listFile, '--service-account', sa, '-o', 'json']);
  t.equal((JSON.parse(elsewhere.stdout) as Obj)['items'][0].spec.containers[0].env, undefined);
  t.match(elsewhere.stderr, /Pod default\/a runs as ServiceAccount default\/api, which is not in the input \(--service-account \S+ holds shop\/api\)/);
});

t.test('-o pod keeps JSON input JSON; several ServiceAccounts in one --service-account file', async (t) => {
  const pods = file('pods.json', JSON.stringify({
    apiVersion: 'v1', kind: 'PodList', items: [
      { kind: 'Pod', metadata: { name: 'a', namespace: 'shop' }, spec: { serviceAccountName: 'api', containers: [{ name: 'c' }] } },
      { kind: 'Pod', metadata: { name: 'b', namespace: 'team' }, spec: { serviceAccountName: 'worker', containers: [{ name: 'c' }] } },
    ],
  }));
  const sas = file('sas.yaml', `kind: ServiceAccount
metadata: {name: api, namespace: shop, annotations: {eks.amazonaws.com/role-arn: "${ROLE}"}}
---
kind: ServiceAccount
metadata: {name: worker, namespace: team, annotations: {eks.amazonaws.com/role-arn: "${ROLE}"}}
`);
  const r = await inProcessRun(['mutate', '--pod', pods, '--service-account', sas, '-o', 'pod']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  const out = JSON.parse(r.stdout) as Obj;
  t.equal(out['kind'], 'PodList');
  t.ok(out['items'].every((p: Obj) => p['spec'].containers[0].env[0].name === 'AWS_ROLE_ARN'));
  const bad = await inProcessRun(['mutate', '--pod', pods, '--service-account', manifest]);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--service-account \S+manifest.yaml \(document 2\): is a Service, not a ServiceAccount/);
});

// ------------------------------------------------------------------ completion

t.test('completion: bash completes commands, options and their values from the program itself', async (t) => {
  const script = await inProcessRun(['completion', 'bash']);
  t.equal(script.status, 0, script.stderr);
  const complete = (...words: string[]): string[] => {
    const r = spawnSync('bash', ['-c', `${script.stdout}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _pod_identity_webhook; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l !== '');
  };
  t.same(complete('pod-identity-webhook', 'mu'), ['mutate']);
  t.ok(complete('pod-identity-webhook', '').includes('doctor'));
  t.same(complete('pod-identity-webhook', 'mutate', '-o', ''), ['patch', 'pod', 'json', 'yaml', 'review']);
  t.same(complete('pod-identity-webhook', 'mutate', '--service-'), ['--service-account']);
  t.same(complete('pod-identity-webhook', 'doctor', '--output', 'y'), ['yaml']);
  t.same(complete('pod-identity-webhook', 'serve', '--log-fo'), ['--log-format']);
  t.same(complete('pod-identity-webhook', 'serve', '--log-f'), ['--log-format', '--log-file', '--log-file-max-size']);
  t.same(complete('pod-identity-webhook', 'serve', '--log-format', ''), ['json', 'text']);
  t.same(complete('pod-identity-webhook', 'completion', ''), ['bash', 'zsh', 'fish']);
  t.same(complete('pod-identity-webhook', 'mutate', '-f', join(dir, 'manif')), [join(dir, 'manifest.yaml')]);
});

t.test('completion: zsh and fish scripts name every command and option', async (t) => {
  const zsh = await inProcessRun(['completion', 'zsh']);
  const fish = await inProcessRun(['completion', 'fish']);
  t.equal(zsh.status, 0);
  t.equal(fish.status, 0);
  t.match(zsh.stdout, /^#compdef pod-identity-webhook$/m);
  t.match(zsh.stdout, /^ {4}'mutate:print the change the webhook makes/m);
  t.match(zsh.stdout, /mutate\) _arguments -s .*'\(-o --output\)'\{-o,--output\}'\[.*\]:value:\(patch pod json yaml review\)'/);
  t.match(zsh.stdout, /'\(-f --filename\)'\{-f,--filename\}'\[[^']*\]:file:_files'/);
  t.match(fish.stdout, /^complete -c pod-identity-webhook -n '__fish_seen_subcommand_from mutate' -s o -l output -x -a 'patch pod json yaml review' -d /m);
  t.match(fish.stdout, /^complete -c pod-identity-webhook -n '__fish_seen_subcommand_from serve' -l log-format -x -a 'json text' -d /m);
  t.match(fish.stdout, /^complete -c pod-identity-webhook -n 'not __fish_seen_subcommand_from mutate serve certs oidc doctor completion' -a doctor -d /m);
  const unknown = await inProcessRun(['completion', 'tcsh']);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /Allowed choices are bash, zsh, fish/);
});

// --- opt-in features --------------------------------------------------------------

const featurePod = file('feature-pod.yaml', `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations:
    eks.amazonaws.com/include-containers: app,ghost
spec:
  serviceAccountName: api
  containers:
  - name: app
    image: nginx
  - name: sidecar
    image: envoy
`);

t.test('include-containers and --role-session-name from the CLI', async (t) => {
  const r = run(['mutate', '--pod', featurePod, '--service-account', sa, '-o', 'json', '--role-session-name=pod-name']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, 'warning: 1 name(s) in annotation eks.amazonaws.com/include-containers match no container of this pod: "ghost"\n');
  const out = JSON.parse(r.stdout) as { spec: { containers: Array<{ env?: unknown[] }> } };
  t.same(out.spec.containers[0]!.env, [
    { name: 'AWS_ROLE_ARN', value: ROLE },
    { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token' },
    { name: 'AWS_ROLE_SESSION_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
  ]);
  t.equal(out.spec.containers[1]!.env, undefined);
  const none = run(['mutate', '--pod', featurePod, '--service-account', sa, '-o', 'json', '--role-session-name=none']);
  t.notOk(none.stdout.includes('AWS_ROLE_SESSION_NAME'));
});

t.test('--old-pod: an update of pods/ephemeralcontainers', async (t) => {
  const created = run(['mutate', '--pod', podYaml, '--service-account', sa, '-o', 'yaml']);
  t.equal(created.status, 0, created.stderr);
  const oldPod = file('old-pod.yaml', created.stdout);
  const stored = parseYaml(created.stdout) as { spec: Record<string, unknown> };
  stored.spec['ephemeralContainers'] = [{ name: 'debugger', image: 'busybox' }];
  const newPod = file('new-pod.json', JSON.stringify(stored));

  const r = run(['mutate', '--pod', newPod, '--old-pod', oldPod, '--mutate-ephemeral-containers']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  const ops = JSON.parse(r.stdout) as Operation[];
  t.same(ops, [
    { op: 'add', path: '/spec/ephemeralContainers/0/env', value: [{ name: 'AWS_ROLE_ARN', value: ROLE }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token' }] },
    { op: 'add', path: '/spec/ephemeralContainers/0/volumeMounts', value: [{ name: 'aws-iam-token', readOnly: true, mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount' }] },
  ]);
  t.doesNotThrow(() => jsonpatch.applyPatch(stored, ops, true, false));

  const review = run(['mutate', '--pod', newPod, '--old-pod', oldPod, '--mutate-ephemeral-containers', '-o', 'review']);
  t.same(JSON.parse(Buffer.from(JSON.parse(review.stdout).response.patch, 'base64').toString()), ops);

  const off = run(['mutate', '--pod', newPod, '--old-pod', oldPod]);
  t.equal(off.status, 0);
  t.equal(off.stdout.trim(), '[]');
  t.equal(off.stderr, 'warning: --old-pod: the webhook changes updates of pods/ephemeralcontainers only with --mutate-ephemeral-containers; without it nothing changes\n');
});
