// The HTTPS app the API server calls: /mutate, /healthz, /readyz. One plugin
// per concern, in fastify's style; everything it needs is passed in.
import type { ServerOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyError, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { MutationOptions } from '../config.js';
import { BadReviewError, type IdentityProvider, type ReviewOutcome, reviewAdmission } from './admission.js';
import type { AdmissionOutcome, WebhookMetrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready, for /readyz and the logs. */
  reasons: string[];
}

export interface WebhookAppOptions {
  https: ServerOptions;
  mutation: MutationOptions;
  identities: IdentityProvider;
  metrics: WebhookMetrics;
  logger: Logger;
  bodyLimit: number;
  readiness: () => Readiness;
  /** With --client-ca: whether the connection's client certificate is trusted; /mutate answers 403 otherwise. */
  clientAuthorized?: (socket: TLSSocket) => boolean;
  /** True while shutting down: responses then close their connection. */
  draining?: () => boolean;
  random?: () => number;
}

/** One short line for each way a request body can be unusable. */
function reasonFor(err: FastifyError, contentType: string | undefined, bodyLimit: number): string {
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return `Content-Type ${contentType ?? '(none)'} is not supported; send application/json`;
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `request body is larger than ${bodyLimit} bytes`;
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'request body is empty';
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'Content-Length does not match the body';
    default:
      return err.statusCode === 400 ? `body is not valid JSON: ${err.message.split('\n')[0]}` : err.message.split('\n')[0] ?? '';
  }
}

const startedAt = Symbol('startedAt');
declare module 'fastify' {
  interface FastifyRequest {
    [startedAt]?: number;
  }
}
const secondsSince = (request: { [startedAt]?: number }): number => (performance.now() - (request[startedAt] ?? performance.now())) / 1000;

const admissionRoutes: FastifyPluginAsync<WebhookAppOptions> = async (app, o) => {
  // Measured from the first byte of the request, so body parsing counts too.
  app.addHook('onRequest', (request, _reply, done) => {
    request[startedAt] = performance.now();
    done();
  });
  const record = (outcome: AdmissionOutcome, seconds: number): void => {
    o.metrics.admissions.inc({ outcome });
    o.metrics.admissionDuration.observe({ outcome }, seconds);
  };

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    const reason = status === 500 ? 'internal error' : reasonFor(err, request.headers['content-type'], o.bodyLimit);
    if (status === 500) o.logger.error({ err }, 'admission failed');
    else o.logger.warn({ status, reason }, 'bad admission request');
    record('bad_request', secondsSince(request));
    void reply.code(status).type('text/plain; charset=utf-8').send(`${reason}\n`);
  });

  const send = (result: ReviewOutcome, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const seconds = secondsSince(request);
    record(result.outcome, seconds);
    if (result.outcome === 'mutated' && result.log.mode) o.metrics.podsMutated.inc({ mode: result.log.mode });
    if (result.log.lookup && result.log.lookup !== 'cache') o.metrics.cacheMisses.inc({ outcome: result.log.lookup });
    if (result.outcome !== 'ignored') {
      o.logger.info({ ...result.log, outcome: result.outcome, durationMs: Math.round(seconds * 1e6) / 1000 }, 'admission');
    }
    return reply.type('application/json').send(result.review);
  };
  const badReview = (err: unknown): never => {
    if (err instanceof BadReviewError) throw Object.assign(new Error(err.message), { statusCode: 400, code: 'BAD_REVIEW' });
    throw err;
  };

  // Not an async handler: a cached ServiceAccount is answered without a Promise.
  app.post('/mutate', (request, reply) => {
    if (o.clientAuthorized && !o.clientAuthorized(request.raw.socket as TLSSocket)) {
      throw Object.assign(new Error('a client certificate signed by --client-ca is required'), { statusCode: 403, code: 'CLIENT_CERT' });
    }
    let result: ReviewOutcome | Promise<ReviewOutcome>;
    try {
      result = reviewAdmission(request.body, o.identities, o.mutation, o.random);
    } catch (err) {
      return badReview(err);
    }
    if (result instanceof Promise) return result.then((r) => send(r, request, reply), badReview);
    send(result, request, reply);
    return undefined;
  });
};

const healthRoutes: FastifyPluginAsync<WebhookAppOptions> = async (app, o) => {
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'));
  app.get('/readyz', async (_req, reply) => {
    const r = o.readiness();
    if (r.ready) return reply.type('text/plain').send('ok\n');
    return reply.code(503).type('text/plain').send(`not ready: ${r.reasons.join('; ')}\n`);
  });
};

export async function buildWebhookApp(o: WebhookAppOptions) {
  const app = Fastify({
    https: o.https,
    // Admissions are logged by the route itself, one line each; fastify logs nothing.
    logger: false,
    bodyLimit: o.bodyLimit,
    // Keep-alive connections from the API server are closed when idle at shutdown.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  // Only JSON is an AdmissionReview: text/plain and everything else get 415.
  app.removeContentTypeParser(['text/plain', 'application/json']);
  // Plain JSON.parse: fastify's default also scans every body for "__proto__"
  // and "constructor" keys, which only matter to code that merges request data
  // into other objects. The webhook only reads the review, so the scan would
  // be pure cost on the hot path.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if (body === '') {
      done(Object.assign(new Error('request body is empty'), { statusCode: 400, code: 'FST_ERR_CTP_EMPTY_JSON_BODY' }), undefined);
      return;
    }
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      done(Object.assign(err as Error, { statusCode: 400 }), undefined);
    }
  });
  // While draining, every response closes its connection (as Go's Shutdown does),
  // so keep-alive clients reconnect elsewhere instead of reusing a closing server.
  if (o.draining) {
    const draining = o.draining;
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (draining()) void reply.header('connection', 'close');
      done(null, payload);
    });
  }
  await app.register(admissionRoutes, o);
  await app.register(healthRoutes, o);
  return app;
}

export type WebhookApp = Awaited<ReturnType<typeof buildWebhookApp>>;
