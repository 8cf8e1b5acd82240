import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { apiRequest } from '../../src/certificates/api.js';
import { KubeApiError } from '../../src/kube/reflector-request.js';

t.test('apiRequest: method, body, content type, statuses', async (t) => {
  const seen: { method?: string; url?: string; type?: string; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, type: req.headers['content-type'], body });
      if (req.url?.endsWith('/missing')) return void res.writeHead(404).end('{"kind":"Status"}');
      if (req.url?.endsWith('/conflict')) return void res.writeHead(409).end('{"reason":"Conflict"}');
      if (req.url?.endsWith('/forbidden')) return void res.writeHead(403).end('{"message":"no","reason":"Forbidden"}');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echoed: body }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}/prefix/`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'tok' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const put = await apiRequest(kc, 'PUT', '/api/v1/x', { a: 1 });
  t.same(put, { statusCode: 200, body: { echoed: '{"a":1}' } });
  t.match(seen[0], { method: 'PUT', url: '/prefix/api/v1/x', type: 'application/json' });
  await apiRequest(kc, 'PATCH', '/p', [{ op: 'add' }], 'application/json-patch+json');
  t.equal(seen[1]?.type, 'application/json-patch+json');
  t.equal((await apiRequest(kc, 'GET', '/missing')).statusCode, 404);
  t.equal((await apiRequest(kc, 'PUT', '/conflict', {})).statusCode, 409);
  const err = await apiRequest(kc, 'GET', '/forbidden').catch((e: unknown) => e);
  t.ok(err instanceof KubeApiError && err.statusCode === 403 && err.reason === 'Forbidden', String(err));
});
