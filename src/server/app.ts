// The HTTPS app the API server calls: /mutate, /healthz, /readyz. One plugin
// per concern, in fastify's style; everything it needs is passed in.
import type { IncomingMessage } from 'node:http';
import type { ServerOptions } from 'node:https';
import type { EventEmitter } from 'node:events';
import { Transform } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyError, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { SERVER_DEFAULTS, type MutationOptions } from '../config.js';
import type { ClientVerdict } from '../tls/client-auth.js';
import { admitReview, BadReviewError, type IdentityProvider, type ReviewOutcome, reviewAdmission } from './admission.js';
import { type BodyGrant, bodyBudget } from './body-budget.js';
import { bodyDecoder, type DecodeAnswer } from './body-decoder.js';
import { readBody } from './read-body.js';
import type { AdmissionOutcome, WebhookMetrics } from './metrics.js';

/** Timeouts and caps of the HTTPS server (the serve flags of the same names). */
export interface ConnectionLimits {
  /** --request-header-timeout: TLS handshake and request headers, from connect (or the previous response). */
  headersTimeoutMs: number;
  /** --request-timeout: the whole request, body included, from its first byte. */
  requestTimeoutMs: number;
  /** --idle-timeout: a keep-alive connection with no request is closed after this. */
  idleTimeoutMs: number;
  /** --max-connections: more are refused at accept; 0 = no cap. */
  maxConnections: number;
  /** --max-requests-per-connection: then the response says Connection: close; 0 = no cap. */
  maxRequestsPerConnection: number;
  /** --max-inflight-body-bytes: bodies over SMALL_BODY_BYTES are read only while their sizes together fit. */
  inflightBodyBytes: number;
}

export const DEFAULT_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  headersTimeoutMs: SERVER_DEFAULTS.requestHeaderTimeoutMs,
  requestTimeoutMs: SERVER_DEFAULTS.requestTimeoutMs,
  idleTimeoutMs: SERVER_DEFAULTS.idleTimeoutMs,
  maxConnections: SERVER_DEFAULTS.maxConnections,
  maxRequestsPerConnection: SERVER_DEFAULTS.maxRequestsPerConnection,
  inflightBodyBytes: SERVER_DEFAULTS.maxInflightBodyBytes,
});

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
  /** Timeouts and caps of the HTTPS server; DEFAULT_LIMITS when not given. */
  limits?: ConnectionLimits;
  /**
   * With --client-ca: the verdict on the connection's client certificate.
   * Every request but the probes is answered 403 and its connection closed
   * when it is not trusted, before its body is read.
   */
  clientAuthorized?: (socket: TLSSocket) => ClientVerdict;
  /** True from SIGTERM on: responses then close their connection. */
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

/** A large body, parsed and decoded by the worker (body-decoder.ts). */
class DecodedBody {
  constructor(readonly answer: DecodeAnswer) {}
}

const startedAt = Symbol('startedAt');
const bodyGrant = Symbol('bodyGrant');
declare module 'fastify' {
  interface FastifyRequest {
    [startedAt]?: number;
    /** The request's share of the body budget. */
    [bodyGrant]?: BodyGrant;
  }
}
const secondsSince = (request: { [startedAt]?: number }): number => (performance.now() - (request[startedAt] ?? performance.now())) / 1000;

// eslint-disable-next-line @typescript-eslint/require-await -- a fastify plugin is an async function; this one registers synchronously
const admissionRoutes: FastifyPluginAsync<WebhookAppOptions> = async (app, o) => {
  // Each outcome's counter and histogram series, looked up once (prom-client
  // hashes the label set on every call otherwise).
  const series = new Map<AdmissionOutcome, { count: { inc(): void }; duration: { observe(v: number): void } }>();
  const record = (outcome: AdmissionOutcome, seconds: number): void => {
    let s = series.get(outcome);
    if (!s) {
      s = { count: o.metrics.admissions.labels({ outcome }), duration: o.metrics.admissionDuration.labels({ outcome }) };
      series.set(outcome, s);
    }
    s.count.inc();
    s.duration.observe(seconds);
  };

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    const reason = status === 500 ? 'internal error' : reasonFor(err, request.headers['content-type'], o.bodyLimit);
    if (status === 500) o.logger.error({ err }, 'admission failed');
    else o.logger.warn({ status, reason }, 'bad admission request');
    record(status >= 500 ? 'error' : status === 403 ? 'forbidden' : 'bad_request', secondsSince(request));
    void reply.code(status).type('text/plain; charset=utf-8').send(`${reason}\n`);
  });

  const send = (result: ReviewOutcome, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const seconds = secondsSince(request);
    record(result.outcome, seconds);
    if (result.outcome === 'mutated' && result.log.mode) o.metrics.podsMutated.inc({ mode: result.log.mode });
    if (result.log.lookup && result.log.lookup !== 'cache') o.metrics.cacheMisses.inc({ outcome: result.log.lookup });
    if (result.outcome !== 'ignored') {
      const log = result.log;
      log.outcome = result.outcome;
      log.durationMs = Math.round(seconds * 1e6) / 1000;
      o.logger.info(log, 'admission');
    }
    return reply.type('application/json').send(result.review);
  };
  const badReview = (err: unknown): never => {
    if (err instanceof BadReviewError) throw Object.assign(new Error(err.message), { statusCode: 400, code: 'BAD_REVIEW' });
    throw err;
  };

  // Not an async handler: a cached ServiceAccount is answered without a Promise.
  app.post(MUTATE_PATH, (request, reply) => {
    let result: ReviewOutcome | Promise<ReviewOutcome>;
    try {
      const body = request.body;
      if (!(body instanceof DecodedBody)) result = reviewAdmission(body, o.identities, o.mutation, o.random);
      else if (body.answer.review) result = admitReview(body.answer.review, o.identities, o.mutation, o.random);
      else throw new BadReviewError(body.answer.badReview ?? 'request body could not be decoded');
    } catch (err) {
      return badReview(err);
    }
    if (result instanceof Promise) return result.then((r) => send(r, request, reply), badReview);
    send(result, request, reply);
    return undefined;
  });
};

// eslint-disable-next-line @typescript-eslint/require-await -- a fastify plugin is an async function; this one registers synchronously
const healthRoutes: FastifyPluginAsync<WebhookAppOptions> = async (app, o) => {
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'));
  app.get('/readyz', async (_req, reply) => {
    const r = o.readiness();
    if (r.ready) return reply.type('text/plain').send('ok\n');
    return reply.code(503).type('text/plain').send(`not ready: ${r.reasons.join('; ')}\n`);
  });
};

/**
 * Neither app declares a route schema, so fastify's default compilers (ajv and
 * fast-json-stringify) would be loaded only to sit in memory: several MiB of
 * RSS at rest. These stand in for them and refuse a schema if one is ever added.
 */
export const WITHOUT_SCHEMAS = {
  schemaController: {
    compilersFactory: {
      buildValidator: () => () => {
        throw new Error('route schemas are not used: validation is done by the admission decoder');
      },
      buildSerializer: () => () => {
        throw new Error('route schemas are not used: answers are serialised with JSON.stringify');
      },
    },
  },
};

/** Where the API server sends admission reviews. */
export const MUTATE_PATH = '/mutate';

/**
 * Calls `then` once, at the first request for MUTATE_PATH that `server`
 * receives (probes and metrics do not count), and stops listening.
 */
export function onFirstAdmission(server: EventEmitter, then: () => void): void {
  const listener = (request: IncomingMessage): void => {
    // The API server calls /mutate?timeout=10s.
    const url = request.url ?? '';
    if (url !== MUTATE_PATH && !url.startsWith(`${MUTATE_PATH}?`)) return;
    server.off('request', listener);
    then();
  };
  server.on('request', listener);
}

/** Bodies up to this size (an API server's AdmissionReview is a few KiB) are read without waiting for the budget. */
export const SMALL_BODY_BYTES = 64 * 1024;
const PROBES = new Set(['/healthz', '/readyz']);

export async function buildWebhookApp(o: WebhookAppOptions) {
  const limits = o.limits ?? DEFAULT_LIMITS;
  const app = Fastify({
    https: {
      ...o.https,
      // A TLS handshake must end, and a request's headers arrive, within headersTimeout.
      handshakeTimeout: limits.headersTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      // How often Node checks headersTimeout and requestTimeout (its default is 30 s).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    // Admissions are logged by the route itself, one line each; fastify logs nothing.
    logger: false,
    bodyLimit: o.bodyLimit,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    maxRequestsPerSocket: limits.maxRequestsPerConnection,
    // Shutdown (serve.ts) closes idle connections itself; requests on connections
    // accepted before the listener closed are answered, not refused with 503.
    forceCloseConnections: false,
    return503OnClosing: false,
    ...WITHOUT_SCHEMAS,
  });
  app.server.headersTimeout = limits.headersTimeoutMs;
  if (limits.maxConnections > 0) {
    app.server.maxConnections = limits.maxConnections;
    // At the cap a new connection is dropped; idle keep-alive connections go
    // too, so that whoever holds them cannot lock the API server out.
    app.server.on('drop', () => {
      o.logger.warn({ maxConnections: limits.maxConnections }, 'connection limit reached; closing idle connections');
      app.server.closeIdleConnections();
    });
  }

  // With --client-ca, a client without a trusted certificate is refused before
  // its body is read, and disconnected; the kubelet's probes carry none.
  if (o.clientAuthorized) {
    const clientAuthorized = o.clientAuthorized;
    app.addHook('onRequest', (request, reply, done) => {
      const socket = request.raw.socket as TLSSocket;
      if (request.method === 'GET' && PROBES.has(request.url)) {
        done();
        return;
      }
      const verdict = clientAuthorized(socket);
      if (verdict.trusted) {
        done();
        return;
      }
      o.logger.warn({ status: 403, reason: verdict.reason, remote: socket.remoteAddress }, 'client certificate refused');
      o.metrics.admissions.inc({ outcome: 'forbidden' });
      reply.raw.once('finish', () => socket.destroy());
      void reply.code(403).header('connection', 'close').type('text/plain; charset=utf-8')
        .send('a client certificate signed by --client-ca is required\n');
    });
  }
  // Large bodies are read only while their sizes together fit the budget, so
  // many of them at once cost the kernel's buffers, not the heap. Once read, a
  // body holds its real size until the answer is sent.
  const budget = bodyBudget(limits.inflightBodyBytes);
  const waitForBudget = (request: FastifyRequest, reply: FastifyReply, bytes: number, then: () => void): void => {
    let cancel = (): void => {};
    // 'close' comes when the response is done, or when the client goes away (or
    // --request-timeout ends the request) while it waits.
    reply.raw.once('close', () => (request[bodyGrant] ? request[bodyGrant].release() : cancel()));
    cancel = budget.reserve(bytes, (grant) => {
      request[bodyGrant] = grant;
      then();
    });
  };
  app.addHook('onRequest', (request, reply, done) => {
    // An admission's duration is measured from here, so reading and parsing its body count too.
    request[startedAt] = performance.now();
    const length = Number(request.headers['content-length']);
    // Small, or over the body limit (fastify answers 413 without reading it), or chunked (below).
    if (!(length > SMALL_BODY_BYTES) || length > o.bodyLimit) done();
    else waitForBudget(request, reply, length, done);
  });
  // A chunked body (the API server sends Content-Length) of unknown size: its
  // first SMALL_BODY_BYTES are read at once; beyond that it waits for the budget
  // as a body of the full limit would.
  app.addHook('preParsing', (request, reply, payload, done) => {
    if (request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] === undefined) {
      done(null, payload);
      return;
    }
    let seen = 0;
    const metered = new Transform({
      transform(chunk: Buffer, _encoding, next) {
        seen += chunk.length;
        if (seen <= SMALL_BODY_BYTES || request[bodyGrant]) next(null, chunk);
        else waitForBudget(request, reply, o.bodyLimit, () => next(null, chunk));
      },
    });
    payload.on('error', (err) => metered.destroy(err));
    done(null, payload.pipe(metered));
  });
  // Only JSON is an AdmissionReview: text/plain and everything else get 415.
  app.removeContentTypeParser(['text/plain', 'application/json']);
  // Plain JSON.parse: fastify's default also scans every body for "__proto__"
  // and "constructor" keys, which only matter to code that merges request data
  // into other objects. The webhook only reads the review, so the scan would
  // be pure cost on the hot path. A large body is parsed in the decoder's
  // worker thread instead: see body-decoder.ts.
  const decoder = bodyDecoder(o.mutation.annotationPrefix);
  app.addHook('onClose', async () => decoder.close());
  const parseBody = (request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void): void => {
    request[bodyGrant]?.shrink(body.length);
    if (body.length === 0) {
      done(Object.assign(new Error('request body is empty'), { statusCode: 400, code: 'FST_ERR_CTP_EMPTY_JSON_BODY' }), undefined);
      return;
    }
    if (body.length <= SMALL_BODY_BYTES) {
      try {
        done(null, JSON.parse(body.toString()));
      } catch (err) {
        done(Object.assign(err as Error, { statusCode: 400 }), undefined);
      }
      return;
    }
    const bytes = body.length; // the body moves to the worker, or the worker reads it from the budget's memory
    const decoding = decoder.decode(body);
    // The worker may still read the body's bytes after the client went away.
    if (body.buffer instanceof SharedArrayBuffer) request[bodyGrant]?.busyUntil(decoding);
    void decoding.then((d) => {
      if ('failed' in d) {
        o.logger.warn({ bytes, reason: d.failed }, 'a large request body could not be decoded within the decoder\'s memory');
        done(Object.assign(new Error('request body could not be decoded within the webhook\'s memory bound'), { statusCode: 413, code: 'BODY_DECODE_FAILED' }), undefined);
      } else if (d.invalidJson !== undefined) {
        done(Object.assign(new SyntaxError(d.invalidJson), { statusCode: 400 }), undefined);
      } else {
        done(null, new DecodedBody(d));
      }
    });
  };
  app.addContentTypeParser('application/json', (request, payload, done) => {
    const header = request.headers['content-length'];
    const contentLength = header === undefined ? undefined : Number(header);
    // A large body goes straight into its share of the budget's memory (body-budget.ts).
    const memory = request[bodyGrant]?.memory;
    const known = Number.isSafeInteger(contentLength) ? contentLength : undefined;
    const allocate = memory && memory.length === known ? () => memory : undefined;
    readBody(payload, { contentLength: known, limit: o.bodyLimit, wholeChunkUpTo: SMALL_BODY_BYTES, ...(allocate ? { allocate } : {}) }, (err, body) => {
      if (err) done(err, undefined);
      else parseBody(request, body as Buffer, done);
    });
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
