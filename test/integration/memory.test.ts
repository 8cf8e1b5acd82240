// Nothing a client sends may leak memory: after warm-up, tens of thousands of
// admissions (good, malformed, oversized, wrong content type) leave the heap
// where it was.
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { DEFAULT_MUTATION_OPTIONS } from '../../src/config.js';
import { buildWebhookApp } from '../../src/server/app.js';
import { createMetrics } from '../../src/server/metrics.js';
import { staticIdentities } from '../helpers/identities.js';
import { review } from '../helpers/https.js';
import { ROLE, pod } from '../helpers/pods.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

t.test('heap stays flat across 60,000 admissions of every kind', async (t) => {
  const ids = staticIdentities();
  ids.set('default', 'app', { 'eks.amazonaws.com/role-arn': ROLE, 'eks.amazonaws.com/token-expiration': '1' });
  const app = await buildWebhookApp({
    https: {},
    mutation: { ...DEFAULT_MUTATION_OPTIONS, region: 'us-east-1' },
    identities: ids.provider,
    metrics: createMetrics(),
    logger: pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true })),
    bodyLimit: 16 * 1024,
    readiness: () => ({ ready: true, reasons: [] }),
  });
  t.teardown(() => app.close());
  const bodies: Array<{ payload: string; type: string }> = [
    { payload: review(pod([{ name: 'a' }, { name: 'b' }], { spec: { initContainers: [{ name: 'i' }] } })), type: 'application/json' },
    { payload: review(pod([{ name: 'a' }], { spec: { serviceAccountName: 'unknown' } })), type: 'application/json' },
    { payload: '{"apiVersion":', type: 'application/json' },
    { payload: '', type: 'application/json' },
    { payload: '{}', type: 'text/plain' },
    { payload: review(pod([{ name: 'x'.repeat(20_000) }])), type: 'application/json' },
  ];
  const round = async (n: number): Promise<number> => {
    for (let i = 0; i < n; i++) {
      const b = bodies[i % bodies.length]!;
      await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': b.type }, payload: b.payload });
    }
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  // The heap after a full GC still wobbles by a MiB or so; the lowest of a few
  // readings is stable, and a leak raises every reading.
  const settled = async (): Promise<number> => Math.min(await round(500), await round(500), await round(500));
  await round(5000); // warm-up: JIT, caches, metric label sets
  const before = await settled();
  await round(60_000);
  const growth = ((await settled()) - before) / 1024 / 1024;
  t.comment(`heap growth over 60,000 admissions: ${growth.toFixed(2)} MiB`);
  t.ok(growth < 3, `heap grew ${growth.toFixed(2)} MiB (a leak of 100 bytes per request would be 5.7 MiB)`);
});
