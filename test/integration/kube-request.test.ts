// The API server connection without a generated client: every kind of
// kubeconfig credential against real local servers (TLS with the test CA,
// client certificates, exec plugins that are real scripts, token files that
// rotate), and the request helper's answers and errors.
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import t, { type Test } from 'tap';
import { stringify } from 'yaml';
import { KubeConfigError, loadKubeConfig } from '../../src/kube/client.js';
import { KubeApiError, kubeRequest, kubeStream, PATCH, readBody } from '../../src/kube/request.js';
import { createTestPki } from '../helpers/tls.js';
import { waitUntil } from '../helpers/wait.js';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
  clientCn: string | undefined;
  impersonateGroups: string | string[] | undefined;
}

type Answer = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void;

const okAnswer: Answer = (_req, res, seen) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Seen', seen }));
};

async function serve(t: Test, server: http.Server, answer: Answer): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = req.socket as Partial<TLSSocket>;
      const cn = socket.getPeerCertificate?.()?.subject?.CN;
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body: Buffer.concat(chunks).toString('utf8'),
        clientCn: typeof cn === 'string' ? cn : undefined,
        impersonateGroups: req.headers['impersonate-group'],
      };
      seen.push(s);
      answer(req, res, s);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `${server instanceof https.Server ? 'https' : 'http'}://127.0.0.1:${port}`, seen };
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'piw-kr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function kubeconfig(dir: string, cluster: Record<string, unknown>, user: Record<string, unknown>, name = 'kubeconfig'): string {
  const path = join(dir, name);
  writeFileSync(path, stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'ctx',
  }));
  return path;
}

t.test('bearer token, basic auth, impersonation and the request helper\'s answers', async (t) => {
  const dir = tempDir(t);
  const { url, seen } = await serve(t, http.createServer(), (req, res, s) => {
    if (req.url?.includes('/missing')) {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'secrets "x" not found', code: 404 }));
      return;
    }
    if (req.url?.includes('/hang')) return;
    okAnswer(req, res, s);
  });
  const conn = loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: `${url}/prefix/` }, { token: 'abc', as: 'someone', 'as-groups': ['g1', 'g2'] }) });
  const { status, body } = await kubeRequest(conn, { path: '/api/v1/namespaces', query: { limit: 5, labelSelector: 'a=b', continue: undefined } });
  t.equal(status, 200);
  t.equal((body as { kind: string }).kind, 'Seen');
  t.equal(seen[0]?.url, '/prefix/api/v1/namespaces?limit=5&labelSelector=a%3Db', 'path appended to the server\'s prefix, query encoded');
  t.equal(seen[0]?.authorization, 'Bearer abc');
  t.equal(seen[0]?.impersonateGroups, 'g1, g2', 'one header line per group (Node joins them when reading)');

  await kubeRequest(conn, { method: 'PATCH', path: '/x', body: [{ op: 'add', path: '/a', value: 1 }], contentType: PATCH.json });
  t.equal(seen[1]?.method, 'PATCH');
  t.equal(seen[1]?.contentType, 'application/json-patch+json');
  t.same(JSON.parse(seen[1]?.body ?? ''), [{ op: 'add', path: '/a', value: 1 }]);
  await kubeRequest(conn, { method: 'POST', path: '/y', body: { a: 1 } });
  t.equal(seen[2]?.contentType, 'application/json');

  const err = await kubeRequest(conn, { path: '/missing' }).catch((e: unknown) => e);
  t.ok(err instanceof KubeApiError);
  t.equal((err as KubeApiError).status, 404);
  t.equal((err as KubeApiError).reason, 'NotFound');
  t.match((err as Error).message, 'GET /missing: HTTP 404: secrets "x" not found');

  const controller = new AbortController();
  const hanging = kubeRequest(conn, { path: '/hang', signal: controller.signal });
  await waitUntil('the hanging request arrived', () => (seen.some((s) => s.url.endsWith('/hang')) ? true : undefined));
  controller.abort();
  await t.rejects(hanging, { name: 'AbortError' }, 'aborted before any response header');
  await t.rejects(kubeRequest(conn, { path: '/hang', idleMs: 50 }), { message: /no data from the API server for 50 ms/ });

  const stream = await kubeStream(conn, { path: '/stream' });
  t.equal(stream.statusCode, 200, 'kubeStream resolves at the headers');
  t.match(await readBody(stream), /"kind":"Seen"/);

  const basic = loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: url }, { username: 'ann', password: 'pw' }, 'basic') });
  await kubeRequest(basic, { path: '/b' });
  t.equal(seen.at(-1)?.authorization, `Basic ${Buffer.from('ann:pw').toString('base64')}`);
});

t.test('tokenFile: a rotated token is used by the next request', async (t) => {
  const dir = tempDir(t);
  const { url, seen } = await serve(t, http.createServer(), okAnswer);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'first\n');
  const conn = loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: url }, { tokenFile: 'token' }) });
  await kubeRequest(conn, { path: '/1' });
  t.equal(seen[0]?.authorization, 'Bearer first', 'read relative to the kubeconfig, trimmed');
  // As the kubelet does: a new file renamed over the old one.
  writeFileSync(join(dir, 'token.new'), 'second');
  renameSync(join(dir, 'token.new'), tokenFile);
  await kubeRequest(conn, { path: '/2' });
  t.equal(seen[1]?.authorization, 'Bearer second');
  rmSync(tokenFile);
  await t.rejects(kubeRequest(conn, { path: '/3' }), { message: /tokenFile .*token: ENOENT/ });
});

t.test('TLS: certificate-authority (file and data), client certificates (files and data), insecure-skip-tls-verify', async (t) => {
  const dir = tempDir(t);
  const pki = createTestPki();
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
  const serving = pki.issue('apiserver');
  const client = pki.issue('admin', { client: true, cn: 'kube-admin' });
  const server = https.createServer({ cert: serving.cert, key: serving.key, ca: pki.caCert, requestCert: true, rejectUnauthorized: true });
  const { url, seen } = await serve(t, server, okAnswer);
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  writeFileSync(join(dir, 'ca.crt'), pki.caCert);

  const files = loadKubeConfig({
    kubeconfig: kubeconfig(dir, { server: url, 'certificate-authority': 'ca.crt' }, { 'client-certificate': client.certFile, 'client-key': client.keyFile }, 'files'),
  });
  await kubeRequest(files, { path: '/files' });
  t.equal(seen.at(-1)?.clientCn, 'kube-admin', 'the server verified our client certificate (files)');
  t.equal(seen.at(-1)?.authorization, undefined);

  const data = loadKubeConfig({
    kubeconfig: kubeconfig(dir, { server: url, 'certificate-authority-data': b64(pki.caCert) }, { 'client-certificate-data': b64(client.cert), 'client-key-data': b64(client.key) }, 'data'),
  });
  await kubeRequest(data, { path: '/data' });
  t.equal(seen.at(-1)?.clientCn, 'kube-admin', 'the server verified our client certificate (data)');

  // Without the CA the server is not trusted ...
  const noCa = loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: url }, { 'client-certificate-data': b64(client.cert), 'client-key-data': b64(client.key) }, 'noca') });
  await t.rejects(kubeRequest(noCa, { path: '/noca' }), { code: /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER_CERT/ });
  // ... unless verification is switched off.
  const insecure = loadKubeConfig({
    kubeconfig: kubeconfig(dir, { server: url, 'insecure-skip-tls-verify': true }, { 'client-certificate-data': b64(client.cert), 'client-key-data': b64(client.key) }, 'insecure'),
  });
  await kubeRequest(insecure, { path: '/insecure' });
  t.equal(seen.at(-1)?.url, '/insecure');

  // An exec plugin may hand out the client certificate.
  const plugin = join(dir, 'cert-plugin.sh');
  writeFileSync(join(dir, 'cred.json'), JSON.stringify({
    apiVersion: 'client.authentication.k8s.io/v1',
    kind: 'ExecCredential',
    status: { clientCertificateData: client.cert, clientKeyData: client.key },
  }));
  writeFileSync(plugin, `#!/bin/sh\ncat "${join(dir, 'cred.json')}"\n`);
  chmodSync(plugin, 0o755);
  const exec = loadKubeConfig({
    kubeconfig: kubeconfig(dir, { server: url, 'certificate-authority': 'ca.crt' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: './cert-plugin.sh' } }, 'exec'),
  });
  await kubeRequest(exec, { path: '/exec' });
  t.equal(seen.at(-1)?.clientCn, 'kube-admin', 'the client certificate of the exec plugin');
});

t.test('exec plugins: run with their args and env, cached until expirationTimestamp, run again after a 401', async (t) => {
  const dir = tempDir(t);
  let reject = false;
  const { url, seen } = await serve(t, http.createServer(), (req, res, s) => {
    if (reject) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', reason: 'Unauthorized', code: 401 }));
      return;
    }
    okAnswer(req, res, s);
  });
  // A real plugin: counts its runs, echoes what it was given, and sets the expiry the test asks for.
  const plugin = join(dir, 'plugin.mjs');
  writeFileSync(plugin, `#!/usr/bin/env node
import { appendFileSync, readFileSync } from 'node:fs';
const dir = ${JSON.stringify(dir)};
appendFileSync(dir + '/runs', 'run\\n');
const runs = readFileSync(dir + '/runs', 'utf8').split('\\n').length - 1;
const info = JSON.parse(process.env.KUBERNETES_EXEC_INFO);
const expiry = readFileSync(dir + '/expiry', 'utf8').trim();
process.stdout.write(JSON.stringify({
  apiVersion: info.apiVersion,
  kind: 'ExecCredential',
  status: { token: [process.argv[2], process.env.PLUGIN_SUFFIX, runs, info.spec.interactive, info.spec.cluster?.server ?? 'no-cluster'].join('.'), ...(expiry ? { expirationTimestamp: expiry } : {}) },
}));
`);
  chmodSync(plugin, 0o755);
  const runs = (): number => readFileSync(join(dir, 'runs'), 'utf8').split('\n').length - 1;
  writeFileSync(join(dir, 'expiry'), new Date(Date.now() + 3_600_000).toISOString());

  for (const apiVersion of ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1']) {
    rmSync(join(dir, 'runs'), { force: true });
    const conn = loadKubeConfig({
      kubeconfig: kubeconfig(dir, { server: url }, {
        exec: { apiVersion, command: plugin, args: ['tok'], env: [{ name: 'PLUGIN_SUFFIX', value: 'sfx' }], provideClusterInfo: true, interactiveMode: 'Never' },
      }),
    });
    await Promise.all([kubeRequest(conn, { path: '/a' }), kubeRequest(conn, { path: '/b' })]);
    await kubeRequest(conn, { path: '/c' });
    t.equal(seen.at(-1)?.authorization, `Bearer tok.sfx.1.false.${url}`, `${apiVersion}: args, env and the exec info reach the plugin`);
    t.equal(runs(), 1, `${apiVersion}: one run for three requests while the credential is valid`);
  }

  // An expired credential is fetched anew for every request.
  rmSync(join(dir, 'runs'));
  writeFileSync(join(dir, 'expiry'), new Date(Date.now() - 1000).toISOString());
  const expiring = loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: url }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, args: ['e'] } }) });
  await kubeRequest(expiring, { path: '/1' });
  await kubeRequest(expiring, { path: '/2' });
  t.equal(runs(), 2);
  t.equal(seen.at(-1)?.authorization, 'Bearer e..2.false.no-cluster', 'no cluster info unless asked for');

  // Without an expiry the credential is kept until the API server refuses it.
  rmSync(join(dir, 'runs'));
  writeFileSync(join(dir, 'expiry'), '');
  const lasting = loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: url }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, args: ['l'] } }) });
  await kubeRequest(lasting, { path: '/1' });
  await kubeRequest(lasting, { path: '/2' });
  t.equal(runs(), 1);
  reject = true;
  await t.rejects(kubeRequest(lasting, { path: '/3' }), { message: /HTTP 401/ });
  reject = false;
  await kubeRequest(lasting, { path: '/4' });
  t.equal(runs(), 2, 'run again after the 401');
  t.equal(seen.at(-1)?.authorization, 'Bearer l..2.false.no-cluster');
});

t.test('exec plugin failures and unsupported kubeconfig features are one clear line', async (t) => {
  const dir = tempDir(t);
  const { url } = await serve(t, http.createServer(), okAnswer);
  const v1 = 'client.authentication.k8s.io/v1';
  const fails = (name: string, body: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  };
  const conn = (exec: Record<string, unknown>): ReturnType<typeof loadKubeConfig> =>
    loadKubeConfig({ kubeconfig: kubeconfig(dir, { server: url }, { exec: { apiVersion: v1, ...exec } }) });
  await t.rejects(kubeRequest(conn({ command: 'piw-no-such-plugin', installHint: 'install it from example' }), { path: '/' }), {
    message: 'exec plugin piw-no-such-plugin: not found (install it from example)',
  });
  await t.rejects(kubeRequest(conn({ command: fails('exit3', 'echo "token expired, log in again" >&2; exit 3') }), { path: '/' }), {
    message: /exit3: exit code 3: token expired, log in again$/,
  });
  await t.rejects(kubeRequest(conn({ command: fails('garbage', 'echo not json') }), { path: '/' }), { message: /not an ExecCredential/ });
  await t.rejects(kubeRequest(conn({ command: fails('wrongversion', `echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"x"}}'`) }), { path: '/' }), {
    message: /apiVersion "client.authentication.k8s.io\/v1beta1", not client.authentication.k8s.io\/v1/,
  });
  await t.rejects(kubeRequest(conn({ command: fails('empty', `echo '{"kind":"ExecCredential","apiVersion":"${v1}","status":{}}'`) }), { path: '/' }), {
    message: /neither status.token nor clientCertificateData/,
  });

  const refused = (user: Record<string, unknown>, cluster: Record<string, unknown> = { server: url }): Error => {
    try {
      loadKubeConfig({ kubeconfig: kubeconfig(dir, cluster, user, 'refused') });
    } catch (err) {
      t.ok(err instanceof KubeConfigError);
      return err as Error;
    }
    throw new Error('accepted');
  };
  t.match(refused({ 'auth-provider': { name: 'gcp', config: {} } }).message, /^user "u": auth-provider "gcp" is not supported; use an exec credential plugin/);
  t.match(refused({ exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } }).message, /exec apiVersion "client.authentication.k8s.io\/v1alpha1" is not supported/);
  t.match(refused({ exec: { apiVersion: v1, command: 'x', interactiveMode: 'Always' } }).message, /interactiveMode Always needs a terminal/);
  t.match(refused({ 'client-certificate-data': 'eA==' }).message, /a client certificate without client-key/);
  t.match(refused({}, { server: url, 'proxy-url': 'http://proxy:3128' }).message, /proxy-url is not supported/);
  t.match(refused({}, { server: 'ftp://x' }).message, /not an http\(s\) URL/);
});
