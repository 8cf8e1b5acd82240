// The one way this program talks to the API server: a raw HTTP request with
// the connection's credentials. Every request can be aborted at any stage
// (before the response headers too), bodies stay plain JSON that is dropped
// once handled, and failures are a KubeApiError with the Status's reason.
//
//   const { body } = await kubeRequest(conn, { path: '/api/v1/namespaces/x/secrets/y' });
//   await kubeRequest(conn, { method: 'PATCH', path, body: ops, contentType: PATCH.json });
//   const res = await kubeStream(conn, { path, query: { watch: 'true' }, signal });
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import type { KubeConnection } from './client.js';

// Not `import http from 'node:http'`: on Node 22 and later that builds the
// module's ES facade, whose WebSocket export loads Node's bundled undici
// (~70 ms of CPU at every start, for nothing this program uses).
const http = process.getBuiltinModule('node:http');

/** An HTTP status the API server answered with, plus its Status reason and message when it sent them. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    /** The HTTP status (or the code of a watch ERROR event); undefined when unknown. */
    readonly status: number | undefined,
    /** The Status reason: NotFound, AlreadyExists, Conflict, Expired, Forbidden ... */
    readonly reason?: string,
    /** The start of the answer's body, for messages when it was not a Status. */
    readonly body?: string,
  ) {
    super(message);
  }
}

/** No byte arrived from the API server for idleMs. */
export class IdleTimeoutError extends Error {
  constructor(readonly idleMs: number) {
    super(`no data from the API server for ${idleMs} ms`);
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

/** Content types of the three PATCH flavours. */
export const PATCH = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
} as const;

export interface KubeRequest {
  /** GET unless given. */
  method?: string | undefined;
  /** Appended to the server URL (which may carry a path prefix), e.g. /api/v1/namespaces. */
  path: string;
  query?: Query | undefined;
  /** Sent as JSON (a string is sent as it is). */
  body?: unknown;
  /** Content type of the body; application/json unless given (see PATCH). */
  contentType?: string | undefined;
  accept?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Abort when no byte arrives for this long (kubeRequest only). */
  idleMs?: number | undefined;
}

export interface KubeResponse {
  status: number;
  /** Parsed JSON; the text itself when it is not JSON; undefined when empty. */
  body: unknown;
}

/** Bodies are read whole; larger than V8's longest string could not be parsed anyway. */
const MAX_BODY_BYTES = 512 * 1024 * 1024;

function url(conn: KubeConnection, path: string, query: Query | undefined): URL {
  const u = new URL(conn.server + path);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined) u.searchParams.set(key, String(value));
  }
  return u;
}

/**
 * Sends a request and resolves with the response once its headers arrive,
 * whatever its status. The caller owns the response and must consume or
 * destroy it (for watches: read it as a stream). Aborting `signal` destroys
 * the request at any stage.
 */
export async function kubeStream(conn: KubeConnection, r: KubeRequest): Promise<IncomingMessage> {
  const target = url(conn, r.path, r.query);
  // Per request: token files and exec credentials may rotate.
  const { headers, tls } = await conn.credentials();
  r.signal?.throwIfAborted();
  let payload: Buffer | undefined;
  if (r.body !== undefined) {
    payload = Buffer.from(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
    headers['Content-Type'] = r.contentType ?? 'application/json';
    headers['Content-Length'] = String(payload.length);
  }
  if (r.accept) headers['Accept'] = r.accept;
  const transport = target.protocol === 'https:' ? https : http;
  const options: https.RequestOptions = { method: r.method ?? 'GET', headers, agent: conn.agent, ...(target.protocol === 'https:' ? tls : {}) };
  if (r.signal) options.signal = r.signal;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = transport.request(target, options, resolve);
    req.on('error', reject);
    req.end(payload);
  });
  if (res.statusCode === 401) conn.unauthorized();
  return res;
}

/** Reads a whole body; rejects when the connection breaks first or it exceeds MAX_BODY_BYTES. */
export function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        res.destroy();
        reject(new Error(`the API server's answer exceeds ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => {
      const text = Buffer.concat(chunks, size).toString('utf8');
      chunks.length = 0;
      resolve(text);
    });
    res.on('error', reject);
    res.on('close', () => {
      if (!res.complete) reject(new Error('connection closed before the response was complete'));
    });
  });
}

/** The error for a non-2xx answer, from its (Status) body. */
export function statusError(status: number | undefined, body: string, what: string): KubeApiError {
  let message = '';
  let reason: string | undefined;
  try {
    const parsed = JSON.parse(body) as { message?: unknown; reason?: unknown };
    if (typeof parsed.message === 'string') message = parsed.message;
    if (typeof parsed.reason === 'string') reason = parsed.reason;
  } catch {
    message = body.trim().slice(0, 200);
  }
  return new KubeApiError(`${what}: HTTP ${status ?? '?'}${message ? `: ${message}` : ''}`, status, reason, body.slice(0, 1000));
}

/**
 * One request, its whole answer parsed. 2xx resolves; any other status throws a
 * KubeApiError (`err.status === 404` for a missing object). With `idleMs` a
 * server that accepted the connection and went quiet fails with IdleTimeoutError.
 */
export async function kubeRequest(conn: KubeConnection, r: KubeRequest): Promise<KubeResponse> {
  return abortable(r, async (signal, touch) => {
    const res = await kubeStream(conn, { ...r, signal });
    res.on('data', touch);
    const text = await readBody(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw statusError(status, text, `${r.method ?? 'GET'} ${r.path}`);
    if (text === '') return { status, body: undefined };
    try {
      return { status, body: JSON.parse(text) as unknown };
    } catch {
      return { status, body: text };
    }
  });
}

/**
 * Runs one request under its own AbortSignal: aborted with the caller's
 * r.signal, and with an IdleTimeoutError when `touch` (called on every chunk)
 * has not been called for r.idleMs. A failure after an abort is reported as
 * the abort's reason rather than the generic AbortError.
 */
async function abortable<T>(r: KubeRequest, run: (signal: AbortSignal, touch: () => void) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const outer = r.signal;
  const onAbort = (): void => controller.abort(outer?.reason);
  if (outer?.aborted) onAbort();
  else outer?.addEventListener('abort', onAbort, { once: true });
  const idleMs = r.idleMs;
  let timer: NodeJS.Timeout | undefined = idleMs === undefined ? undefined : setTimeout(() => controller.abort(new IdleTimeoutError(idleMs)), idleMs);
  try {
    return await run(controller.signal, () => timer?.refresh());
  } catch (err) {
    if (controller.signal.aborted && controller.signal.reason instanceof Error) throw controller.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    timer = undefined;
    outer?.removeEventListener('abort', onAbort);
  }
}

/** An object in a list answer larger than this is refused (etcd holds objects of at most ~1.5 MiB). */
const MAX_ITEM_CHARS = 16 * 1024 * 1024;
/** The list's envelope (kind, apiVersion, metadata) without its items. */
const MAX_ENVELOPE_CHARS = 1024 * 1024;

/**
 * Splits the text of a Kubernetes list (`{"kind":..,"metadata":{..},"items":[{..},{..}]}`)
 * into its items as the text arrives, so that a list of 100,000 objects is never
 * held whole: each item goes to JSON.parse on its own and then to `onItem`.
 * This only finds where items begin and end (brackets outside strings); JSON.parse
 * judges the rest, and end() parses the envelope left over with `"items":[]`.
 */
export function listSplitter(onItem: (item: unknown) => void): { write(chunk: string): void; end(): unknown } {
  let text = '';
  /** Where scanning goes on in `text`. */
  let pos = 0;
  let depth = 0;
  let inString = false;
  let stringStart = -1;
  /** The last key of the list object itself (depth 1). */
  let lastKey = '';
  let inItems = false;
  let itemStart = -1;
  /** Start of the text not yet copied into `envelope` (outside the items). */
  let envStart = 0;
  let envelope = '';
  const quoteOrBackslash = /["\\]/g;
  return {
    write(chunk) {
      text += chunk;
      let i = pos;
      while (i < text.length) {
        if (inString) {
          quoteOrBackslash.lastIndex = i;
          const m = quoteOrBackslash.exec(text);
          if (!m) {
            i = text.length;
            break;
          }
          if (m[0] === '\\') {
            // The escaped character may only arrive with the next chunk.
            if (m.index + 1 >= text.length) {
              i = m.index;
              break;
            }
            i = m.index + 2;
            continue;
          }
          inString = false;
          if (depth === 1) lastKey = text.slice(stringStart + 1, m.index);
          stringStart = -1;
          i = m.index + 1;
          continue;
        }
        const c = text.charCodeAt(i);
        if (c === 0x22) {
          inString = true;
          stringStart = i;
        } else if (c === 0x7b || c === 0x5b) {
          depth++;
          if (c === 0x5b && depth === 2 && lastKey === 'items' && !inItems) {
            inItems = true;
            envelope += text.slice(envStart, i + 1);
          } else if (inItems && depth === 3 && c === 0x7b) {
            itemStart = i;
          }
        } else if (c === 0x7d || c === 0x5d) {
          if (inItems && depth === 3 && itemStart >= 0) {
            onItem(JSON.parse(text.slice(itemStart, i + 1)));
            itemStart = -1;
          } else if (inItems && depth === 2) {
            inItems = false;
            envStart = i;
          }
          depth--;
          if (depth < 0) throw new Error('not a list');
        }
        i++;
      }
      pos = i;
      if (!inItems) {
        envelope += text.slice(envStart, pos);
        envStart = pos;
        if (envelope.length > MAX_ENVELOPE_CHARS) throw new Error(`a list envelope exceeds ${MAX_ENVELOPE_CHARS} characters`);
      }
      if (itemStart >= 0 && pos - itemStart > MAX_ITEM_CHARS) throw new Error(`a list item exceeds ${MAX_ITEM_CHARS} characters`);
      // Drop what is no longer needed: keep the item being read, or the key being read.
      let cut = pos;
      if (itemStart >= 0) cut = Math.min(cut, itemStart);
      if (stringStart >= 0) cut = Math.min(cut, stringStart);
      text = text.slice(cut);
      pos -= cut;
      if (itemStart >= 0) itemStart -= cut;
      if (stringStart >= 0) stringStart -= cut;
      envStart = Math.max(0, envStart - cut);
    },
    end() {
      if (depth !== 0 || inString || text.length !== pos) throw new Error('the list ended early');
      return JSON.parse(envelope) as unknown;
    },
  };
}

/**
 * GET of a list, its items handed to `onItem` one by one as they arrive (see
 * listSplitter); resolves with the list without its items (metadata:
 * resourceVersion, continue). Errors and `idleMs` as kubeRequest.
 */
export async function kubeList(conn: KubeConnection, r: KubeRequest, onItem: (item: unknown) => void): Promise<{ metadata?: { resourceVersion?: string; continue?: string } }> {
  return abortable(r, async (signal, touch) => {
    try {
      const res = await kubeStream(conn, { ...r, signal });
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        res.on('data', touch);
        throw statusError(status, await readBody(res), `${r.method ?? 'GET'} ${r.path}`);
      }
      const splitter = listSplitter(onItem);
      res.setEncoding('utf8');
      await new Promise<void>((resolve, reject) => {
        res.on('data', (chunk: string) => {
          touch();
          try {
            splitter.write(chunk);
          } catch (err) {
            res.destroy();
            reject(err instanceof SyntaxError ? err : new SyntaxError((err as Error).message));
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('connection closed before the response was complete'));
        });
      });
      const envelope = splitter.end();
      if (envelope === null || typeof envelope !== 'object') throw new SyntaxError(`GET ${r.path}: not a list`);
      return envelope;
    } catch (err) {
      if (!signal.aborted && err instanceof Error && !(err instanceof KubeApiError) && /ended early|not a list|exceeds/.test(err.message)) throw new SyntaxError(err.message);
      throw err;
    }
  });
}
