import { capture, runCommand, tmp as tmpDir } from '../helpers/command.js';
import t, { type Test } from 'tap';
import { X509Certificate } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tls from 'node:tls';
import { X509Certificate as PeculiarCertificate } from '@peculiar/x509';
import { certsCommand, type CertsFlags, parseRenewBefore, runCerts } from '../../src/cli/certs.js';
import {
  type CertificateResult,
  describeKey,
  ensureCertificates,
  readCertificateInfo,
  serviceDnsNames,
  verifySignedBy,
} from '../../src/tls/certificates.js';
import { writeFileAtomic } from '../../src/tls/files.js';

const DAY = 86_400_000;
const SVC = 'pod-identity-webhook.pod-identity-webhook.svc';

/** A fresh directory per call (tmp(t) hands out one per test), removed afterwards. */
function tmp(t: Test, files: Record<string, string> = {}): string {
  return tmpDir(t, 'piw-certs-', files);
}


function flags(outDir: string, more: Partial<CertsFlags> = {}): CertsFlags {
  return {
    service: 'pod-identity-webhook',
    namespace: 'pod-identity-webhook',
    outDir,
    keyType: 'ec',
    days: '365',
    renewBefore: '30d',
    dns: [],
    ip: [],
    ...more,
  };
}

function read(dir: string): Record<string, string> {
  return Object.fromEntries(['ca.crt', 'ca.key', 'tls.crt', 'tls.key'].map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
}

/** "path: action (detail)" lines by file name. */
function actions(lines: string[]): Record<string, string> {
  return Object.fromEntries(lines.map((l) => /\/([a-z.]+): (\w+)/.exec(l)).filter((m) => m !== null).map((m) => [m[1], m[2]]));
}

/** Runs the command the way src/cli.ts does; returns the exit code and output. */
function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  return runCommand(certsCommand, args);
}

t.test('EC: a CA and a CA-signed serving certificate with SHA-256 signatures', async (t) => {
  const dir = tmp(t);
  const c = capture();
  const started = performance.now();
  await runCerts(flags(dir, { dns: ['webhook.example.com'], ip: ['10.0.0.7', '::1'] }), c.io);
  t.comment(`ec CA + serving certificate: ${Math.round(performance.now() - started)} ms`);
  t.same(actions(c.out), { 'ca.crt': 'created', 'ca.key': 'created', 'tls.crt': 'created', 'tls.key': 'created' });
  t.equal(c.out.length, 4, 'one line per file');

  const f = read(dir);
  const leaf = readCertificateInfo(f['tls.crt']!);
  t.same(leaf.dnsNames, [...serviceDnsNames('pod-identity-webhook', 'pod-identity-webhook'), 'webhook.example.com']);
  t.same(leaf.ipAddresses, ['10.0.0.7', '::1']);
  t.equal(leaf.isCA, false);
  const days = (leaf.notAfter.getTime() - Date.now()) / DAY;
  t.ok(days > 364 && days <= 365, `serving certificate valid for 365 days (${days.toFixed(2)})`);
  t.ok(leaf.notBefore.getTime() <= Date.now(), 'already valid');

  const ca = readCertificateInfo(f['ca.crt']!);
  t.equal(ca.isCA, true);
  t.ok((ca.notAfter.getTime() - Date.now()) / DAY > 3600, 'the CA lives about 10 years');

  // Chain: node:crypto (OpenSSL) checks issuer name and signature.
  const caX509 = new X509Certificate(f['ca.crt']!);
  const leafX509 = new X509Certificate(f['tls.crt']!);
  t.ok(leafX509.checkIssued(caX509));
  t.ok(leafX509.verify(caX509.publicKey), 'the CA key signed the serving certificate');
  t.ok(caX509.verify(caX509.publicKey), 'the CA is self-signed');
  t.ok(verifySignedBy(f['tls.crt']!, f['ca.crt']!));
  t.notOk(verifySignedBy(f['ca.crt']!, f['tls.crt']!));
  t.same(leafX509.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: serverAuth only');

  // selfsigned signs with SHA-1 unless told otherwise; Go's TLS refuses SHA-1.
  for (const pem of [f['ca.crt']!, f['tls.crt']!]) {
    const alg = new PeculiarCertificate(pem).signatureAlgorithm as { name: string; hash: { name: string } };
    t.same({ name: alg.name, hash: alg.hash.name }, { name: 'ECDSA', hash: 'SHA-256' });
  }
  t.equal(describeKey(f['tls.key']!), 'ec P-256');
  t.equal(describeKey(f['ca.key']!), 'ec P-256');

  t.equal(statSync(join(dir, 'tls.key')).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'ca.key')).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'tls.crt')).mode & 0o777, 0o644);
  t.equal(statSync(join(dir, 'ca.crt')).mode & 0o777, 0o644);
  t.same(readdirSync(dir).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key'], 'no temporary files left');
});

t.test('RSA: 2048-bit keys, sha256WithRSAEncryption', async (t) => {
  const dir = tmp(t);
  const started = performance.now();
  await runCerts(flags(dir, { keyType: 'rsa' }), capture().io);
  t.comment(`rsa CA + serving certificate: ${Math.round(performance.now() - started)} ms`);
  const f = read(dir);
  t.equal(describeKey(f['tls.key']!), 'rsa 2048');
  t.equal(describeKey(f['ca.key']!), 'rsa 2048');
  for (const pem of [f['ca.crt']!, f['tls.crt']!]) {
    const alg = new PeculiarCertificate(pem).signatureAlgorithm as { name: string; hash: { name: string } };
    t.same({ name: alg.name, hash: alg.hash.name }, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' });
  }
  t.ok(new X509Certificate(f['tls.crt']!).verify(new X509Certificate(f['ca.crt']!).publicKey));
});

async function handshake(port: number, ca: string, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername }, () => {
      socket.once('data', (d) => {
        socket.end();
        resolve(d.toString());
      });
    });
    socket.on('error', reject);
  });
}

t.test('a TLS server with tls.crt/tls.key is trusted through ca.crt, for the Service name only', async (t) => {
  for (const keyType of ['ec', 'rsa'] as const) {
    const dir = tmp(t);
    await runCerts(flags(dir, { keyType }), capture().io);
    const f = read(dir);
    const server = tls.createServer({ cert: f['tls.crt'], key: f['tls.key'], minVersion: 'TLSv1.2' }, (s) => s.end('hello'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      t.equal(await handshake(port, f['ca.crt']!, SVC), 'hello', `${keyType}: ${SVC}`);
      t.equal(await handshake(port, f['ca.crt']!, `${SVC}.cluster.local`), 'hello', `${keyType}: .svc.cluster.local`);
      await t.rejects(handshake(port, f['ca.crt']!, 'other.pod-identity-webhook.svc'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, `${keyType}: wrong name`);
      const otherCa = tmp(t);
      await runCerts(flags(otherCa), capture().io);
      // Both CAs have the same name; OpenSSL reports either a failed signature or no issuer.
      const untrusted = /^(CERT_SIGNATURE_FAILURE|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/;
      await t.rejects(handshake(port, read(otherCa)['ca.crt']!, SVC), { code: untrusted }, `${keyType}: another CA`);
    } finally {
      server.close();
    }
  }
});

t.test('a second run keeps every file byte for byte', async (t) => {
  const dir = tmp(t);
  await runCerts(flags(dir, { ip: ['10.0.0.7'] }), capture().io);
  const first = read(dir);
  const c = capture();
  await runCerts(flags(dir, { ip: ['10.0.0.7'] }), c.io);
  t.same(actions(c.out), { 'ca.crt': 'kept', 'ca.key': 'kept', 'tls.crt': 'kept', 'tls.key': 'kept' });
  t.same(read(dir), first);
  t.same(c.err, [], 'no note about a new CA');
  // Fewer names than the certificate has is still covered.
  const fewer = capture();
  await runCerts(flags(dir), fewer.io);
  t.equal(actions(fewer.out)['tls.crt'], 'kept');
});

t.test('the serving certificate is renewed near expiry; the CA is kept', async (t) => {
  const dir = tmp(t);
  // Issued 340 days ago for 365 days: 25 days left, inside the 30-day window.
  await ensureCertificates({
    outDir: dir, keyType: 'ec', dnsNames: serviceDnsNames('pod-identity-webhook', 'pod-identity-webhook'),
    ipAddresses: [], days: 365, renewBeforeMs: 30 * DAY, now: new Date(Date.now() - 340 * DAY),
  });
  const before = read(dir);
  const c = capture();
  await runCerts(flags(dir), c.io);
  t.same(actions(c.out), { 'ca.crt': 'kept', 'ca.key': 'kept', 'tls.crt': 'renewed', 'tls.key': 'renewed' });
  t.match(c.out.find((l) => l.includes('tls.crt')), /expires on \d{4}-\d\d-\d\dT[\d:]+Z, within --renew-before 30d/);
  const after = read(dir);
  t.equal(after['ca.crt'], before['ca.crt']);
  t.equal(after['ca.key'], before['ca.key']);
  t.not(after['tls.key'], before['tls.key'], 'a new key');
  t.ok(verifySignedBy(after['tls.crt']!, after['ca.crt']!));
  t.ok(readCertificateInfo(after['tls.crt']!).notAfter.getTime() - Date.now() > 364 * DAY);

  // A shorter window keeps a certificate that has 25 days left.
  const dir2 = tmp(t);
  await ensureCertificates({
    outDir: dir2, keyType: 'ec', dnsNames: serviceDnsNames('pod-identity-webhook', 'pod-identity-webhook'),
    ipAddresses: [], days: 365, renewBeforeMs: 30 * DAY, now: new Date(Date.now() - 340 * DAY),
  });
  const k = capture();
  await runCerts(flags(dir2, { renewBefore: '480h' }), k.io);
  t.equal(actions(k.out)['tls.crt'], 'kept', '--renew-before 480h (20 days)');
});

t.test('a CA near expiry is renewed together with the serving certificate', async (t) => {
  const dir = tmp(t);
  await ensureCertificates({
    outDir: dir, keyType: 'ec', dnsNames: serviceDnsNames('pod-identity-webhook', 'pod-identity-webhook'),
    ipAddresses: [], days: 365, renewBeforeMs: 30 * DAY, now: new Date(Date.now() - 3640 * DAY),
  });
  const before = read(dir);
  // The serving certificate was capped at the CA's end of life.
  t.ok(readCertificateInfo(before['tls.crt']!).notAfter <= readCertificateInfo(before['ca.crt']!).notAfter);
  const c = capture();
  await runCerts(flags(dir), c.io);
  t.same(actions(c.out), { 'ca.crt': 'renewed', 'ca.key': 'renewed', 'tls.crt': 'renewed', 'tls.key': 'renewed' });
  t.match(c.out[0], /ca\.crt: renewed \(expires on .* within --renew-before 30d/);
  t.match(c.err.join('\n'), /the CA is new/);
  const after = read(dir);
  t.not(after['ca.crt'], before['ca.crt']);
  t.ok(verifySignedBy(after['tls.crt']!, after['ca.crt']!));
  t.notOk(verifySignedBy(after['tls.crt']!, before['ca.crt']!));
});

t.test('requested names not covered renew the serving certificate', async (t) => {
  const dir = tmp(t);
  await runCerts(flags(dir), capture().io);
  const before = read(dir);
  const c = capture();
  await runCerts(flags(dir, { dns: ['extra.example.com'], ip: ['192.0.2.1'] }), c.io);
  t.same(actions(c.out), { 'ca.crt': 'kept', 'ca.key': 'kept', 'tls.crt': 'renewed', 'tls.key': 'renewed' });
  t.match(c.out.find((l) => l.includes('tls.crt')), 'does not cover DNS:extra.example.com, IP:192.0.2.1');
  t.equal(read(dir)['ca.crt'], before['ca.crt']);
  t.same(readCertificateInfo(read(dir)['tls.crt']!).ipAddresses, ['192.0.2.1']);
  // Another namespace means other Service names.
  const ns = capture();
  await runCerts(flags(dir, { namespace: 'kube-system' }), ns.io);
  t.match(ns.out.find((l) => l.includes('tls.crt')), 'does not cover DNS:pod-identity-webhook.kube-system.svc');
});

t.test('broken or mismatched files are replaced, with the reason', async (t) => {
  const dir = tmp(t);
  await runCerts(flags(dir), capture().io);
  writeFileSync(join(dir, 'ca.crt'), 'not a certificate');
  const c = capture();
  await runCerts(flags(dir), c.io);
  t.match(c.out[0], /ca\.crt: renewed \(ca\.crt cannot be read/);
  t.equal(actions(c.out)['tls.crt'], 'renewed');

  // A serving key that belongs to another certificate.
  const other = tmp(t);
  await runCerts(flags(other), capture().io);
  writeFileSync(join(dir, 'tls.key'), read(other)['tls.key']!, { mode: 0o600 });
  const m = capture();
  await runCerts(flags(dir), m.io);
  t.match(m.out.find((l) => l.includes('tls.crt')), 'tls.key does not belong to tls.crt');

  // A serving pair from another CA.
  writeFileSync(join(dir, 'tls.crt'), read(other)['tls.crt']!);
  writeFileSync(join(dir, 'tls.key'), read(other)['tls.key']!);
  const s = capture();
  await runCerts(flags(dir), s.io);
  t.match(s.out.find((l) => l.includes('tls.crt')), 'tls.crt is not signed by ca.crt');

  // A missing CA key means a new CA.
  const k = capture();
  writeFileSync(join(dir, 'ca.key'), '');
  await runCerts(flags(dir), k.io);
  t.match(k.out[0], /ca\.crt: renewed \(ca\.key cannot be read/);
});

t.test('changing --key-type renews everything', async (t) => {
  const dir = tmp(t);
  await runCerts(flags(dir), capture().io);
  const c = capture();
  await runCerts(flags(dir, { keyType: 'rsa' }), c.io);
  t.match(c.out[0], 'the CA key is ec and --key-type is rsa');
  t.equal(describeKey(read(dir)['tls.key']!), 'rsa 2048');
  t.equal(describeKey(read(dir)['ca.key']!), 'rsa 2048');
});

t.test('readCertificateInfo reads the first certificate of a chain', async (t) => {
  const dir = tmp(t);
  await runCerts(flags(dir, { ip: ['fe80::1:2', '127.0.0.1'] }), capture().io);
  const f = read(dir);
  const info = readCertificateInfo(`${f['tls.crt']}${f['ca.crt']}`);
  t.equal(info.isCA, false);
  t.same(info.ipAddresses, ['fe80::1:2', '127.0.0.1'], 'IPv6 in its short form');
  t.type(info.notBefore, Date);
  t.throws(() => readCertificateInfo('nothing here'), /no PEM certificate/);
  t.notOk(verifySignedBy('garbage', f['ca.crt']!));
});

t.test('writeFileAtomic replaces a file without readers ever seeing a mix', async (t) => {
  const dir = tmp(t, { 'tls.crt': 'old content' });
  const path = join(dir, 'tls.crt');
  // A reader that opened the old file keeps reading the old file entirely.
  const fd = openSync(path, 'r');
  const oldMask = process.umask(0o077);
  try {
    writeFileAtomic(path, 'new content, longer than before', 0o644);
  } finally {
    process.umask(oldMask);
  }
  const buf = Buffer.alloc(100);
  const n = readSync(fd, buf, 0, 100, 0);
  closeSync(fd);
  t.equal(buf.subarray(0, n).toString(), 'old content');
  t.equal(readFileSync(path, 'utf8'), 'new content, longer than before');
  t.equal(statSync(path).mode & 0o777, 0o644, 'the mode is exact despite the umask');
  writeFileAtomic(join(dir, 'k'), 'secret', 0o600);
  t.equal(statSync(join(dir, 'k')).mode & 0o777, 0o600);
  t.same(readdirSync(dir).sort(), ['k', 'tls.crt']);
  // A failure leaves no temporary file behind.
  t.throws(() => writeFileAtomic(join(dir, 'missing-dir', 'x'), 'x', 0o600), { code: 'ENOENT' });
  t.same(readdirSync(dir).sort(), ['k', 'tls.crt']);
});

t.test('bad input is a usage error (exit 2, one line)', async (t) => {
  const dir = tmp(t);
  const cases: [string[], RegExp][] = [
    [['--ip', '10.0.0.300'], /--ip "10\.0\.0\.300" is not an IPv4 or IPv6 address/],
    [['--key-type', 'dsa'], /^error: option '--key-type <type>' argument 'dsa' is invalid\. Allowed choices are ec, rsa\.$/],
    [['--days', '0'], /--days "0" must be a positive whole number/],
    [['--days', '1.5'], /--days "1\.5" must be a positive whole number/],
    [['--days', 'ten'], /--days "ten"/],
    [['--renew-before', '30'], /needs a unit/],
    [['--renew-before', '1w'], /--renew-before "1w"/],
    [['--days', '10', '--renew-before', '30d'], /must be shorter than --days 10/],
    [['--dns', 'bad_name.example'], /--dns "bad_name\.example" is not a valid DNS name/],
    [['--namespace', 'Kube_System'], /^error: option '-n, --namespace <name>' argument 'Kube_System' is invalid\. not a valid namespace name/],
    [['--patch-webhook', 'x', '--kubeconfig', join(dir, 'nope')], /--kubeconfig .*nope: no such file/],
  ];
  for (const [args, message] of cases) {
    const r = await cli(['--out-dir', dir, ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.err.length, 1, 'one line');
    t.match(r.err[0], message);
  }
  t.same(readdirSync(dir), [], 'nothing written on bad input');
  const unknown = await cli(['--out-dir', dir, '--bogus']);
  t.equal(unknown.code, 2, 'unknown flag');
  t.same(parseRenewBefore('720h'), 30 * DAY);
  t.same(parseRenewBefore('30d'), 30 * DAY);
  t.same(parseRenewBefore('1h30m'), 90 * 60_000);
  t.same(parseRenewBefore('0'), 0);
});

interface FakeApi {
  url: string;
  requests: { method: string; path: string; contentType?: string; auth?: string; body?: unknown }[];
  close: () => void;
}

/** A minimal API server for MutatingWebhookConfigurations, served with our own certificates. */
async function fakeApiServer(pair: Record<string, string>, configs: Record<string, Record<string, unknown>>): Promise<FakeApi> {
  const requests: FakeApi['requests'] = [];
  const server = createHttpsServer({ cert: pair['tls.crt'], key: pair['tls.key'] }, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0]!;
      requests.push({
        method: req.method!, path, contentType: req.headers['content-type'], auth: req.headers.authorization,
        body: body ? JSON.parse(body) : undefined,
      });
      const name = /^\/apis\/admissionregistration\.k8s\.io\/v1\/mutatingwebhookconfigurations\/([^/]+)$/.exec(path)?.[1];
      const config = name ? configs[name] : undefined;
      res.setHeader('content-type', 'application/json');
      if (!config) {
        res.statusCode = 404;
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: `mutatingwebhookconfigurations.admissionregistration.k8s.io "${name}" not found` }));
        return;
      }
      if (req.method === 'PATCH') {
        const ops = JSON.parse(body) as { op: string; path: string; value: unknown }[];
        const meta = config['metadata'] as { resourceVersion: string };
        for (const op of ops) {
          if (op.op === 'test') {
            if (op.path !== '/metadata/resourceVersion' || op.value !== meta.resourceVersion) {
              res.statusCode = 422;
              res.end(JSON.stringify({ kind: 'Status', code: 422, message: 'test failed' }));
              return;
            }
          } else {
            const [, , i, , field] = op.path.split('/');
            const hook = (config['webhooks'] as { clientConfig: Record<string, unknown> }[])[Number(i)]!;
            hook.clientConfig[field!] = op.value;
          }
        }
        meta.resourceVersion = String(Number(meta.resourceVersion) + 1);
      }
      res.end(JSON.stringify(config));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `https://127.0.0.1:${port}`, requests, close: () => server.close() };
}

function kubeconfig(dir: string, server: string, ca: string): string {
  const path = join(dir, 'kubeconfig');
  writeFileSync(path, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'test',
    clusters: [{ name: 'test', cluster: { server, 'certificate-authority-data': Buffer.from(ca).toString('base64') } }],
    users: [{ name: 'test', user: { token: 'secret-token' } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
  }));
  return path;
}

t.test('--patch-webhook writes the CA into every webhook\'s caBundle', async (t) => {
  // The fake API server itself runs on certificates from `certs`.
  const apiCerts = tmp(t);
  await runCerts(flags(apiCerts, { ip: ['127.0.0.1'] }), capture().io);
  const apiPair = read(apiCerts);
  const configs: Record<string, Record<string, unknown>> = {
    'pod-identity-webhook': {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'pod-identity-webhook', resourceVersion: '7' },
      webhooks: [
        { name: 'a.amazonaws.com', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { service: { name: 's', namespace: 'n' } } },
        { name: 'b.amazonaws.com', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { service: { name: 's', namespace: 'n' }, caBundle: 'b2xk' } },
      ],
    },
  };
  const api = await fakeApiServer(apiPair, configs);
  t.teardown(api.close);
  const dir = tmp(t);
  const kc = kubeconfig(apiCerts, api.url, apiPair['ca.crt']!);

  const c = capture();
  const result: CertificateResult = await runCerts(flags(dir, { patchWebhook: 'pod-identity-webhook', kubeconfig: kc }), c.io);
  const bundle = Buffer.from(result.ca.cert).toString('base64');
  t.equal(bundle, Buffer.from(read(dir)['ca.crt']!).toString('base64'));
  const hooks = configs['pod-identity-webhook']!['webhooks'] as { clientConfig: { caBundle?: string } }[];
  t.same(hooks.map((h) => h.clientConfig.caBundle), [bundle, bundle]);
  t.equal(c.out.at(-1), 'mutatingwebhookconfiguration/pod-identity-webhook: caBundle set in 2 of 2 webhook(s)');
  const patch = api.requests.find((r) => r.method === 'PATCH')!;
  t.equal(patch.contentType, 'application/json-patch+json');
  t.equal(patch.auth, 'Bearer secret-token');
  t.same((patch.body as { op: string }[])[0], { op: 'test', path: '/metadata/resourceVersion', value: '7' });

  // Nothing to change: read only.
  api.requests.length = 0;
  const again = capture();
  await runCerts(flags(dir, { patchWebhook: 'pod-identity-webhook', kubeconfig: kc }), again.io);
  t.same(api.requests.map((r) => r.method), ['GET']);
  t.match(again.out.at(-1), 'caBundle already current in all 2 webhook(s)');

  // A missing configuration: one clear line, exit code 1.
  const missing = await cli(['--out-dir', dir, '--patch-webhook', 'nope', '--kubeconfig', kc]);
  t.equal(missing.code, 1);
  t.same(missing.err, ['error: MutatingWebhookConfiguration "nope" not found']);
  t.equal(process.exitCode, undefined, 'the test restored the exit code');
});

// The built CLI (npm test builds it first) behaves the same.
t.test('dist/cli.js certs', async (t) => {
  const dir = tmp(t);
  const cliPath = new URL('../../dist/cli.js', import.meta.url).pathname;
  const ok = spawnSync(process.execPath, [cliPath, 'certs', '--out-dir', dir], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  t.equal(ok.stdout.trim().split('\n').length, 4);
  const bad = spawnSync(process.execPath, [cliPath, 'certs', '--out-dir', dir, '--ip', 'nope'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.equal(bad.stderr, 'error: --ip "nope" is not an IPv4 or IPv6 address\n');
});
