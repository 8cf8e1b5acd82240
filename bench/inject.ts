// The JavaScript cost of /mutate alone, without TLS or sockets: builds of the
// webhook app (each a directory of src/ compiled module by module, as
// `tsc -p tsconfig.bench.json` writes dist-bench/src) and a bare fastify route,
// driven in turns in one process with fastify's inject, CPU time per request.
// For measuring a change to the request path before and after on a busy
// machine, where the network benchmark's numbers wander:
//   node dist-bench/bench/inject.js before=dist-bench/before/src after=dist-bench/src
import { resolve } from 'node:path';
import Fastify from 'fastify';
import pino from 'pino';
import { realisticReview } from './review.js';

const ROUNDS = Number(process.env['INJECT_ROUNDS'] ?? 7);
const REQUESTS = Number(process.env['INJECT_REQUESTS'] ?? 20_000);

type Inject = (body: string) => Promise<{ statusCode: number; body: string }>;

async function webhook(dist: string): Promise<Inject> {
  const at = (m: string): string => `file://${resolve(dist, m)}`;
  const { buildWebhookApp } = (await import(at('server/app.js'))) as typeof import('../src/server/app.js');
  const { createMetrics } = (await import(at('server/metrics.js'))) as typeof import('../src/server/metrics.js');
  const { createLogger } = (await import(at('server/log.js'))) as typeof import('../src/server/log.js');
  const { DEFAULT_MUTATION_OPTIONS } = (await import(at('config.js'))) as typeof import('../src/config.js');
  const { parseServiceAccountAnnotations } = (await import(at('settings/service-account.js'))) as typeof import('../src/settings/service-account.js');
  const settings = parseServiceAccountAnnotations({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/checkout' }, 'eks.amazonaws.com');
  // As `serve` logs: asynchronous writes in 4 KiB batches.
  const destination = pino.destination({ dest: '/dev/null', sync: false, minLength: 4096 });
  const app = await buildWebhookApp({
    https: {},
    mutation: { ...DEFAULT_MUTATION_OPTIONS },
    identities: {
      serviceAccount: () => ({ settings, outcome: 'cache' }),
      configMap: () => undefined,
      containerCredentials: () => undefined,
    },
    metrics: createMetrics(),
    logger: createLogger({ level: process.env['BENCH_LOG_LEVEL'] ?? 'info', format: 'json', destination }),
    bodyLimit: 6 * 1024 * 1024,
    readiness: () => ({ ready: true, reasons: [] }),
    draining: () => false,
  });
  await app.ready();
  return (body) => app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: body });
}

async function bare(size: number): Promise<Inject> {
  const answer = JSON.stringify({ pad: 'x'.repeat(Math.max(0, size - 10)) });
  const app = Fastify({ bodyLimit: 6 * 1024 * 1024 });
  app.post('/mutate', async (_req, reply) => reply.type('application/json').send(answer));
  await app.ready();
  return (body) => app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: body });
}

async function cpuPerRequest(inject: Inject, body: string, n: number): Promise<number> {
  const before = process.cpuUsage();
  // 16 at a time, as the network benchmark's connections.
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next++ < n) await inject(body);
  }));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const body = realisticReview('shop', 'checkout');
  const targets: Array<{ label: string; inject: Inject }> = [];
  let size = 0;
  for (const arg of process.argv.slice(2)) {
    const [label, dist] = arg.split('=') as [string, string];
    const inject = await webhook(dist);
    const r = await inject(body);
    if (r.statusCode !== 200 || !r.body.includes('"patchType":"JSONPatch"')) throw new Error(`${label}: ${r.statusCode} ${r.body}`);
    size = r.body.length;
    targets.push({ label, inject });
  }
  targets.push({ label: 'bare', inject: await bare(size) });
  for (const t of targets) await cpuPerRequest(t.inject, body, REQUESTS); // warm-up
  const results = new Map<string, number[]>(targets.map((t) => [t.label, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) results.get(t.label)!.push(await cpuPerRequest(t.inject, body, REQUESTS));
  }
  const bareUs = median(results.get('bare')!);
  for (const [label, us] of results) {
    console.log(`${label.padEnd(12)} ${median(us).toFixed(1).padStart(6)} µs CPU/request (median of ${ROUNDS}; ${us.map((u) => u.toFixed(0)).join(' ')})  ${(median(us) - bareUs).toFixed(1)} µs over bare`);
  }
}

await main();
