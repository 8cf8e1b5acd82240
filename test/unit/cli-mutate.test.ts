// The mutate command through the real binary: outputs, and one clear line with
// exit code 2 for every kind of bad input.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  const pod = run(['mutate', '--pod', podYaml, '--service-account', sa, '--output', 'pod', '--aws-default-region=eu-west-1', '--sts-regional-endpoint']);
  t.equal(pod.status, 0, pod.stderr);
  const env = JSON.parse(pod.stdout).spec.containers[0].env.map((e: { name: string }) => e.name);
  t.same(env, ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_DEFAULT_REGION', 'AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);

  const off = run(['mutate', '--pod', podYaml, '--service-account', sa, '--output', 'pod', '--sts-regional-endpoint=false']);
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
  t.match(r.stderr, /is not default\/api, the pod's; treated as not found/);
  const none = run(['mutate', '--pod', podYaml]);
  t.equal(none.stdout.trim(), '[]');
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
  ['two documents', ['mutate', '--pod', file('two.yaml', 'kind: Pod\n---\nkind: Pod\n')], /holds 2 documents/],
  ['not a ServiceAccount', ['mutate', '--pod', podYaml, '--service-account', podYaml], /is a Pod, not a ServiceAccount/],
  ['unknown flag', ['mutate', '--pod', podYaml, '--frobnicate'], /unknown option '--frobnicate'/],
  ['unknown output', ['mutate', '--pod', podYaml, '--output', 'yaml'], /Allowed choices are patch, pod, review/],
  ['number not a number', ['mutate', '--pod', podYaml, '--token-expiration', '1h'], /--token-expiration .* expected a whole number/],
  ['bool not a bool', ['mutate', '--pod', podYaml, '--sts-regional-endpoint=yes'], /expected true or false/],
  ['bad identities file', ['mutate', '--pod', podYaml, '--watch-container-credentials-config', file('ids.json', '{"identities": [{}]}')], /identities\[0\] must have/],
  ['bad ConfigMap config', ['mutate', '--pod', podYaml, '--config-map', file('cm.yaml', 'kind: ConfigMap\ndata:\n  config: "{bad"\n')], /data.config is not valid JSON/],
  ['annotation value not a string', ['mutate', '--pod', podYaml, '--service-account', file('sa-num.yaml', 'kind: ServiceAccount\nmetadata: {name: api, annotations: {eks.amazonaws.com/token-expiration: 3600}}\n')], /must map names to strings/],
  ['missing --pod', ['mutate'], /required option '--pod <file>'/],
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
  t.match(version.stdout, /^\d+\.\d+\.\d+/);
});

t.test('ConfigMap mode from the CLI', async (t) => {
  const cm = file('cm-ok.yaml', `kind: ConfigMap
metadata: {name: pod-identity-webhook}
data:
  config: '{"shop/api": {"RoleARN": "${ROLE}", "UseRegionalSTS": true}}'
`);
  const r = run(['mutate', '--pod', podYaml, '--config-map', cm, '--output', 'pod']);
  t.equal(r.status, 0, r.stderr);
  const env = JSON.parse(r.stdout).spec.containers[0].env;
  t.same(env.find((e: { name: string }) => e.name === 'AWS_ROLE_ARN').value, ROLE);
  t.ok(env.some((e: { name: string }) => e.name === 'AWS_STS_REGIONAL_ENDPOINTS'));
});
