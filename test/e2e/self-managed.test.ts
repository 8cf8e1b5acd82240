// The self-managed-cluster kit, proved against a real API server: keys.json
// from `oidc` verifies the API server's tokens; the real AWS SDK, given only
// what the webhook injected, gets the role's credentials from an STS stand-in
// that checks the token and the trust policy; `doctor` names what is wrong.
import t, { type Test } from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { V1Pod } from '@kubernetes/client-node';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { type Cluster, startCluster, startWebhook, tempDir, until, WEBHOOK_HOST, webhookConfiguration, webhookCertificates } from '../helpers/cluster.js';
import { cli } from '../helpers/serve-command.js';
import { credentialsForRole, startStsStandin } from '../helpers/sts-standin.js';

const ISSUER = 'https://oidc.e2e.example.com/cluster-1';
const PROVIDER = 'oidc.e2e.example.com/cluster-1';
const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/e2e-app`;
const CONFIG = 'a-pod-identity-webhook-oidc-e2e';
const LABEL = 'piw-oidc-e2e';

const dir = tempDir('piw-oidc-');
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = join(dir, 'sa-signing.key');
const publicKeyFile = join(dir, 'sa.pub');
writeFileSync(signingKey, privateKey.export({ type: 'pkcs8', format: 'pem' }));
writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));


function trustPolicy(sub: string, provider = PROVIDER, aud = 'sts.amazonaws.com'): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [{
      Effect: 'Allow',
      Principal: { Federated: `arn:aws:iam::${ACCOUNT}:oidc-provider/${provider}` },
      Action: 'sts:AssumeRoleWithWebIdentity',
      Condition: { StringEquals: { [`${provider}:sub`]: sub, [`${provider}:aud`]: aud } },
    }],
  });
}

const started = await startCluster('e2e-oidc', {
  PIW_SA_ISSUER: ISSUER,
  PIW_SA_SIGNING_KEY_FILE: signingKey,
  PIW_SA_KEY_FILE: publicKeyFile,
});
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  await t.test('self-managed issuer, AWS SDK and doctor against a real API server', async (t) => run(t, started.cluster));
}

async function run(t: Test, cluster: Cluster): Promise<void> {
  t.teardown(() => cluster.down());
  const { core, admission } = cluster;

  // --- oidc: documents for the public issuer -------------------------------
  const out = join(dir, 'issuer');
  const oidc = cli(['oidc', '--issuer', ISSUER, '--public-key', publicKeyFile, '--out', out]);
  t.equal(oidc.status, 0, oidc.stderr);
  t.match(oidc.stdout, /--service-account-issuer=https:\/\/oidc\.e2e\.example\.com\/cluster-1/);
  const jwks = JSON.parse(readFileSync(join(out, 'keys.json'), 'utf8')) as { keys: Array<{ kid: string }> };
  const discovery = JSON.parse(readFileSync(join(out, '.well-known', 'openid-configuration'), 'utf8')) as { issuer: string; jwks_uri: string };
  t.equal(discovery.issuer, ISSUER);
  t.equal(discovery.jwks_uri, `${ISSUER}/keys.json`);

  const ns = `oidc-${Date.now().toString(36)}`;
  await core.createNamespace({ body: { metadata: { name: ns, labels: { [LABEL]: 'true' } } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'app', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'other', annotations: { 'eks.amazonaws.com/role-arn': ROLE } } } });
  const tokenFor = async (sa: string, audience = 'sts.amazonaws.com'): Promise<string> =>
    (await core.createNamespacedServiceAccountToken({ name: sa, namespace: ns, body: { spec: { audiences: [audience], expirationSeconds: 3600 } } })).status!.token;

  await t.test('the API server\'s token verifies against keys.json from `oidc`', async (t) => {
    const token = await tokenFor('app');
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks as never), { issuer: ISSUER, audience: 'sts.amazonaws.com' });
    t.equal(payload.iss, ISSUER);
    t.equal(payload.sub, `system:serviceaccount:${ns}:app`);
    t.equal(protectedHeader.kid, jwks.keys[0]!.kid, 'kid computed as kube-apiserver does');
    t.equal(decodeProtectedHeader(token).alg, 'RS256');
  });

  await t.test('`oidc --from-cluster` writes what the API server serves, for the public issuer', async (t) => {
    const fromCluster = join(dir, 'from-cluster');
    const r = cli(['oidc', '--from-cluster', '--issuer', ISSUER, '--out', fromCluster, '--kubeconfig', cluster.kubeconfig]);
    t.equal(r.status, 0, r.stderr);
    const served = JSON.parse(readFileSync(join(fromCluster, 'keys.json'), 'utf8')) as { keys: Array<{ kid: string; n?: string }> };
    t.same(served.keys.map((k) => k.kid), jwks.keys.map((k) => k.kid));
  });

  // --- the webhook, then a pod, then the AWS SDK ---------------------------
  const { ca, tlsArgs } = webhookCertificates(dir);
  const webhook = await startWebhook(['--kubeconfig', cluster.kubeconfig, ...tlsArgs, '--aws-default-region', 'eu-west-1'], ca);
  t.teardown(() => webhook.stop());
  await admission.createMutatingWebhookConfiguration({
    body: webhookConfiguration({ name: CONFIG, url: `https://${WEBHOOK_HOST}:${webhook.port}/mutate`, ca, label: LABEL, reinvoke: true }),
  });
  let n = 0;
  const pod: V1Pod = await until('the webhook configuration to take effect', async () => {
    const p = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: `app-${n++}` }, spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox' }] } } });
    return p.spec!.containers[0]!.env?.some((e) => e.name === 'AWS_ROLE_ARN') ? p : undefined;
  }, { everyMs: 300 });
  const env = Object.fromEntries(pod.spec!.containers[0]!.env!.map((e) => [e.name, e.value!]));
  const audience = pod.spec!.volumes!.find((v) => v.name === 'aws-iam-token')!.projected!.sources![0]!.serviceAccountToken!.audience!;

  const sts = await startStsStandin({ issuer: ISSUER, jwks, roles: new Map([[ROLE, { subjects: [`system:serviceaccount:${ns}:app`], audience: 'sts.amazonaws.com' }]]) });
  t.teardown(() => sts.close());

  /** Resolves credentials the way a pod's SDK would: only the injected env vars, plus the STS endpoint. */
  const resolveAs = async (token: string): Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }> => {
    // The token goes to the file the pod's env names, as the kubelet would write it (a temp path if that is not writable).
    let tokenFile = env['AWS_WEB_IDENTITY_TOKEN_FILE']!;
    try {
      mkdirSync(dirname(tokenFile), { recursive: true });
      writeFileSync(tokenFile, token);
    } catch {
      tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, token);
    }
    const saved = { ...process.env };
    try {
      for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
      Object.assign(process.env, {
        AWS_ROLE_ARN: env['AWS_ROLE_ARN'],
        AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
        AWS_REGION: env['AWS_REGION'],
        AWS_DEFAULT_REGION: env['AWS_DEFAULT_REGION'],
        AWS_ENDPOINT_URL_STS: sts.url,
        AWS_CONFIG_FILE: join(dir, 'no-config'),
        AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
      });
      return await fromNodeProviderChain()();
    } finally {
      process.env = saved;
      if (tokenFile.startsWith('/var/run/secrets/eks.amazonaws.com/')) rmSync(tokenFile, { force: true });
    }
  };

  await t.test('the real AWS SDK assumes the role with what the webhook injected', async (t) => {
    const creds = await resolveAs(await tokenFor('app', audience));
    const expected = credentialsForRole(ROLE);
    t.equal(creds.accessKeyId, expected.accessKeyId);
    t.equal(creds.secretAccessKey, expected.secretAccessKey);
    t.equal(creds.sessionToken, expected.sessionToken);
    const last = sts.requests.at(-1)!;
    t.equal(last.params['RoleArn'], ROLE);
    t.equal(last.status, 200);
    t.equal(last.claims?.sub, `system:serviceaccount:${ns}:app`);
  });

  await t.test('a token of another ServiceAccount is refused', async (t) => {
    await t.rejects(resolveAs(await tokenFor('other', audience)), { name: 'AccessDenied' });
  });

  // --- doctor ---------------------------------------------------------------
  const policyFile = join(dir, 'trust-policy.json');
  const doctor = (sa: string, policy: string): { status: number; report: { ok: boolean; checks: Array<{ name: string; status: string; detail: string }> } } => {
    writeFileSync(policyFile, policy);
    const r = cli(['doctor', '--kubeconfig', cluster.kubeconfig, '--namespace', ns, '--service-account', sa, '--trust-policy', policyFile, '--webhook-config', CONFIG, '--output', 'json']);
    return { status: r.status, report: JSON.parse(r.stdout || '{}') };
  };
  const failing = (report: { checks: Array<{ name: string; status: string }> }): string[] => report.checks.filter((c) => c.status === 'fail').map((c) => c.name);

  await t.test('doctor: all checks pass for a correct setup', async (t) => {
    const { status, report } = doctor('app', trustPolicy(`system:serviceaccount:${ns}:app`));
    t.equal(status, 0, JSON.stringify(report.checks.filter((c) => c.status !== 'ok')));
    t.equal(report.ok, true);
    t.same(failing(report), []);
    for (const name of ['service-account', 'role-arn', 'webhook-answers', 'issuer', 'trust-policy']) {
      t.ok(report.checks.some((c) => c.name === name && c.status === 'ok'), `${name} ok`);
    }
  });

  const cases: Array<{ name: string; sa: string; annotations?: Record<string, string>; policy: (sub: string) => string; fails: string; detail: RegExp }> = [
    { name: 'missing annotation', sa: 'bare', annotations: {}, policy: (sub) => trustPolicy(sub), fails: 'role-arn', detail: /role-arn/ },
    { name: 'malformed ARN', sa: 'malformed', annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123:role/x' }, policy: (sub) => trustPolicy(sub), fails: 'role-arn', detail: /not a role ARN/ },
    { name: 'wrong audience', sa: 'aud', annotations: { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/audience': 'other.example.com' }, policy: (sub) => trustPolicy(sub), fails: 'trust-policy', detail: /aud/ },
    { name: 'wrong issuer in the trust policy', sa: 'issuer', annotations: { 'eks.amazonaws.com/role-arn': ROLE }, policy: (sub) => trustPolicy(sub, 'oidc.elsewhere.example.com/x'), fails: 'trust-policy', detail: /oidc\.elsewhere\.example\.com/ },
    { name: 'sub condition for another namespace', sa: 'subns', annotations: { 'eks.amazonaws.com/role-arn': ROLE }, policy: (sub) => trustPolicy(sub.replace(`:${ns}:`, ':another-namespace:')), fails: 'trust-policy', detail: /another-namespace/ },
  ];
  for (const c of cases) {
    await t.test(`doctor names the failing check: ${c.name}`, async (t) => {
      await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: c.sa, annotations: c.annotations ?? {} } } });
      const { status, report } = doctor(c.sa, c.policy(`system:serviceaccount:${ns}:${c.sa}`));
      t.equal(status, 1);
      t.equal(report.ok, false);
      t.ok(failing(report).includes(c.fails), `${c.fails} fails (failing: ${failing(report).join(', ')})`);
      t.match(report.checks.find((x) => x.name === c.fails)?.detail ?? '', c.detail);
    });
  }
  await admission.deleteMutatingWebhookConfiguration({ name: CONFIG });
}
