// The yardsticks: a bare fastify HTTPS route that parses the same JSON body and
// returns a body of the same size as /mutate's answer, nothing else; and with
// `floor`, the same route plus what every admission must cost whatever the
// webhook does: serve's log line (same logger, same buffered destination) and
// its metrics (same registry, default metrics included).
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import { bufferedDestination, createLogger } from '../src/server/log.js';
import { createMetrics } from '../src/server/metrics.js';

const [certFile, keyFile, port, size, mode = 'bare'] = process.argv.slice(2);
const body = JSON.stringify({ pad: 'x'.repeat(Math.max(0, Number(size) - 10)) });
const app = Fastify({ https: { cert: readFileSync(certFile!, 'utf8'), key: readFileSync(keyFile!, 'utf8') }, bodyLimit: 6 * 1024 * 1024 });
if (mode === 'floor') {
  // serve's stdout is /dev/null in the bench; so is this one's log.
  const logger = createLogger({ level: 'info', format: 'json', destination: bufferedDestination('/dev/null') });
  const metrics = createMetrics();
  const count = metrics.admissions.labels({ outcome: 'mutated' });
  const duration = metrics.admissionDuration.labels({ outcome: 'mutated' });
  app.post('/mutate', (request, reply) => {
    const started = performance.now();
    const review = request.body as { request?: { uid?: string; namespace?: string } };
    const seconds = (performance.now() - started) / 1000;
    count.inc();
    duration.observe(seconds);
    metrics.podsMutated.inc({ mode: 'web-identity' });
    logger.info({
      uid: review.request?.uid ?? '', pod: 'checkout-7d9f8c6b5-', namespace: review.request?.namespace ?? '', serviceAccount: 'checkout',
      mode: 'web-identity', lookup: 'cache', warnings: 0, outcome: 'mutated', durationMs: Math.round(seconds * 1e6) / 1000,
    }, 'admission');
    return reply.type('application/json').send(body);
  });
} else {
  app.post('/mutate', async (_req, reply) => reply.type('application/json').send(body));
}
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.stdout.write('listening\n');
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
