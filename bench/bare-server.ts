// The yardstick: a bare fastify HTTPS route that parses the same JSON body and
// returns a body of the same size as /mutate's answer, nothing else.
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

const [certFile, keyFile, port, size] = process.argv.slice(2);
const body = JSON.stringify({ pad: 'x'.repeat(Math.max(0, Number(size) - 10)) });
const app = Fastify({ https: { cert: readFileSync(certFile!, 'utf8'), key: readFileSync(keyFile!, 'utf8') }, bodyLimit: 6 * 1024 * 1024 });
app.post('/mutate', async (_req, reply) => reply.type('application/json').send(body));
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.stdout.write('listening\n');
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
