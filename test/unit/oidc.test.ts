import { capture, runCommand, tmp as tmpDir } from '../helpers/command.js';
import t, { type Test } from 'tap';
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify, SignJWT } from 'jose';
import { oidcCommand, type OidcFlags, runOidc } from '../../src/cli/oidc.js';
import {
  buildJwks,
  discoveryDocument,
  issuerProblem,
  jwkFromPublicKey,
  jwkFromPublicKeyPem,
  jwksUri,
  keyId,
  publicKeysFromPem,
} from '../../src/oidc/keys.js';
import { ensureCertificates } from '../../src/tls/certificates.js';

// Key ids below were computed with Go the way kube-apiserver does
// (x509.MarshalPKIXPublicKey, SHA-256, base64.RawURLEncoding).
const RSA_PKIX = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvlWJKyhPV6iG5tpfl3Ko
wEa2PbKIjNqqf2X2quFOcJ3Zf86QcUmNA9wOWQ/DBjdRdvn7dUPxmDU3JzV+ucTw
39o/kVnmCyYkJ+/V4JkjXf+XIh9pxPl5D6R0fKHVMq3jzL6QrlsRhkFsGSqH2+58
yGYzNJiIV26rh5OBjaSwl4bcANgkn80nlgqmcc0hnmb2MjRlubIcP1UIXeLcO9/f
Z0coCmUSS4fkCDU1cyo8e8fEVLNRnaeJBkJyWDa+Fqspw6QJIvUx+z4djVFN+fuN
S8jTP1fohu9YtsEVun7xoVlI1WC8MxH4QBA+byYUSNzwXjZJP8wQObJum0OOBzWA
GQIDAQAB
-----END PUBLIC KEY-----
`;
const RSA_PKCS1 = `-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAvlWJKyhPV6iG5tpfl3KowEa2PbKIjNqqf2X2quFOcJ3Zf86QcUmN
A9wOWQ/DBjdRdvn7dUPxmDU3JzV+ucTw39o/kVnmCyYkJ+/V4JkjXf+XIh9pxPl5
D6R0fKHVMq3jzL6QrlsRhkFsGSqH2+58yGYzNJiIV26rh5OBjaSwl4bcANgkn80n
lgqmcc0hnmb2MjRlubIcP1UIXeLcO9/fZ0coCmUSS4fkCDU1cyo8e8fEVLNRnaeJ
BkJyWDa+Fqspw6QJIvUx+z4djVFN+fuNS8jTP1fohu9YtsEVun7xoVlI1WC8MxH4
QBA+byYUSNzwXjZJP8wQObJum0OOBzWAGQIDAQAB
-----END RSA PUBLIC KEY-----
`;
const RSA_KID = 'NR14i_EvQ-TnKgNlFuI6inFFFKwlhDnfmZm6k7nK1KA';
const EC_PKIX = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEY0r0jJzefSF3O7hAQHV0GLnzJSR
HUynQMF8k4eQ7ZbHixp5zjG/HsscA4nBvaSfvJj8JVYQx4/19I7wt1utdg==
-----END PUBLIC KEY-----
`;
const EC_KID = '9x48ILcpjguyicr2XRGgHrWQFR2Iz93p258vrhY28s0';
const ISSUER = 'https://oidc.example.com/clusters/test';

function tmp(t: Test, files: Record<string, string> = {}): string {
  return tmpDir(t, 'piw-oidc-', files);
}


function flags(more: Partial<OidcFlags>): OidcFlags {
  return { issuer: ISSUER, publicKey: [], ...more };
}

/** Runs the command the way src/cli.ts does; returns the exit code and output. */
function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  return runCommand(oidcCommand, args);
}

/** The DER inside a PEM "PUBLIC KEY" block is the SubjectPublicKeyInfo itself. */
function kidFromPkixPem(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, ''), 'base64');
  return createHash('sha256').update(der).digest('base64url');
}

function pkixPem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }) as string;
}

t.test('kid: SHA-256 of the DER SubjectPublicKeyInfo, base64url without padding (as kube-apiserver)', async (t) => {
  t.equal(jwkFromPublicKeyPem(RSA_PKIX).kid, RSA_KID, 'RSA, Go vector');
  t.equal(jwkFromPublicKeyPem(RSA_PKCS1).kid, RSA_KID, 'RSA as PKCS#1, same key id');
  t.equal(jwkFromPublicKeyPem(EC_PKIX).kid, EC_KID, 'EC P-256, Go vector');
  for (const key of [
    generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
  ]) {
    const pem = pkixPem(key);
    const expected = kidFromPkixPem(pem);
    t.equal(keyId(key), expected);
    t.equal(jwkFromPublicKeyPem(pem).kid, expected);
    t.match(expected, /^[A-Za-z0-9_-]{43}$/, 'unpadded base64url of 32 bytes');
  }
});

t.test('JWKs: RS256 for RSA (PKIX or PKCS#1), ES256 for EC P-256, from certificates too', async (t) => {
  const rsa = jwkFromPublicKeyPem(RSA_PKIX);
  t.same(jwkFromPublicKeyPem(RSA_PKCS1), rsa);
  t.match(rsa, { use: 'sig', kty: 'RSA', kid: RSA_KID, alg: 'RS256', e: 'AQAB', n: /^[A-Za-z0-9_-]{342}$/ });
  t.same(Object.keys(rsa), ['use', 'kty', 'kid', 'alg', 'n', 'e']);
  const ec = jwkFromPublicKeyPem(EC_PKIX);
  t.match(ec, { use: 'sig', kty: 'EC', kid: EC_KID, alg: 'ES256', crv: 'P-256', x: /^[A-Za-z0-9_-]{43}$/, y: /^[A-Za-z0-9_-]{43}$/ });
  t.notOk('d' in ec, 'no private material');

  // A certificate carries a public key too (kube-apiserver accepts it in --service-account-key-file).
  const dir = tmp(t);
  const { serving } = await ensureCertificates({ outDir: dir, keyType: 'ec', dnsNames: ['x.svc'], ipAddresses: [], days: 2, renewBeforeMs: 0 });
  t.equal(jwkFromPublicKeyPem(serving.cert).kid, keyId(createPublicKey(serving.key)));

  // Several blocks in one file; EC PARAMETERS blocks are skipped.
  const keys = publicKeysFromPem(`-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n${EC_PKIX}${RSA_PKIX}`);
  t.same(keys.map((k) => keyId(k)), [EC_KID, RSA_KID]);
});

t.test('writes the discovery document and keys.json', async (t) => {
  const dir = tmp(t, { 'rsa.pub': RSA_PKIX, 'rsa-pkcs1.pub': RSA_PKCS1, 'ec.pub': EC_PKIX });
  const out = join(dir, 'out');
  const c = capture();
  await runOidc(flags({ publicKey: [join(dir, 'rsa.pub'), join(dir, 'ec.pub'), join(dir, 'rsa-pkcs1.pub'), join(dir, 'rsa.pub')], out }), c.io);
  const discovery = JSON.parse(readFileSync(join(out, '.well-known/openid-configuration'), 'utf8')) as unknown;
  t.same(discovery, {
    issuer: ISSUER,
    jwks_uri: `${ISSUER}/keys.json`,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256', 'RS256'],
    claims_supported: ['sub', 'iss'],
  });
  const jwks = JSON.parse(readFileSync(join(out, 'keys.json'), 'utf8')) as { keys: { kid: string; alg: string }[] };
  t.same(jwks.keys.map((k) => [k.kid, k.alg]), [[RSA_KID, 'RS256'], [EC_KID, 'ES256']], 'the same key given three times is written once');
  t.equal(statSync(join(out, 'keys.json')).mode & 0o777, 0o644);

  const text = c.out.join('\n');
  t.match(text, `--service-account-issuer=${ISSUER}`);
  t.match(text, `--service-account-key-file=${join(dir, 'rsa.pub')}`);
  t.match(text, `--service-account-key-file=${join(dir, 'ec.pub')}`);
  t.match(text, '--service-account-signing-key-file=');
  t.match(text, 'keep the old public key');
  t.match(text, '--api-audiences');
  t.match(text, `aws iam create-open-id-connect-provider --url ${ISSUER} --client-id-list sts.amazonaws.com`);
  t.match(text, `${ISSUER}/.well-known/openid-configuration`);
  t.same(c.err, []);
});

t.test('--legacy-empty-kid adds each key once more with kid ""', async (t) => {
  const dir = tmp(t, { 'rsa.pub': RSA_PKIX, 'ec.pub': EC_PKIX });
  const out = join(dir, 'out');
  await runOidc(flags({ publicKey: [join(dir, 'rsa.pub'), join(dir, 'ec.pub')], out, legacyEmptyKid: true }), capture().io);
  const jwks = JSON.parse(readFileSync(join(out, 'keys.json'), 'utf8')) as { keys: { kid: string; n?: string; x?: string }[] };
  t.same(jwks.keys.map((k) => k.kid), [RSA_KID, EC_KID, '', '']);
  t.equal(jwks.keys[2]!.n, jwks.keys[0]!.n);
  t.equal(jwks.keys[3]!.x, jwks.keys[1]!.x);
  const rsa = jwkFromPublicKeyPem(RSA_PKIX);
  t.same(buildJwks([rsa, rsa], { legacyEmptyKid: true }).keys.map((k) => k.kid), [RSA_KID, '']);
});

t.test('tokens signed with the private key verify against keys.json (jose)', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dir = tmp(t, { 'rsa.pub': pkixPem(rsa.publicKey), 'ec.pub': pkixPem(ec.publicKey) });
  const out = join(dir, 'out');
  await runOidc(flags({ publicKey: [join(dir, 'rsa.pub'), join(dir, 'ec.pub')], out, legacyEmptyKid: true }), capture().io);
  const jwks = JSON.parse(readFileSync(join(out, 'keys.json'), 'utf8')) as JSONWebKeySet;
  const discovery = JSON.parse(readFileSync(join(out, '.well-known/openid-configuration'), 'utf8')) as { issuer: string };
  const keySet = createLocalJWKSet(jwks);

  const sign = (key: KeyObject, alg: string, kid: string) =>
    new SignJWT({ kubernetes: { namespace: 'default', serviceaccount: { name: 'app' } } })
      .setProtectedHeader({ alg, kid })
      .setIssuer(discovery.issuer)
      .setSubject('system:serviceaccount:default:app')
      .setAudience('sts.amazonaws.com')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(key);
  const verify = (token: string) => jwtVerify(token, keySet, { issuer: ISSUER, audience: 'sts.amazonaws.com' });

  for (const [pair, alg] of [[rsa, 'RS256'], [ec, 'ES256']] as const) {
    const token = await sign(pair.privateKey, alg, keyId(pair.publicKey));
    const { payload, protectedHeader } = await verify(token);
    t.equal(payload.sub, 'system:serviceaccount:default:app', alg);
    t.equal(protectedHeader.kid, keyId(pair.publicKey));
    // Pre-1.16 tokens: empty kid, matched by the legacy copies.
    t.ok(await verify(await sign(pair.privateKey, alg, '')), `${alg} with kid ""`);
  }
  // Another key under a published kid does not verify.
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await t.rejects(verify(await sign(stranger.privateKey, 'RS256', keyId(rsa.publicKey))), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  // Without --legacy-empty-kid, an empty kid finds no key.
  const strict = createLocalJWKSet({ keys: (jwks.keys as { kid?: string }[]).filter((k) => k.kid !== '') } as JSONWebKeySet);
  await t.rejects(jwtVerify(await sign(rsa.privateKey, 'RS256', ''), strict), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
});

t.test('bad input: exit 2 with one line', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dir = tmp(t, {
    'rsa.key': rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    'rsa-pkcs1.key': rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    'ec.key': ec.privateKey.export({ type: 'sec1', format: 'pem' }) as string,
    'p384.pub': pkixPem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey),
    'ed25519.pub': pkixPem(generateKeyPairSync('ed25519').publicKey),
    'ssh.pub': 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC user@host\n',
    'good.pub': RSA_PKIX,
  });
  const out = join(dir, 'out');
  const p = (f: string) => join(dir, f);
  const cases: [string[], string | RegExp][] = [
    [['--public-key', p('rsa.key')], `error: --public-key ${p('rsa.key')}: is a private key; give the public key (openssl pkey -in ${p('rsa.key')} -pubout)`],
    [['--public-key', p('rsa-pkcs1.key')], /rsa-pkcs1\.key: is a private key; give the public key/],
    [['--public-key', p('ec.key')], /ec\.key: is a private key; give the public key/],
    [['--public-key', p('p384.pub')], `error: --public-key ${p('p384.pub')}: key type EC P-384 (secp384r1) is not supported; use an RSA or EC P-256 key`],
    [['--public-key', p('ed25519.pub')], /ed25519\.pub: key type Ed25519 is not supported/],
    [['--public-key', p('ssh.pub')], /ssh\.pub: is an OpenSSH public key; convert it with ssh-keygen -e -m PKCS8/],
    [['--public-key', p('missing.pub')], /missing\.pub: cannot read: no such file/],
    [['--public-key', p('good.pub'), '--issuer', 'http://oidc.example.com'], 'error: --issuer "http://oidc.example.com" must be an https:// URL'],
    [['--public-key', p('good.pub'), '--issuer', 'https://oidc.example.com/?x=1'], /must not have a query/],
    [['--public-key', p('good.pub'), '--issuer', 'https://oidc.example.com/#x'], /must not have a fragment/],
    [['--public-key', p('good.pub'), '--issuer', 'oidc.example.com'], /is not a URL/],
    [['--public-key', p('good.pub'), '--from-cluster'], /^error: option '--from-cluster' cannot be used with option '--public-key <file>'$/],
    [['--from-cluster', '--public-key', p('good.pub')], /^error: option '--from-cluster' cannot be used with option '--public-key <file>'$/],
    [['--public-key', p('good.pub'), '--issuer', ''], 'error: --issuer is required (the public HTTPS URL the documents will be served from)'],
    [[], /give --public-key FILE/],
  ];
  for (const [args, message] of cases) {
    const r = await cli(['--issuer', ISSUER, '--out', out, ...args]);
    t.equal(r.code, 2, args.join(' ') || '(no key)');
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], message);
  }
  const noOut = await cli(['--issuer', ISSUER, '--public-key', p('good.pub')]);
  t.same([noOut.code, noOut.err], [2, ['error: required option \'--out <dir>\' not specified']]);
  const noIssuer = await cli(['--out', out, '--public-key', p('good.pub')]);
  t.same([noIssuer.code, noIssuer.err], [2, ['error: required option \'--issuer <url>\' not specified']]);
  t.notOk(existsSync(out), 'nothing written');
});

t.test('issuer and discovery helpers', async (t) => {
  t.equal(issuerProblem('https://s3.amazonaws.com/bucket'), undefined);
  t.equal(issuerProblem('https://oidc.example.com'), undefined);
  t.match(issuerProblem('https://user:pw@oidc.example.com'), /user name/);
  t.equal(jwksUri('https://oidc.example.com/'), 'https://oidc.example.com/keys.json');
  const doc = discoveryDocument('https://oidc.example.com/', ['RS256', 'RS256']);
  t.equal(doc.issuer, 'https://oidc.example.com/', 'the issuer exactly as given');
  t.same(doc.id_token_signing_alg_values_supported, ['RS256']);
  t.throws(() => jwkFromPublicKey(generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey), /EC P-521 \(secp521r1\) is not supported/);
});

t.test('--from-cluster republishes what the API server serves', async (t) => {
  const certDir = tmp(t);
  const { ca, serving } = await ensureCertificates({
    outDir: certDir, keyType: 'ec', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], days: 2, renewBeforeMs: 0,
  });
  const served = {
    keys: [
      { use: 'sig', kty: 'RSA', kid: RSA_KID, alg: 'RS256', n: jwkFromPublicKeyPem(RSA_PKIX)['n'], e: 'AQAB' },
      { use: 'sig', kty: 'EC', kid: EC_KID, crv: 'P-256', alg: 'ES256', x: jwkFromPublicKeyPem(EC_PKIX)['x'], y: jwkFromPublicKeyPem(EC_PKIX)['y'] },
    ],
  };
  const seen: { path: string; auth?: string }[] = [];
  let status = 200;
  const server = createHttpsServer({ cert: serving.cert, key: serving.key }, (req, res) => {
    seen.push({ path: req.url ?? '', auth: req.headers.authorization });
    const port = (server.address() as AddressInfo).port;
    res.statusCode = status;
    if (status !== 200) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ kind: 'Status', code: status, message: 'forbidden' }));
    } else if (req.url === '/.well-known/openid-configuration') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({
        issuer: 'https://kubernetes.default.svc.cluster.local',
        jwks_uri: `https://127.0.0.1:${port}/openid/v1/jwks`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['ES256', 'RS256'],
      }));
    } else if (req.url === '/openid/v1/jwks') {
      res.setHeader('content-type', 'application/jwk-set+json');
      res.end(JSON.stringify(served));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const kubeconfig = join(certDir, 'kubeconfig');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'c', cluster: { server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, 'certificate-authority-data': Buffer.from(ca.cert).toString('base64') } }],
    users: [{ name: 'u', user: { token: 'tok' } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
  }));

  const out = join(certDir, 'out');
  const c = capture();
  await runOidc(flags({ fromCluster: true, kubeconfig, out }), c.io);
  t.same(seen.map((s) => s.path), ['/.well-known/openid-configuration', '/openid/v1/jwks']);
  t.equal(seen[0]!.auth, 'Bearer tok');
  const discovery = JSON.parse(readFileSync(join(out, '.well-known/openid-configuration'), 'utf8')) as Record<string, unknown>;
  t.same(discovery, {
    issuer: ISSUER,
    jwks_uri: `${ISSUER}/keys.json`,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256', 'RS256'],
  });
  t.same(JSON.parse(readFileSync(join(out, 'keys.json'), 'utf8')), served, 'keys kept as served');
  t.match(c.err.join('\n'), /the API server's issuer is https:\/\/kubernetes\.default\.svc\.cluster\.local/);
  t.match(c.out.join('\n'), 'keep --service-account-key-file');

  // An API failure is one line and exit code 1.
  status = 403;
  const r = await cli(['--issuer', ISSUER, '--from-cluster', '--kubeconfig', kubeconfig, '--out', join(certDir, 'out2')]);
  t.equal(r.code, 1);
  t.equal(r.err.length, 1);
  t.match(r.err[0], /^error: GET \/\.well-known\/openid-configuration: HTTP 403/);
});

// The built CLI (npm test builds it first) behaves the same.
t.test('dist/cli.js oidc', async (t) => {
  const ed = generateKeyPairSync('ed25519');
  const dir = tmp(t, { 'rsa.pub': RSA_PKIX, 'ed.pub': pkixPem(ed.publicKey), 'ed.key': ed.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
  const cliPath = new URL('../../dist/cli.js', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [cliPath, 'oidc', '--issuer', ISSUER, '--out', join(dir, 'out'), ...args], { encoding: 'utf8' });
  const ok = run('--public-key', join(dir, 'rsa.pub'));
  t.equal(ok.status, 0, ok.stderr);
  for (const [file, message] of [['ed.key', 'is a private key'], ['ed.pub', 'key type Ed25519 is not supported']]) {
    const bad = run('--public-key', join(dir, file!));
    t.equal(bad.status, 2);
    t.equal(bad.stderr.trimEnd().split('\n').length, 1);
    t.match(bad.stderr, message!);
  }
  const http = spawnSync(process.execPath, [cliPath, 'oidc', '--issuer', 'http://x', '--public-key', join(dir, 'rsa.pub'), '--out', join(dir, 'o')], { encoding: 'utf8' });
  t.equal(http.status, 2);
});
