// The STS stand-in against the real AWS SDK for JavaScript v3: the default
// credential chain, driven only by the environment variables the webhook
// injects (plus AWS_ENDPOINT_URL_STS to reach the stand-in), gets the role's
// credentials; wrong ServiceAccounts, keys, audiences and expired tokens are
// refused with the errors real STS gives.
import t from 'tap';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromNodeProviderChain, fromTokenFile } from '@aws-sdk/credential-providers';
import { SignJWT } from 'jose';
import { buildJwks, jwkFromPublicKey, keyId } from '../../src/oidc/keys.js';
import { credentialsForRole, startStsStandin, type StsStandin, trustVerdict } from '../helpers/sts-standin.js';

const ISSUER = 'https://oidc.example.com/clusters/test';
const PROVIDER = 'oidc.example.com/clusters/test';
const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/shop-api`;
const WILDCARD_ROLE = `arn:aws:iam::${ACCOUNT}:role/shop-any`;

const signer = generateKeyPairSync('rsa', { modulusLength: 2048 });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });

/** A token shaped like a projected ServiceAccount token from kube-apiserver. */
async function token(
  opts: { sub?: string; aud?: string | string[]; key?: { privateKey: KeyObject; publicKey: KeyObject }; exp?: number; iss?: string } = {},
): Promise<string> {
  const key = opts.key ?? signer;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ 'kubernetes.io': { namespace: 'shop', serviceaccount: { name: 'api', uid: 'uid-1' } } })
    .setProtectedHeader({ alg: 'RS256', kid: keyId(key.publicKey) })
    .setIssuer(opts.iss ?? ISSUER)
    .setSubject(opts.sub ?? 'system:serviceaccount:shop:api')
    .setAudience(opts.aud ?? ['sts.amazonaws.com'])
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(opts.exp ?? now + 3600)
    .sign(key.privateKey);
}

const dir = mkdtempSync(join(tmpdir(), 'piw-sts-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function tokenFile(text: string): string {
  const path = join(dir, `token-${++files}`);
  writeFileSync(path, text);
  return path;
}

let sts: StsStandin;
t.before(async () => {
  sts = await startStsStandin({
    issuer: ISSUER,
    jwks: buildJwks([jwkFromPublicKey(signer.publicKey)]),
    roles: new Map([
      [ROLE, { subjects: ['system:serviceaccount:shop:api'], audience: 'sts.amazonaws.com' }],
      [WILDCARD_ROLE, { subjects: ['system:serviceaccount:shop:*'] }],
    ]),
  });
});
t.teardown(() => sts.close());

/**
 * Runs `fn` with exactly these AWS_* variables (all others removed) and
 * restores the environment afterwards. The SDK reads process.env when a
 * provider is *called*, not when it is made, so the whole await must be
 * inside. Shared config files point at nothing, so a developer's ~/.aws
 * (which the default chain consults before the token file) cannot interfere.
 */
async function withAwsEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith('AWS_'));
  for (const [k] of saved) delete process.env[k];
  Object.assign(process.env, {
    AWS_CONFIG_FILE: join(dir, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    ...vars,
  });
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    for (const [k, v] of saved) process.env[k] = v;
  }
}

/** What the webhook injects into a container, pointed at the stand-in. */
function webhookEnv(roleArn: string, file: string): Record<string, string> {
  return {
    AWS_ROLE_ARN: roleArn,
    AWS_WEB_IDENTITY_TOKEN_FILE: file,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_STS_REGIONAL_ENDPOINTS: 'regional',
    AWS_ENDPOINT_URL_STS: sts.url,
  };
}

async function rejection(p: Promise<unknown>): Promise<Error & { $metadata?: { httpStatusCode?: number }; Code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
}

t.test('the default chain, driven by the webhook\'s env vars only, gets the role\'s credentials', async (t) => {
  const jwt = await token();
  const file = tokenFile(jwt);
  const before = sts.requests.length;
  const creds = await withAwsEnv(webhookEnv(ROLE, file), async () => {
    const provider = fromNodeProviderChain();
    const first = await provider();
    // Memoized per provider: a second call inside the validity window does not go back to STS.
    const again = await provider();
    t.equal(again.accessKeyId, first.accessKeyId);
    return first;
  });
  const expected = credentialsForRole(ROLE);
  t.equal(creds.accessKeyId, expected.accessKeyId);
  t.equal(creds.secretAccessKey, expected.secretAccessKey);
  t.equal(creds.sessionToken, expected.sessionToken);
  t.ok(creds.expiration && creds.expiration.getTime() > Date.now() + 3000_000, 'expiration parsed (about an hour ahead)');
  t.equal(creds.accountId, ACCOUNT, 'account taken from AssumedRoleUser.Arn');

  const calls = sts.requests.slice(before);
  t.equal(calls.length, 1, 'one STS call for two provider calls');
  const call = calls[0]!;
  t.equal(call.method, 'POST');
  t.equal(call.params['Action'], 'AssumeRoleWithWebIdentity');
  t.equal(call.params['Version'], '2011-06-15');
  t.equal(call.params['RoleArn'], ROLE);
  t.equal(call.params['WebIdentityToken'], jwt, 'the token file\'s content, as is');
  t.match(call.params['RoleSessionName'], /^aws-sdk-js-session-\d+$/, 'the SDK names the session itself');
  t.equal(call.status, 200);
  t.same(call.verdict, { allowed: true, reason: 'subject system:serviceaccount:shop:api matches system:serviceaccount:shop:api' });
});

t.test('AWS_ROLE_SESSION_NAME is honoured', async (t) => {
  const before = sts.requests.length;
  await withAwsEnv({ ...webhookEnv(ROLE, tokenFile(await token())), AWS_ROLE_SESSION_NAME: 'pod-abc' }, () => fromNodeProviderChain()());
  t.equal(sts.requests[before]?.params['RoleSessionName'], 'pod-abc');
});

t.test('fromTokenFile with explicit options, no web identity env vars at all', async (t) => {
  const file = tokenFile(await token({ sub: 'system:serviceaccount:shop:worker' }));
  const creds = await withAwsEnv({}, () =>
    fromTokenFile({
      roleArn: WILDCARD_ROLE,
      webIdentityTokenFile: file,
      roleSessionName: 'explicit',
      clientConfig: { region: 'eu-west-1', endpoint: sts.url },
    })(),
  );
  t.equal(creds.accessKeyId, credentialsForRole(WILDCARD_ROLE).accessKeyId, 'a shop:* subject admits shop:worker');
  t.not(creds.accessKeyId, credentialsForRole(ROLE).accessKeyId, 'credentials differ per role');
});

t.test('STSClient parses every field of the answer', async (t) => {
  const client = new STSClient({ region: 'us-east-1', endpoint: sts.url, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  t.teardown(() => client.destroy());
  const out = await withAwsEnv({}, () =>
    client.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'fields', WebIdentityToken: 'not-a-jwt' })).catch(() => undefined),
  );
  t.equal(out, undefined, 'a non-JWT is refused');
  const ok = await withAwsEnv({}, async () =>
    client.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'fields', WebIdentityToken: await token(), DurationSeconds: 900 })),
  );
  t.equal(ok.SubjectFromWebIdentityToken, 'system:serviceaccount:shop:api');
  t.equal(ok.Audience, 'sts.amazonaws.com');
  t.equal(ok.Provider, PROVIDER);
  t.equal(ok.AssumedRoleUser?.Arn, `arn:aws:sts::${ACCOUNT}:assumed-role/shop-api/fields`);
  t.match(ok.AssumedRoleUser?.AssumedRoleId, /^AROA[0-9A-F]{17}:fields$/);
  const lifetime = (ok.Credentials?.Expiration?.getTime() ?? 0) - Date.now();
  t.ok(lifetime > 880_000 && lifetime <= 900_000, `DurationSeconds 900 honoured (${lifetime} ms)`);
});

t.test('a token for another ServiceAccount is refused with AccessDenied', async (t) => {
  const before = sts.requests.length;
  const err = await withAwsEnv(webhookEnv(ROLE, tokenFile(await token({ sub: 'system:serviceaccount:other:app' }))), () =>
    rejection(fromNodeProviderChain()()),
  );
  t.equal(err.name, 'AccessDenied');
  t.match(err.message, /Not authorized to perform sts:AssumeRoleWithWebIdentity/);
  t.equal(err.$metadata?.httpStatusCode, 403);
  const call = sts.requests.slice(before);
  t.equal(call.length, 1, 'not retried');
  t.same(call[0]?.verdict, { allowed: false, reason: 'subject system:serviceaccount:other:app is none of system:serviceaccount:shop:api' }, 'the stand-in records why');
});

t.test('a token signed by an unknown key is refused with InvalidIdentityToken', async (t) => {
  const err = await withAwsEnv(webhookEnv(ROLE, tokenFile(await token({ key: stranger }))), () => rejection(fromNodeProviderChain()()));
  t.equal(err.name, 'InvalidIdentityTokenException', 'modelled error class of code InvalidIdentityToken');
  t.match(err.message, /verification key/);
  t.equal(err.$metadata?.httpStatusCode, 400);
});

t.test('a token whose kid is known but whose signature is not is refused', async (t) => {
  // Same kid as the real key, signed by another: only the signature check catches it.
  const forged = await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', kid: keyId(signer.publicKey) })
    .setIssuer(ISSUER)
    .setSubject('system:serviceaccount:shop:api')
    .setAudience('sts.amazonaws.com')
    .setExpirationTime('1h')
    .sign(stranger.privateKey);
  const err = await withAwsEnv(webhookEnv(ROLE, tokenFile(forged)), () => rejection(fromNodeProviderChain()()));
  t.equal(err.name, 'InvalidIdentityTokenException');
});

t.test('wrong audience, unknown issuer, expired token, unknown role', async (t) => {
  const cases: Array<{ name: string; role?: string; jwt: Promise<string>; error: string; message: RegExp }> = [
    { name: 'audience not a client ID', jwt: token({ aud: 'https://kubernetes.default.svc' }), error: 'InvalidIdentityTokenException', message: /audience/ },
    { name: 'issuer without a provider', jwt: token({ iss: 'https://other.example.com' }), error: 'InvalidIdentityTokenException', message: /No OpenIDConnect provider/ },
    { name: 'expired', jwt: token({ exp: Math.floor(Date.now() / 1000) - 60 }), error: 'ExpiredTokenException', message: /expired/ },
    { name: 'role does not exist', role: `arn:aws:iam::${ACCOUNT}:role/nope`, jwt: token(), error: 'AccessDenied', message: /Not authorized/ },
  ];
  for (const c of cases) {
    const file = tokenFile(await c.jwt);
    const err = await withAwsEnv(webhookEnv(c.role ?? ROLE, file), () => rejection(fromNodeProviderChain()()));
    t.equal(err.name, c.error, c.name);
    t.match(err.message, c.message, c.name);
  }
});

t.test('the environment is restored after each scoped call', async (t) => {
  t.equal(process.env['AWS_ROLE_ARN'], undefined);
  t.equal(process.env['AWS_ENDPOINT_URL_STS'], undefined);
});

t.test('the trust table decides by itself: exact subjects, prefixes, the role\'s audience', async (t) => {
  const shop = { subjects: ['system:serviceaccount:shop:*', 'system:serviceaccount:ops:deployer'], audience: 'sts.amazonaws.com' };
  const table: Array<[string, string, boolean]> = [
    ['system:serviceaccount:shop:api', 'sts.amazonaws.com', true],
    ['system:serviceaccount:shop:', 'sts.amazonaws.com', true],
    ['system:serviceaccount:shopping:api', 'sts.amazonaws.com', false],
    ['system:serviceaccount:ops:deployer', 'sts.amazonaws.com', true],
    ['system:serviceaccount:ops:deployer2', 'sts.amazonaws.com', false],
    ['system:serviceaccount:ops:deploye', 'sts.amazonaws.com', false],
    ['system:serviceaccount:shop:api', 'other.example.com', false],
  ];
  for (const [sub, aud, allowed] of table) t.equal(trustVerdict(shop, sub, aud).allowed, allowed, `${sub} / ${aud}`);
  t.same(trustVerdict(undefined, 'system:serviceaccount:shop:api', 'sts.amazonaws.com'), { allowed: false, reason: 'no such role' });
  t.same(trustVerdict({ subjects: ['x'] }, 'x', 'any.example.com'), { allowed: true, reason: 'subject x matches x' }, 'no audience: any the provider accepts');
  t.same(trustVerdict(shop, 'system:serviceaccount:shop:api', 'other.example.com'), { allowed: false, reason: 'audience other.example.com is not the role\'s sts.amazonaws.com' });
});

t.test('a role that requires another audience refuses a token the provider accepts', async (t) => {
  const other = await startStsStandin({
    issuer: ISSUER,
    jwks: buildJwks([jwkFromPublicKey(signer.publicKey)]),
    audiences: ['sts.amazonaws.com', 'vault.example.com'],
    roles: new Map([[ROLE, { subjects: ['system:serviceaccount:shop:api'], audience: 'vault.example.com' }]]),
  });
  t.teardown(() => other.close());
  const env = { ...webhookEnv(ROLE, tokenFile(await token())), AWS_ENDPOINT_URL_STS: other.url };
  const err = await withAwsEnv(env, () => rejection(fromNodeProviderChain()()));
  t.equal(err.name, 'AccessDenied');
  t.same(other.requests.at(-1)?.verdict, { allowed: false, reason: 'audience sts.amazonaws.com is not the role\'s vault.example.com' });
  const ok = await withAwsEnv({ ...webhookEnv(ROLE, tokenFile(await token({ aud: 'vault.example.com' }))), AWS_ENDPOINT_URL_STS: other.url }, () => fromNodeProviderChain()());
  t.equal(ok.accessKeyId, credentialsForRole(ROLE).accessKeyId);
});
