// onFirstAdmission (server/app.ts): serve lets its young generation grow from
// the first admission on, so start-up and probes must not count, and the API
// server's /mutate?timeout=... must.
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { MUTATE_PATH, onFirstAdmission } from '../../src/server/app.js';

t.test('called once, at the first request for /mutate (with or without a query), never for other paths', async (t) => {
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const call = (method: string, path: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => res.resume().on('end', resolve));
      req.on('error', reject);
      req.end();
    });

  const listeners = server.listenerCount('request');
  let calls = 0;
  onFirstAdmission(server, () => calls++);
  t.equal(server.listenerCount('request'), listeners + 1);
  for (const path of ['/readyz', '/healthz', '/metrics', `${MUTATE_PATH}x`, `/x${MUTATE_PATH}`]) await call('GET', path);
  t.equal(calls, 0, 'probes and other paths do not count');
  await call('POST', `${MUTATE_PATH}?timeout=10s`);
  t.equal(calls, 1, 'the API server\'s call counts');
  t.equal(server.listenerCount('request'), listeners, 'and the listener is gone');
  await call('POST', MUTATE_PATH);
  t.equal(calls, 1, 'once only');

  let plain = 0;
  onFirstAdmission(server, () => plain++);
  await call('POST', MUTATE_PATH);
  t.equal(plain, 1, '/mutate without a query counts too');
});
