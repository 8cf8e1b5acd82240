import { capture, runCommand, tmp as tmpDir } from '../helpers/command.js';
import t, { type Test } from 'tap';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { type DoctorFlags, doctorCommand, parseWebhookArgs, renderText, runDoctor, webhookOptions } from '../../src/cli/doctor.js';
import { webhookArgs } from '../../src/doctor/service.js';
import { DOCTOR_CODES, type DoctorReport, podCredentials, privateIssuerProblem } from '../../src/doctor/checks.js';
import { decodeCaBundle, selectorMatches, webhookMatchesPodCreate } from '../../src/doctor/webhook.js';
import { DEFAULT_MUTATION_OPTIONS } from '../../src/config.js';
import { createCA, createServingCertificate } from '../../src/tls/certificates.js';
import { createTestPki } from '../helpers/tls.js';

const ISSUER = 'https://oidc.example.com/cluster';
const P = 'oidc.example.com/cluster';
const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/shop-api`;
const SUB = 'system:serviceaccount:shop:api';

function trustPolicy(sub = SUB, account = ACCOUNT): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { Federated: `arn:aws:iam::${account}:oidc-provider/${P}` },
        Action: 'sts:AssumeRoleWithWebIdentity',
        Condition: { StringEquals: { [`${P}:sub`]: sub, [`${P}:aud`]: 'sts.amazonaws.com' } },
      },
    ],
  });
}

function tmp(t: Test, files: Record<string, string> = {}): string {
  return tmpDir(t, 'piw-doctor-', files);
}


/** Each check's status and code, by name. */
function statuses(report: DoctorReport): Record<string, string> {
  return Object.fromEntries(report.checks.map((c) => [c.name, `${c.status} ${c.code}`]));
}

function check(report: DoctorReport, name: string) {
  const c = report.checks.find((k) => k.name === name);
  if (!c) throw new Error(`no check ${name} in ${report.checks.map((k) => k.name).join(', ')}`);
  return c;
}

/** Offline flags with a policy file. */
function offline(t: Test, more: Partial<DoctorFlags> = {}, policy = trustPolicy()): DoctorFlags {
  const dir = tmp(t, { 'trust.json': policy });
  return { namespace: 'shop', serviceAccount: 'api', issuer: ISSUER, trustPolicy: join(dir, 'trust.json'), roleArn: ROLE, offline: true, ...more };
}

/** Runs the command the way src/cli.ts does; returns the exit code and output. */
function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  return runCommand(doctorCommand, args);
}

// ------------------------------------------------------------------ offline

t.test('offline: a trust policy that admits the ServiceAccount passes, and the pod\'s credentials are listed', async (t) => {
  const c = capture();
  const report = await runDoctor(offline(t), c.io);
  t.equal(report.ok, true);
  t.same(statuses(report), {
    'service-account': 'skip service-account-offline-role-arn',
    'role-arn': 'ok role-arn-set',
    audience: 'ok audience-default',
    webhook: 'skip webhook-not-checked',
    issuer: 'ok issuer-given',
    'trust-policy': 'ok trust-policy-allows',
    accounts: 'ok accounts-match',
    pod: 'ok pod-gets-credentials',
  });
  t.match(check(report, 'trust-policy').detail, `statement 1 allows sts:AssumeRoleWithWebIdentity to ${SUB}`);
  t.same(report.pod?.env, [
    { name: 'AWS_ROLE_ARN', value: ROLE },
    { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token' },
  ]);
  t.match(report.pod?.volumes, [/^aws-iam-token: a projected ServiceAccount token \(audience sts.amazonaws.com, expiring after 86400 s, file token\) mounted at \/var\/run\/secrets\/eks.amazonaws.com\/serviceaccount$/]);
  const text = c.out.join('\n');
  t.match(text, /^ServiceAccount shop\/api \(token subject system:serviceaccount:shop:api\)$/m);
  t.match(text, /^ok {3}trust-policy {5}statement 1 allows/m);
  t.match(text, /^ +- env AWS_ROLE_ARN=arn:aws:iam::111122223333:role\/shop-api$/m);
  t.match(text, /^All 6 checks that ran passed \(2 skipped\)\.$/m);
});

t.test('offline: a policy for another ServiceAccount fails with the sentence that says why', async (t) => {
  const c = capture();
  const report = await runDoctor(offline(t, {}, trustPolicy('system:serviceaccount:other:app')), c.io);
  t.equal(report.ok, false);
  const tp = check(report, 'trust-policy');
  t.equal(tp.status, 'fail');
  t.match(tp.detail, `condition StringEquals ${P}:sub = system:serviceaccount:other:app does not match ${SUB}`);
  t.equal(tp.code, 'trust-policy-no-allow');
  t.match(c.out.join('\n'), /^FAIL trust-policy .* \[trust-policy-no-allow\]$/m);
  t.match(c.out.at(-1), /^1 of 6 checks failed \(2 skipped\)\.$/);
});

t.test('offline: a provider of another issuer is named in the sentence', async (t) => {
  const policy = trustPolicy().replace(`oidc-provider/${P}`, 'oidc-provider/other.example.com');
  const report = await runDoctor(offline(t, {}, policy), capture().io);
  t.match(check(report, 'trust-policy').detail, `the trust policy's Federated principal is arn:aws:iam::${ACCOUNT}:oidc-provider/other.example.com but this cluster's issuer is ${ISSUER}`);
});

t.test('offline: an issuer with a trailing slash still matches the provider', async (t) => {
  const report = await runDoctor(offline(t, { issuer: `${ISSUER}/` }), capture().io);
  t.equal(report.ok, true);
});

t.test('offline: the provider in another account fails the policy and warns about accounts', async (t) => {
  const report = await runDoctor(offline(t, {}, trustPolicy(SUB, '444455556666')), capture().io);
  t.equal(check(report, 'trust-policy').status, 'fail');
  t.match(check(report, 'trust-policy').detail, 'is in account 444455556666 but the role is in account 111122223333');
  t.equal(check(report, 'accounts').status, 'warn');
  t.equal(check(report, 'accounts').code, 'accounts-differ');
  t.match(check(report, 'accounts').detail, 'STS only uses a provider of the role\'s own account');
});

t.test('offline: --audience is the token audience the policy is checked against', async (t) => {
  const report = await runDoctor(offline(t, { audience: 'https://kubernetes.default.svc' }), capture().io);
  t.equal(report.ok, false);
  t.match(check(report, 'audience').detail, 'audience https://kubernetes.default.svc (--audience');
  t.match(check(report, 'trust-policy').detail, `${P}:aud = sts.amazonaws.com does not match https://kubernetes.default.svc`);
  t.match(report.pod?.volumes[0], 'audience https://kubernetes.default.svc');
});

t.test('offline: without --role-arn the ServiceAccount checks are skipped, the policy still runs', async (t) => {
  const report = await runDoctor(offline(t, { roleArn: undefined }), capture().io);
  t.equal(report.ok, true);
  t.same(statuses(report), {
    'service-account': 'skip service-account-offline',
    'role-arn': 'skip role-arn-not-checked',
    audience: 'ok audience-default',
    webhook: 'skip webhook-not-checked',
    issuer: 'ok issuer-given',
    'trust-policy': 'ok trust-policy-allows',
    accounts: 'skip accounts-not-checked',
    pod: 'skip pod-not-worked-out',
  });
  t.match(check(report, 'service-account').detail, 'no cluster and no --role-arn');
  t.equal(report.pod, undefined);
});

t.test('offline: without --trust-policy the policy check is skipped with a hint', async (t) => {
  const report = await runDoctor(offline(t, { trustPolicy: undefined }), capture().io);
  t.equal(report.ok, true);
  t.match(check(report, 'trust-policy').detail, 'aws iam get-role --role-name shop-api --query Role.AssumeRolePolicyDocument');
});

t.test('offline: a malformed --role-arn fails', async (t) => {
  const report = await runDoctor(offline(t, { roleArn: 'arn:aws:iam::123:role/x' }), capture().io);
  t.equal(check(report, 'role-arn').status, 'fail');
  t.equal(check(report, 'role-arn').code, 'role-arn-malformed');
  t.match(check(report, 'role-arn').detail, /^--role-arn "arn:aws:iam::123:role\/x" is not a role ARN of the form arn:<partition>:iam::<12-digit account>:role\/<name>$/);
});

t.test('offline: a cluster-internal issuer fails: STS cannot fetch its documents', async (t) => {
  const report = await runDoctor(offline(t, { issuer: 'https://kubernetes.default.svc.cluster.local' }), capture().io);
  t.equal(check(report, 'issuer').status, 'fail');
  t.equal(check(report, 'issuer').code, 'issuer-private');
  t.match(check(report, 'issuer').detail, 'is not a public name: STS fetches kubernetes.default.svc.cluster.local/.well-known/openid-configuration');
});

t.test('--output json prints { ok, checks } with the evaluator\'s steps', async (t) => {
  const c = capture();
  await runDoctor(offline(t, { output: 'json' }, trustPolicy('system:serviceaccount:other:app')), c.io);
  t.equal(c.out.length, 1);
  const doc = JSON.parse(c.out[0] as string) as DoctorReport;
  t.equal(doc.ok, false);
  t.equal(doc.subject, SUB);
  const tp = doc.checks.find((k) => k.name === 'trust-policy');
  t.equal(tp?.status, 'fail');
  t.equal(tp?.code, 'trust-policy-no-allow', 'the code is in the JSON');
  t.ok(doc.checks.every((k) => k.code.startsWith(`${k.name}-`)), 'every check has a code of its own family');
  t.same(tp?.policy?.map((s) => [s.name, s.ok]), [['principal', true], ['action', true], ['condition', false], ['condition', true], ['decision', false]]);
});

t.test('usage errors: one line, exit 2', async (t) => {
  const dir = tmp(t, { 'bad.json': '{"Statement": [{"Effect": "allow"}]}', 'notjson.json': 'Version: 1' });
  const base = ['--offline', '--namespace', 'shop', '--service-account', 'api', '--issuer', ISSUER];
  const cases: Array<[string, string[], RegExp]> = [
    ['no --namespace', ['--offline', '--service-account', 'api', '--issuer', ISSUER], /^error: required option '-n, --namespace <name>' not specified$/],
    ['no --service-account', ['--offline', '-n', 'shop', '--issuer', ISSUER], /^error: required option '--service-account <name>' not specified$/],
    ['bad namespace', ['--offline', '--namespace', 'Shop', '--service-account', 'api', '--issuer', ISSUER], /^error: option '-n, --namespace <name>' argument 'Shop' is invalid\. not a valid namespace name/],
    ['http issuer', [...base.slice(0, -1), 'http://oidc.example.com'], /--issuer "http:\/\/oidc.example.com" must be an https:\/\/ URL/],
    ['no policy file', [...base, '--trust-policy', join(dir, 'missing.json')], /--trust-policy .*missing.json: cannot read: no such file/],
    ['invalid policy', [...base, '--trust-policy', join(dir, 'bad.json')], /--trust-policy .*bad.json: Statement 1: Effect must be "Allow" or "Deny", not "allow"/],
    ['not JSON', [...base, '--trust-policy', join(dir, 'notjson.json')], /--trust-policy .*notjson.json: the trust policy is not JSON/],
    ['no cluster and no issuer', ['--offline', '--namespace', 'shop', '--service-account', 'api'], /no cluster: give --kubeconfig or --kube-api/],
    ['--offline with --kubeconfig', [...base, '--kubeconfig', join(dir, 'kc')], /^error: option '--offline' cannot be used with option '--kubeconfig <file>'$/],
    ['--offline with --context', [...base, '--context', 'prod'], /^error: option '--offline' cannot be used with option '--context <name>'$/],
    ['--offline with --kube-api', [...base, '--kube-api', 'https://127.0.0.1:6443'], /^error: option '--offline' cannot be used with option '--kube-api <url>'$/],
    ['bad --output', [...base, '--output', 'xml'], /^error: option '-o, --output <format>' argument 'xml' is invalid\. Allowed choices are text, json, yaml\.$/],
    ['--role-arn with a cluster', ['--namespace', 'shop', '--service-account', 'api', '--kube-api', 'http://127.0.0.1:1', '--role-arn', ROLE], /--role-arn is for offline checks/],
    ['missing kubeconfig', ['--namespace', 'shop', '--service-account', 'api', '--kubeconfig', join(dir, 'kc')], /--kubeconfig .*kc: no such file/],
    ['bad annotation prefix', [...base, '--annotation-prefix', 'a/b'], /--annotation-prefix "a\/b"/],
    ['bad timeout', [...base, '--timeout', 'soon'], /expected a duration/],
  ];
  for (const [name, args, message] of cases) {
    const r = await cli(args);
    t.equal(r.code, 2, name);
    t.equal(r.err.length, 1, `${name}: one line`);
    t.match(r.err[0], message, name);
  }
  const r = await cli([...base, '--output', 'xml']);
  t.equal(r.code, 2, 'commander refuses an unknown --output');
  const n = await cli(['--offline', '-n', 'Shop', '--service-account', 'api', '--issuer', ISSUER]);
  t.equal(n.code, 2, '-n is checked like --namespace');
  t.match(n.err.join('\n'), /not a valid namespace name/);
});

t.test('exit codes: 0 when every check that ran passed, 1 otherwise', async (t) => {
  const dir = tmp(t, { 'good.json': trustPolicy(), 'other.json': trustPolicy('system:serviceaccount:x:y') });
  const base = ['--offline', '--namespace', 'shop', '--service-account', 'api', '--issuer', ISSUER, '--role-arn', ROLE];
  const good = await cli([...base, '--trust-policy', join(dir, 'good.json')]);
  t.equal(good.code, 0);
  t.same(good.err, []);
  const bad = await cli([...base, '--trust-policy', join(dir, 'other.json')]);
  t.equal(bad.code, 1);
  t.same(bad.err, [], 'a failed check is output, not an error');
});

t.test('the README lists every doctor code, once, under its check', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const table = readme.slice(readme.indexOf('| Check | Codes |')).split('\n\n')[0] as string;
  const rows = table.split('\n').slice(2).map((row) => row.split('|').map((cell) => cell.trim()));
  const listed = rows.flatMap(([, check, codes]) => [...(codes ?? '').matchAll(/`([a-z-]+)`/g)].map((m) => ({ check: (check ?? '').replace(/`/g, ''), code: m[1] as string })));
  t.same(listed.map((l) => l.code).sort(), [...DOCTOR_CODES].sort());
  const serviceCodes = new Set(['service-missing', 'service-no-port', 'service-no-endpoints']);
  t.same(listed.filter((l) => !l.code.startsWith(`${l.check}-`) && !(l.check === 'webhook-answers' && serviceCodes.has(l.code))), [], 'codes start with their check\'s name');
});

t.test('renderText aligns names and indents details', async (t) => {
  const lines = renderText({
    ok: false,
    namespace: 'a',
    serviceAccount: 'b',
    subject: 'system:serviceaccount:a:b',
    checks: [
      { name: 'x', code: 'role-arn-set', status: 'ok', detail: 'one' },
      { name: 'longer-name', code: 'service-missing', status: 'fail', detail: 'two', details: ['why'] },
      { name: 'w', code: 'accounts-differ', status: 'warn', detail: 'three' },
      { name: 's', code: 'trust-policy-not-given', status: 'skip', detail: 'four' },
    ],
  });
  t.same(lines, [
    'ServiceAccount a/b (token subject system:serviceaccount:a:b)',
    '',
    'ok   x            one',
    'FAIL longer-name  two [service-missing]',
    '                  - why',
    'warn w            three [accounts-differ]',
    'skip s            four',
    '',
    '1 of 3 checks failed (1 warning(s), 1 skipped).',
  ]);
});

// ------------------------------------------------------------------ pieces

t.test('podCredentials: nothing without a role, the engine\'s env and volume with one', async (t) => {
  const none = podCredentials('shop', 'api', { warnings: [] }, DEFAULT_MUTATION_OPTIONS);
  t.same(none, { env: [], volumes: [], warnings: [] });
  const some = podCredentials('shop', 'api', { roleArn: ROLE, audience: 'custom', tokenExpiration: 3600, warnings: [] }, DEFAULT_MUTATION_OPTIONS);
  t.same(some.env.map((e) => e.name), ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
  t.match(some.volumes[0], 'audience custom, expiring after 3600 s');
});

t.test('webhook rules and selectors', async (t) => {
  const rule = { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] };
  t.ok(webhookMatchesPodCreate({ name: 'w', sideEffects: 'None', admissionReviewVersions: ['v1'], clientConfig: {}, rules: [rule] }));
  const variants: Array<[string, object, boolean]> = [
    ['wildcards', { operations: ['*'], apiGroups: ['*'], apiVersions: ['*'], resources: ['*'] }, true],
    ['*/*', { ...rule, resources: ['*/*'] }, true],
    ['UPDATE only', { ...rule, operations: ['UPDATE'] }, false],
    ['pods/* is subresources only', { ...rule, resources: ['pods/*'] }, false],
    ['apps group', { ...rule, apiGroups: ['apps'] }, false],
    ['cluster scope', { ...rule, scope: 'Cluster' }, false],
  ];
  for (const [name, r, want] of variants) {
    t.equal(webhookMatchesPodCreate({ name: 'w', sideEffects: 'None', admissionReviewVersions: ['v1'], clientConfig: {}, rules: [r] }), want, name);
  }
  const labels = { 'kubernetes.io/metadata.name': 'shop', team: 'a' };
  t.ok(selectorMatches(undefined, labels));
  t.ok(selectorMatches({}, labels));
  t.ok(selectorMatches({ matchLabels: { team: 'a' } }, labels));
  t.notOk(selectorMatches({ matchLabels: { team: 'b' } }, labels));
  t.ok(selectorMatches({ matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['pod-identity-webhook'] }] }, labels));
  t.notOk(selectorMatches({ matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['shop'] }] }, labels));
  t.ok(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'DoesNotExist' }] }, labels));
  t.notOk(selectorMatches({ matchExpressions: [{ key: 'x', operator: 'Exists' }] }, labels));
  t.notOk(selectorMatches({ matchExpressions: [{ key: 'team', operator: 'In', values: ['b', 'c'] }] }, labels));
});

t.test('caBundle decoding and private issuers', async (t) => {
  t.same(decodeCaBundle(undefined), { problem: 'it has no caBundle' });
  t.same(decodeCaBundle(Buffer.from('hello').toString('base64')), { problem: 'its caBundle is not a base64-encoded PEM certificate' });
  const pki = createTestPki();
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
  t.equal(decodeCaBundle(Buffer.from(pki.caCert).toString('base64')).certificate?.ca, true);

  for (const issuer of ['https://kubernetes.default.svc', 'https://kubernetes.default.svc.cluster.local', 'https://10.0.0.1:6443', 'https://localhost', 'https://api.internal', 'https://[fd00::1]']) {
    t.ok(privateIssuerProblem(issuer), issuer);
  }
  for (const issuer of ['https://oidc.example.com/cluster', 'https://s3.eu-west-1.amazonaws.com/bucket', 'https://8.8.8.8']) {
    t.equal(privateIssuerProblem(issuer), undefined, issuer);
  }
});

// ------------------------------------------------------------------ with a cluster

interface FakeCluster {
  kubeconfig: string;
  serviceAccounts: Map<string, Record<string, string> | undefined>;
  webhookConfigs: Map<string, object>;
  namespaceLabels: Map<string, Record<string, string>>;
  /** status 0: the proxy never answers. */
  proxy: { status: number; body: string };
  issuer: string;
  paths: string[];
  /** Services by namespace/name. */
  services: Map<string, object>;
  /** EndpointSlices by namespace/service name; undefined: the API has none (404 for the resource). */
  endpointSlices: Map<string, object[]> | undefined;
  /** Endpoints by namespace/name (older clusters). */
  endpoints: Map<string, object>;
  deployments: Map<string, object[]>;
}

/** Just the reads doctor makes, over plain http with a bearer token. */
async function fakeCluster(t: Test): Promise<FakeCluster> {
  const state: FakeCluster = {
    kubeconfig: '',
    serviceAccounts: new Map(),
    webhookConfigs: new Map(),
    namespaceLabels: new Map(),
    proxy: { status: 200, body: 'ok\n' },
    issuer: ISSUER,
    paths: [],
    services: new Map(),
    endpointSlices: new Map(),
    endpoints: new Map(),
    deployments: new Map(),
  };
  const notFound = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'not found' };
  const server: Server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    state.paths.push(path);
    const json = (code: number, body: unknown): void => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== 'Bearer doctor-token') return json(401, { kind: 'Status', code: 401, message: 'Unauthorized' });
    let m: RegExpExecArray | null;
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)$/.exec(path))) {
      const key = `${m[1]}/${m[2]}`;
      if (!state.serviceAccounts.has(key)) return json(404, notFound);
      const annotations = state.serviceAccounts.get(key);
      return json(200, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { namespace: m[1], name: m[2], ...(annotations ? { annotations } : {}) } });
    }
    if ((m = /^\/apis\/admissionregistration.k8s.io\/v1\/mutatingwebhookconfigurations\/([^/]+)$/.exec(path))) {
      const config = state.webhookConfigs.get(m[1] as string);
      return config ? json(200, config) : json(404, notFound);
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/]+)\/proxy\/healthz$/.exec(path))) {
      if (state.proxy.status === 0) return undefined;
      res.writeHead(state.proxy.status, { 'Content-Type': state.proxy.status === 200 ? 'text/plain' : 'application/json' });
      return res.end(state.proxy.body);
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/:]+)$/.exec(path))) {
      const svc = state.services.get(`${m[1]}/${m[2]}`);
      return svc ? json(200, svc) : json(404, notFound);
    }
    if ((m = /^\/apis\/discovery.k8s.io\/v1\/namespaces\/([^/]+)\/endpointslices$/.exec(path))) {
      if (!state.endpointSlices) return json(404, notFound);
      const service = /^kubernetes.io\/service-name=(.+)$/.exec(url.searchParams.get('labelSelector') ?? '')?.[1];
      return json(200, { kind: 'EndpointSliceList', items: state.endpointSlices.get(`${m[1]}/${service}`) ?? [] });
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/endpoints\/([^/]+)$/.exec(path))) {
      const ep = state.endpoints.get(`${m[1]}/${m[2]}`);
      return ep ? json(200, ep) : json(404, notFound);
    }
    if ((m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments$/.exec(path))) {
      return json(200, { kind: 'DeploymentList', items: state.deployments.get(m[1] as string) ?? [] });
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(path))) {
      const labels = state.namespaceLabels.get(m[1] as string) ?? { 'kubernetes.io/metadata.name': m[1] as string };
      return json(200, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: m[1], labels } });
    }
    if (path === '/.well-known/openid-configuration' && state.issuer === '') return json(404, notFound);
    if (path === '/.well-known/openid-configuration') return json(200, { issuer: state.issuer, jwks_uri: `${state.issuer}/openid/v1/jwks` });
    if (path === '/openid/v1/jwks') return json(200, { keys: [{ kty: 'RSA', kid: 'k', n: 'AQAB', e: 'AQAB', use: 'sig', alg: 'RS256' }] });
    return json(404, notFound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  state.kubeconfig = kubeconfigFor(t, (server.address() as AddressInfo).port);
  return state;
}

/** client-node refuses plain http unless TLS verification is (pointlessly) switched off. */
function kubeconfigFor(t: Test, port: number): string {
  const path = join(tmp(t), 'kubeconfig');
  writeFileSync(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: { token: 'doctor-token' } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
      'current-context': 'fake',
    }),
  );
  return path;
}

function webhookConfig(clientConfig: object, more: object = {}): object {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'pod-identity-webhook' },
    webhooks: [
      {
        name: 'pod-identity-webhook.amazonaws.com',
        clientConfig,
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
        failurePolicy: 'Ignore',
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['pod-identity-webhook'] }] },
        ...more,
      },
    ],
  };
}

/** An HTTPS webhook endpoint on 127.0.0.1 with a certificate from `pki`. */
async function webhookEndpoint(t: Test, cert: { cert: string; key: string }): Promise<string> {
  const server = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    res.writeHead(req.url === '/healthz' ? 200 : 404, { 'Content-Type': 'text/plain' });
    res.end('ok\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}/mutate`;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

t.test('cluster: everything in order (url webhook), policy checked against the discovered issuer', async (t) => {
  const pki = createTestPki();
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
  const url = await webhookEndpoint(t, pki.issue('webhook'));
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ url, caBundle: b64(pki.caCert) }));
  const dir = tmp(t, { 'trust.json': trustPolicy() });

  const c = capture();
  const report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, trustPolicy: join(dir, 'trust.json') }, c.io);
  t.same(report.checks.map((k) => [k.name, k.status, k.code]), [
    ['service-account', 'ok', 'service-account-found'],
    ['role-arn', 'ok', 'role-arn-set'],
    ['audience', 'ok', 'audience-default'],
    ['webhook-config', 'ok', 'webhook-config-found'],
    ['webhook-rules', 'ok', 'webhook-rules-match'],
    ['ca-bundle', 'ok', 'ca-bundle-valid'],
    ['webhook-answers', 'ok', 'webhook-answers-ok'],
    ['webhook-flags', 'skip', 'webhook-flags-not-found'],
    ['issuer', 'ok', 'issuer-discovered'],
    ['trust-policy', 'ok', 'trust-policy-allows'],
    ['accounts', 'ok', 'accounts-match'],
    ['pod', 'ok', 'pod-gets-credentials'],
  ], c.out.join('\n'));
  t.equal(report.ok, true);
  t.match(check(report, 'role-arn').detail, `annotation eks.amazonaws.com/role-arn is ${ROLE}`);
  t.match(check(report, 'webhook-rules').detail, 'is called for pod CREATE in namespace shop (failurePolicy Ignore)');
  t.match(check(report, 'ca-bundle').detail, 'the caBundle holds a CA certificate: subject CN=test-ca');
  t.match(check(report, 'webhook-answers').detail, /answered HTTP 200 to GET \/healthz over TLS that the caBundle verifies \(subject CN=webhook, SANs IP:127.0.0.1, DNS:localhost/);
  t.match(check(report, 'issuer').detail, `the API server's issuer is ${ISSUER} (from its discovery document; it serves 1 key(s))`);
  t.ok(cluster.paths.includes('/.well-known/openid-configuration'), 'the issuer came from discovery');
});

t.test('cluster: a caBundle that does not verify the serving certificate says which certificate was presented', async (t) => {
  const pki = createTestPki();
  const otherPki = createTestPki();
  t.teardown(() => {
    rmSync(pki.dir, { recursive: true, force: true });
    rmSync(otherPki.dir, { recursive: true, force: true });
  });
  const url = await webhookEndpoint(t, pki.issue('served', { cn: 'served-by-old-ca' }));
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ url, caBundle: b64(otherPki.caCert) }));

  const report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.equal(report.ok, false);
  const answers = check(report, 'webhook-answers');
  t.equal(answers.status, 'fail');
  t.match(answers.detail, /^the caBundle does not verify the serving certificate at 127.0.0.1:\d+ \(it was not issued by the caBundle's CA\); it presented subject CN=served-by-old-ca, SANs IP:127.0.0.1, DNS:localhost, issued by CN=test-ca, valid until \d{4}-/);
  t.match(check(report, 'pod').detail, 'but only once the webhook problems above are fixed');
});

t.test('cluster: a serving certificate for another name, and an expired one', async (t) => {
  const DAY = 86_400_000;
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(Date.now() + 30 * DAY) });
  const svcName = 'pod-identity-webhook.pod-identity-webhook.svc';
  const other = await createServingCertificate(ca, { keyType: 'ec', dnsNames: [svcName], ipAddresses: [], notAfter: new Date(Date.now() + DAY) });
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ url: await webhookEndpoint(t, other), caBundle: b64(ca.cert) }));
  let report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.equal(check(report, 'webhook-answers').status, 'fail');
  t.match(check(report, 'webhook-answers').detail, `verifies with the caBundle but is not for 127.0.0.1; it presented subject CN=${svcName}, SANs DNS:${svcName}`);

  const expired = await createServingCertificate(ca, {
    keyType: 'ec', dnsNames: [], ipAddresses: ['127.0.0.1'], now: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() - DAY),
  });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ url: await webhookEndpoint(t, expired), caBundle: b64(ca.cert) }));
  report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.match(check(report, 'webhook-answers').detail, /the caBundle does not verify the serving certificate at 127\.0\.0\.1:\d+ \(it has expired\); it presented .*, expired on /);
});

const SVC_NS = 'pod-identity-webhook';
const SVC_NAME = 'pod-identity-webhook';
const SELECTOR = { app: 'pod-identity-webhook' };

/** The webhook's Service, an EndpointSlice with one endpoint at 127.0.0.1:port, and (optionally) its Deployment. */
function serviceBacked(cluster: FakeCluster, port: number, ready: boolean | undefined = true): void {
  cluster.services.set(`${SVC_NS}/${SVC_NAME}`, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: SVC_NS, name: SVC_NAME },
    spec: { selector: SELECTOR, ports: [{ name: 'https', port: 443, targetPort: 8443 }] },
  });
  cluster.endpointSlices?.set(`${SVC_NS}/${SVC_NAME}`, [{
    kind: 'EndpointSlice',
    ports: [{ name: 'https', port }],
    endpoints: [{ addresses: ['127.0.0.1'], ...(ready === undefined ? {} : { conditions: { ready } }) }],
  }]);
}

function deployment(args: string[]): object {
  return {
    kind: 'Deployment',
    metadata: { namespace: SVC_NS, name: 'pod-identity-webhook' },
    spec: {
      selector: { matchLabels: SELECTOR },
      template: {
        metadata: { labels: { ...SELECTOR, version: 'x' } },
        spec: { containers: [{ name: 'sidecar', image: 'proxy' }, { name: 'webhook', image: 'pod-identity-webhook:0.2.0', args }] },
      },
    },
  };
}

/** An HTTPS endpoint serving a certificate for the Service's DNS name, signed by `ca`. */
async function serviceEndpoint(t: Test, ca: { cert: string; key: string }): Promise<number> {
  const serving = await createServingCertificate(ca as Parameters<typeof createServingCertificate>[0], {
    keyType: 'ec', dnsNames: [`${SVC_NAME}.${SVC_NS}.svc`], ipAddresses: [], notAfter: new Date(Date.now() + 86_400_000),
  });
  const url = await webhookEndpoint(t, serving);
  return Number(new URL(url).port);
}

t.test('cluster: service webhooks: Service, ready endpoints, the proxy, and the caBundle against the serving certificate', async (t) => {
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(Date.now() + 86_400_000) });
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/audience': 'custom-aud' });
  const service = { service: { namespace: SVC_NS, name: SVC_NAME, path: '/mutate', port: 443 }, caBundle: b64(ca.cert) };
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig(service));
  serviceBacked(cluster, await serviceEndpoint(t, ca));
  const run = (more: Partial<DoctorFlags> = {}) => runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, ...more }, capture().io);

  const ok = await run();
  t.equal(check(ok, 'webhook-answers').status, 'ok');
  t.match(check(ok, 'webhook-answers').detail, 'the Service pod-identity-webhook/pod-identity-webhook port 443 answered /healthz through the API server\'s service proxy (1 ready endpoint(s))');
  t.ok(cluster.paths.includes('/api/v1/namespaces/pod-identity-webhook/services/https:pod-identity-webhook:443/proxy/healthz'));
  t.equal(check(ok, 'webhook-tls').status, 'ok');
  t.match(check(ok, 'webhook-tls').detail, /^the serving certificate of endpoint 127\.0\.0\.1:\d+ verifies with the caBundle for pod-identity-webhook\.pod-identity-webhook\.svc$/);
  t.match(check(ok, 'audience').detail, 'audience custom-aud (annotation eks.amazonaws.com/audience)');
  t.equal(check(ok, 'trust-policy').status, 'skip');
  t.equal(ok.ok, true);

  cluster.proxy = { status: 503, body: JSON.stringify({ kind: 'Status', code: 503, message: 'error trying to reach service: dial tcp 10.0.0.7:8443: connect: connection refused' }) };
  const down = await run();
  t.equal(down.ok, false);
  t.match(check(down, 'webhook-answers').detail, 'does not answer through the API server\'s service proxy: HTTP 503: error trying to reach service');
  t.equal(check(down, 'webhook-answers').code, 'webhook-answers-error');

  cluster.proxy = { status: 0, body: '' };
  const hung = await run({ timeout: 300 });
  t.equal(check(hung, 'webhook-answers').status, 'fail');
  t.equal(check(hung, 'webhook-answers').code, 'webhook-answers-timeout', 'a timeout is told apart by its type');
  t.match(check(hung, 'webhook-answers').detail, 'did not answer within 0.3 s through the API server\'s service proxy (1 ready endpoint(s)): the webhook is hanging or a network policy drops the traffic');
});

t.test('cluster: no Service, no ready endpoints and no matching pods are three different answers', async (t) => {
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(Date.now() + 86_400_000) });
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ service: { namespace: SVC_NS, name: SVC_NAME, port: 443 }, caBundle: b64(ca.cert) }));
  // The proxy's answer when nothing is behind the Service, as in the report that prompted these checks.
  cluster.proxy = { status: 404, body: JSON.stringify({ kind: 'Status', code: 404, message: 'services "pod-identity-webhook" not found' }) };
  const run = () => runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);

  let report = await run();
  t.equal(check(report, 'webhook-answers').status, 'fail');
  t.equal(check(report, 'webhook-answers').detail, 'the Service pod-identity-webhook/pod-identity-webhook that the webhook configuration names does not exist, so the API server cannot call the webhook');
  t.equal(check(report, 'webhook-answers').code, 'service-missing');

  serviceBacked(cluster, 8443, false);
  report = await run();
  t.equal(check(report, 'webhook-answers').detail,
    'the Service pod-identity-webhook/pod-identity-webhook exists but has no ready endpoints: 1 endpoint(s) are not ready: the webhook\'s pods are starting, failing /readyz or crashing ' +
    '(kubectl -n pod-identity-webhook get pods -l app=pod-identity-webhook)');

  cluster.endpointSlices?.set(`${SVC_NS}/${SVC_NAME}`, []);
  report = await run();
  t.match(check(report, 'webhook-answers').detail, 'exists but has no ready endpoints: no running pod matches its selector app=pod-identity-webhook');
  t.equal(check(report, 'webhook-answers').code, 'service-no-endpoints');

  // Clusters without EndpointSlices: the Endpoints object says the same.
  cluster.endpointSlices = undefined;
  cluster.endpoints.set(`${SVC_NS}/${SVC_NAME}`, { kind: 'Endpoints', subsets: [{ notReadyAddresses: [{ ip: '10.0.0.7' }, { ip: '10.0.0.8' }], ports: [{ name: 'https', port: 8443 }] }] });
  report = await run();
  t.match(check(report, 'webhook-answers').detail, 'exists but has no ready endpoints: 2 endpoint(s) are not ready');

  cluster.services.set(`${SVC_NS}/${SVC_NAME}`, { kind: 'Service', spec: { selector: SELECTOR, ports: [{ port: 8443 }] } });
  report = await run();
  t.match(check(report, 'webhook-answers').detail, 'has no port 443, which the webhook configuration names (its ports: 8443)');
  t.equal(check(report, 'webhook-answers').code, 'service-no-port');
});

t.test('cluster: a caBundle that does not verify the Service\'s serving certificate fails webhook-tls', async (t) => {
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(Date.now() + 86_400_000) });
  const other = await createCA({ keyType: 'ec', notAfter: new Date(Date.now() + 86_400_000) });
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ service: { namespace: SVC_NS, name: SVC_NAME, port: 443 }, caBundle: b64(other.cert) }));
  serviceBacked(cluster, await serviceEndpoint(t, ca));
  const report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.equal(check(report, 'webhook-answers').status, 'ok', 'the proxy does not verify the certificate');
  t.equal(check(report, 'webhook-tls').status, 'fail');
  t.equal(check(report, 'webhook-tls').code, 'webhook-tls-unverified');
  t.match(check(report, 'webhook-tls').detail, /^the caBundle does not verify the serving certificate at 127\.0\.0\.1:\d+ \(.+\); it presented subject CN=pod-identity-webhook\.pod-identity-webhook\.svc/);
  t.equal(report.ok, false);

  // An endpoint doctor cannot reach (a pod IP outside this network) is a skip, not a failure.
  serviceBacked(cluster, 1);
  const unreachable = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.equal(check(unreachable, 'webhook-tls').status, 'skip');
  t.equal(check(unreachable, 'webhook-tls').code, 'webhook-tls-unreachable');
  t.match(check(unreachable, 'webhook-tls').detail, 'cannot connect to 127.0.0.1:1: ECONNREFUSED; run doctor inside the cluster');
});

t.test('cluster: the predicted pod uses the webhook\'s own flags, from its Deployment; doctor\'s flags win', async (t) => {
  const ca = await createCA({ keyType: 'ec', notAfter: new Date(Date.now() + 86_400_000) });
  const cluster = await fakeCluster(t);
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ service: { namespace: SVC_NS, name: SVC_NAME, port: 443 }, caBundle: b64(ca.cert) }));
  serviceBacked(cluster, await serviceEndpoint(t, ca));
  cluster.deployments.set(SVC_NS, [
    { kind: 'Deployment', metadata: { name: 'unrelated' }, spec: { template: { metadata: { labels: { app: 'other' } }, spec: { containers: [{ name: 'c', args: ['--sts-regional-endpoint=false'] }] } } } },
    deployment(['--port=8443', '--sts-regional-endpoint=true', '--aws-default-region', 'eu-west-1', '--token-audience=irsa', '--token-expiration', '3600', '--log-format=json']),
  ]);
  const names = (r: DoctorReport) => r.pod?.env.map((e) => e.name);

  const report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.equal(check(report, 'webhook-flags').status, 'ok');
  t.match(check(report, 'webhook-flags').detail, 'the webhook runs with --port=8443 --sts-regional-endpoint=true --aws-default-region eu-west-1 --token-audience=irsa --token-expiration 3600 --log-format=json (Deployment pod-identity-webhook/pod-identity-webhook, container webhook)');
  t.same(names(report), ['AWS_STS_REGIONAL_ENDPOINTS', 'AWS_DEFAULT_REGION', 'AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
  t.same(report.pod?.env.find((e) => e.name === 'AWS_REGION')?.value, 'eu-west-1');
  t.match(report.pod?.volumes[0], 'audience irsa, expiring after 3600 s');
  t.match(check(report, 'audience').detail, 'audience irsa (the webhook\'s --token-audience; the ServiceAccount sets none)');
  t.same(report.webhookFlags?.source, 'Deployment pod-identity-webhook/pod-identity-webhook, container webhook');

  // Through the command line: only flags given there override the Deployment's.
  const cliRun = await runCommand(doctorCommand, ['-n', 'shop', '--service-account', 'api', '--kubeconfig', cluster.kubeconfig, '--sts-regional-endpoint=false', '-o', 'json']);
  const doc = JSON.parse(cliRun.out.join('\n')) as DoctorReport;
  t.same(names(doc), ['AWS_DEFAULT_REGION', 'AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
  t.match(doc.pod?.volumes[0], 'audience irsa, expiring after 3600 s');

  // Without a Deployment: the defaults and doctor's flags, and the skip says so.
  cluster.deployments.clear();
  const bare = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, awsDefaultRegion: 'us-west-2' }, capture().io);
  t.equal(check(bare, 'webhook-flags').status, 'skip');
  t.same(names(bare), ['AWS_DEFAULT_REGION', 'AWS_REGION', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE']);
});

t.test('-o yaml prints the report as YAML', async (t) => {
  const r = await cli(['--offline', '-n', 'shop', '--service-account', 'api', '--issuer', ISSUER, '--role-arn', ROLE, '-o', 'yaml']);
  t.equal(r.code, 0, r.err.join('\n'));
  const doc = parse(r.out.join('\n')) as DoctorReport;
  t.equal(doc.ok, true);
  t.equal(doc.subject, SUB);
});

t.test('cluster: what is missing, one failure at a time', async (t) => {
  const pki = createTestPki();
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
  const service = { service: { namespace: 'pod-identity-webhook', name: 'pod-identity-webhook', port: 443 }, caBundle: b64(pki.caCert) };
  const cluster = await fakeCluster(t);
  const run = () => runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig(service));
  // A Service with a ready endpoint doctor cannot reach: the proxy answers for it.
  serviceBacked(cluster, 1);

  let report = await run();
  t.match(check(report, 'service-account').detail, 'ServiceAccount shop/api does not exist');
  t.same([check(report, 'service-account').code, check(report, 'pod').code], ['service-account-missing', 'pod-service-account-missing']);
  t.equal(check(report, 'pod').detail, 'nothing: ServiceAccount shop/api does not exist');

  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/token-expiration': 'soon' });
  report = await run();
  t.equal(check(report, 'role-arn').status, 'fail');
  t.match(check(report, 'role-arn').detail, 'has no eks.amazonaws.com/role-arn annotation, so the webhook gives its pods nothing');
  t.equal(check(report, 'annotations').status, 'warn');
  t.match(check(report, 'annotations').details, [/token-expiration="soon" is not a whole number/]);
  t.equal(check(report, 'pod').detail, 'nothing: the ServiceAccount has no eks.amazonaws.com/role-arn annotation');
  t.same([check(report, 'role-arn').code, check(report, 'annotations').code, check(report, 'pod').code], ['role-arn-missing', 'annotations-ignored', 'pod-gets-nothing']);

  // Which warning is about the role ARN is known by construction, not by its words: a value that
  // mentions the role-arn annotation stays a warning about its own annotation.
  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': 'not-an-arn', 'eks.amazonaws.com/token-expiration': 'eks.amazonaws.com/role-arn' });
  report = await run();
  t.equal(check(report, 'role-arn').code, 'role-arn-malformed');
  t.match(check(report, 'role-arn').detail, /^annotation eks.amazonaws.com\/role-arn="not-an-arn" is not a role ARN/);
  t.equal(check(report, 'annotations').code, 'annotations-ignored');
  t.match(check(report, 'annotations').details, [/^annotation eks.amazonaws.com\/token-expiration="eks.amazonaws.com\/role-arn" is not a whole number/]);

  cluster.serviceAccounts.set('shop/api', { 'eks.amazonaws.com/role-arn': ROLE });
  cluster.webhookConfigs.clear();
  report = await run();
  t.match(check(report, 'webhook-config').detail, 'MutatingWebhookConfiguration pod-identity-webhook does not exist');
  t.equal(check(report, 'webhook-config').code, 'webhook-config-missing');
  report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, webhookConfig: 'other' }, capture().io);
  t.match(check(report, 'webhook-config').detail, 'MutatingWebhookConfiguration other does not exist');

  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig(service, { rules: [{ operations: ['UPDATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }] }));
  report = await run();
  t.match(check(report, 'webhook-rules').detail, 'has a rule for CREATE of pods');
  t.equal(check(report, 'webhook-rules').code, 'webhook-rules-no-pod-create');

  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig(service));
  cluster.namespaceLabels.set('shop', { 'kubernetes.io/metadata.name': 'shop' });
  const excluded = await runDoctor({ namespace: 'pod-identity-webhook', serviceAccount: 'api', kubeconfig: cluster.kubeconfig }, capture().io);
  t.match(check(excluded, 'webhook-rules').detail, 'its namespaceSelector excludes namespace pod-identity-webhook');
  t.equal(check(excluded, 'webhook-rules').code, 'webhook-rules-namespace-excluded');

  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig(service, { objectSelector: { matchLabels: { 'irsa': 'on' } } }));
  report = await run();
  t.match(check(report, 'webhook-rules').detail, 'its objectSelector requires pod labels');
  t.equal(check(report, 'webhook-rules').code, 'webhook-rules-object-selector');

  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig({ service: service.service }));
  report = await run();
  t.equal(check(report, 'ca-bundle').status, 'fail');
  t.equal(check(report, 'ca-bundle').code, 'ca-bundle-missing');
  t.match(check(report, 'ca-bundle').detail, 'it has no caBundle, so the API server cannot verify it (run `pod-identity-webhook certs --patch-webhook pod-identity-webhook`');

  cluster.webhookConfigs.set('pod-identity-webhook', webhookConfig(service));
  cluster.issuer = 'https://kubernetes.default.svc.cluster.local';
  const dir = tmp(t, { 'trust.json': trustPolicy() });
  report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, trustPolicy: join(dir, 'trust.json') }, capture().io);
  t.equal(check(report, 'issuer').status, 'fail');
  t.match(check(report, 'issuer').detail, 'the API server\'s issuer https://kubernetes.default.svc.cluster.local will not work');
  t.match(check(report, 'trust-policy').detail, 'this cluster\'s issuer is https://kubernetes.default.svc.cluster.local');
  t.same([check(report, 'issuer').code, check(report, 'trust-policy').code], ['issuer-private', 'trust-policy-no-allow']);

  cluster.issuer = '';
  report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, trustPolicy: join(dir, 'trust.json') }, capture().io);
  t.match(check(report, 'issuer').detail, 'cannot learn the issuer: GET /.well-known/openid-configuration: HTTP 404: not found (is ServiceAccountIssuerDiscovery enabled');
  t.match(check(report, 'trust-policy').detail, 'not checked: the issuer is unknown');
  t.same([check(report, 'issuer').code, check(report, 'trust-policy').code], ['issuer-undiscoverable', 'trust-policy-not-checked']);

  // --issuer overrides discovery.
  report = await runDoctor({ namespace: 'shop', serviceAccount: 'api', kubeconfig: cluster.kubeconfig, trustPolicy: join(dir, 'trust.json'), issuer: ISSUER }, capture().io);
  t.equal(check(report, 'trust-policy').status, 'ok');
  t.equal(report.ok, true);
});

t.test('cluster: an API server that does not answer is reported within the timeout', async (t) => {
  const server = http.createServer(() => {}); // never answers
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  // The server never answers: a report at all means the timeout ended the requests.
  const report = await runDoctor(
    { namespace: 'shop', serviceAccount: 'api', kubeconfig: kubeconfigFor(t, (server.address() as AddressInfo).port), timeout: 200 },
    capture().io,
  );
  t.match(check(report, 'service-account').detail, 'no answer within 0.2 s');
  t.match(check(report, 'issuer').detail, 'no answer within 0.2 s');
});

t.test('the shipped Deployment\'s args are read as the webhook reads them', async (t) => {
  const doc = parse(readFileSync(new URL('../../manifests/base/deployment.yaml', import.meta.url), 'utf8')) as {
    spec: { template: { spec: { containers: Array<{ name: string; command?: string[]; args?: string[] }> } } };
  };
  const container = doc.spec.template.spec.containers[0] as { command?: string[]; args?: string[] };
  const args = webhookArgs(container);
  t.ok(args.includes('--sts-regional-endpoint=true'), 'the manifest turns on regional STS');
  const options = webhookOptions({}, DEFAULT_MUTATION_OPTIONS.annotationPrefix, args);
  t.equal(options.regionalSts, true);
  t.equal(options.tokenExpiration, 86400);
  // Doctor's own flag wins; a command that names `serve` is read after it.
  t.equal(webhookOptions({ stsRegionalEndpoint: false }, DEFAULT_MUTATION_OPTIONS.annotationPrefix, args).regionalSts, false);
  t.same(webhookArgs({ command: ['node', 'dist/cli.js', 'serve'], args: ['--aws-default-region=eu-west-1'] }), ['--aws-default-region=eu-west-1']);
  t.same(webhookArgs({ command: ['node', 'dist/cli.js', 'serve', '--token-expiration', '3600'] }), ['--token-expiration', '3600']);
  // Flags the webhook would refuse are ignored rather than guessed at.
  t.equal(parseWebhookArgs(['--token-expiration=soon']), undefined);
  t.equal(webhookOptions({}, DEFAULT_MUTATION_OPTIONS.annotationPrefix, ['--token-expiration=soon', '--sts-regional-endpoint']).tokenExpiration, 86400);
});
