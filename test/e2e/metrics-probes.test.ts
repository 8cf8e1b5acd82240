// End to end: the metrics port (plain HTTP) answers /healthz and /readyz with the
// same verdict as the HTTPS port, so liveness can probe it even while the HTTPS
// listener has no certificate (managed certificates).
import t from 'tap';
import { request } from 'node:http';
import { startCluster, startWebhook, tempDir, webhookCertificates } from '../helpers/cluster.js';

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });
}

const started = await startCluster('e2e-metrics-probes');
if ('skip' in started) {
  t.skip(`end-to-end tests: ${started.skip}`, () => undefined);
} else {
  const cluster = started.cluster;
  t.teardown(() => cluster.down());
  await t.test('the metrics port answers /healthz and /readyz', async (t) => {
    const dir = tempDir('piw-metrics-probes-');
    const { ca, tlsArgs } = webhookCertificates(dir);
    const webhook = await startWebhook([`--kubeconfig=${cluster.kubeconfig}`, ...tlsArgs], ca);
    t.teardown(() => webhook.stop());
    t.same(await httpGet(webhook.metricsPort, '/healthz'), { status: 200, body: 'ok\n' });
    t.same(await httpGet(webhook.metricsPort, '/readyz'), { status: 200, body: 'ok\n' }, 'ready, as on HTTPS');
    t.equal((await httpGet(webhook.metricsPort, '/metrics')).status, 200, '/metrics still served');
  });
}
