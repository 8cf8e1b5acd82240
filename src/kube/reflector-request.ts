// Raw GETs against the API server, authenticated by a KubeConfig. Used
// instead of the generated clients so that every request can be aborted at
// any stage (before the response headers too) and so that list pages and
// watch events stay plain JSON that is dropped once handled.
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** An HTTP status the API server answered with, plus its Status reason when it sent one. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly statusCode: number | undefined,
    readonly reason?: string,
  ) {
    super(message);
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

/**
 * Opens a GET and resolves with the response once its headers arrive. The
 * caller owns the response and must consume or destroy it. Aborting `signal`
 * destroys the request whatever stage it is in.
 */
export async function openGet(kc: KubeConfig, path: string, query: Query, signal: AbortSignal): Promise<IncomingMessage> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  // The server URL may carry a path prefix (API proxies do), so append rather than resolve.
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  const options: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  // Called per request: token files and exec credentials may rotate.
  await kc.applyToHTTPSOptions(options);
  signal.throwIfAborted();
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = transport.request(url, { ...options, signal }, resolve);
    req.on('error', reject);
    req.end();
  });
}

/** Reads a whole body as text; rejects when the connection breaks first. */
export function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('close', () => {
      if (!res.complete) reject(new Error('connection closed before the response was complete'));
    });
  });
}

/** Builds the error for a non-2xx answer from its (Status) body. */
export function statusError(statusCode: number | undefined, body: string, what: string): KubeApiError {
  let message = '';
  let reason: string | undefined;
  try {
    const status = JSON.parse(body) as { message?: unknown; reason?: unknown };
    if (typeof status.message === 'string') message = status.message;
    if (typeof status.reason === 'string') reason = status.reason;
  } catch {
    message = body.slice(0, 200);
  }
  return new KubeApiError(`${what}: HTTP ${statusCode ?? '?'}${message ? `: ${message}` : ''}`, statusCode, reason);
}

export interface JsonResponse {
  statusCode: number;
  body: unknown;
}

/**
 * GET returning parsed JSON for 2xx and 404 answers; other statuses throw a
 * KubeApiError. `idleMs` aborts when no byte arrives for that long (a server
 * that accepted the connection and went quiet must not hold us forever).
 */
export async function getJson(
  kc: KubeConfig,
  path: string,
  query: Query,
  signal: AbortSignal,
  idleMs: number,
): Promise<JsonResponse> {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined = setTimeout(() => controller.abort(new IdleTimeoutError(idleMs)), idleMs);
  try {
    const res = await openGet(kc, path, query, controller.signal);
    res.on('data', () => timer?.refresh());
    const text = await readBody(res);
    const statusCode = res.statusCode ?? 0;
    if (statusCode === 404 || (statusCode >= 200 && statusCode < 300)) {
      return { statusCode, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
    }
    throw statusError(statusCode, text, `GET ${path}`);
  } catch (err) {
    // Report why we aborted rather than the generic AbortError.
    if (controller.signal.aborted && controller.signal.reason instanceof Error) throw controller.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    timer = undefined;
    signal.removeEventListener('abort', onAbort);
  }
}

export class IdleTimeoutError extends Error {
  constructor(readonly idleMs: number) {
    super(`no data from the API server for ${idleMs} ms`);
  }
}
