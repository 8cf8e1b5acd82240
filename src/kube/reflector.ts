// A list-then-watch loop in the style of client-go's reflector, self-healing:
// list (from the API server's watch cache, else paged from etcd), watch from the list's resourceVersion (bookmarks keep it
// fresh), re-watch on close, relist at once on 410 Gone, capped exponential
// backoff with jitter after errors (reset by every successful list or watch),
// and a watchdog for silent watches.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { SERVER_DEFAULTS } from '../config.js';
import type { KubeConnection } from './client.js';
import { IdleTimeoutError, KubeApiError, kubeList, kubeStream, readBody, statusError } from './request.js';

/** The part of every Kubernetes object the reflector reads. */
export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string } | undefined;
}

/**
 * Where objects go. A (re)list calls listStart, upsert for every listed
 * object, then listEnd, after which whatever was not upserted since listStart
 * is gone. A list that fails half-way gets no listEnd; the next attempt calls
 * listStart again. Objects are fresh JSON: keep what you need, not them.
 */
export interface ReflectorHandlers<T> {
  listStart?(): void;
  upsert(obj: T): void;
  remove(obj: T): void;
  listEnd?(): void;
}

export type RestartReason = 'expired' | 'silence' | 'error' | 'closed-early';

export interface ReflectorEvents {
  /** The loop starts over after something other than a normal watch timeout. */
  restart(reason: RestartReason): void;
  /** The first list completed. */
  synced(): void;
  listed(info: { count: number; durationMs: number }): void;
  /** The stream moved forward: an event or a bookmark arrived. */
  progress(): void;
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /**
   * Cap while the API server cannot be reached at all (connection refused,
   * reset or silent). Such attempts cost the API server nothing, and a short
   * cap finds it again soon after it is back; maxMs applies to answers.
   * Defaults to min(maxMs, 1000).
   */
  unreachableMaxMs?: number | undefined;
}

/** The knobs every reflector user passes through; defaults come from SERVER_DEFAULTS. */
export interface ReflectorTuning {
  pageSize?: number | undefined;
  watchTimeoutSeconds?: number | undefined;
  silenceMs?: number | undefined;
  backoff?: BackoffOptions | undefined;
}

export interface ReflectorOptions<T extends KubeObject> extends ReflectorTuning {
  kc: KubeConnection;
  /** Collection path, e.g. /api/v1/serviceaccounts or /api/v1/namespaces/NS/configmaps. */
  path: string;
  fieldSelector?: string | undefined;
  labelSelector?: string | undefined;
  logger: Logger;
  handlers: ReflectorHandlers<T>;
  events?: Partial<ReflectorEvents> | undefined;
}

export interface Reflector {
  start(): void;
  /** Aborts requests and timers; resolves when the loop has ended. */
  stop(): Promise<void>;
  hasSynced(): boolean;
  /** Resolves after the first complete list; rejects if stopped before. */
  waitForSync(): Promise<void>;
}

const DEFAULT_UNREACHABLE_MAX_MS = 1000;
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 500, maxMs: 30_000, unreachableMaxMs: DEFAULT_UNREACHABLE_MAX_MS });

/** A watch that ends cleanly this fast without delivering anything is treated as a failure (as client-go does). */
const SHORT_WATCH_MS = 1000;

/** Equal jitter: between half and all of the capped exponential delay. */
export function backoffDelay(failures: number, backoff: BackoffOptions, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

interface WatchEvent {
  type?: unknown;
  object?: unknown;
}

interface StatusObject {
  kind?: unknown;
  code?: unknown;
  reason?: unknown;
  message?: unknown;
}

type WatchEnd =
  | { kind: 'closed'; events: number; durationMs: number }
  | { kind: 'expired'; message: string }
  | { kind: 'silence' }
  | { kind: 'error'; error: Error }
  | { kind: 'stopped' };

/**
 * `answered`: the API server answered with an error (an HTTP status, a watch
 * ERROR event, a body we cannot read). `unreachable`: no answer at all (a
 * refused, reset or silent connection).
 */
type FailureKind = 'unreachable' | 'answered';

/** Errors the API server sent (or garbled); anything else means it did not answer. */
class AnswerError extends Error {}

function failureKind(err: unknown): FailureKind {
  return err instanceof KubeApiError || err instanceof AnswerError || err instanceof SyntaxError ? 'answered' : 'unreachable';
}

/** 410 Gone: the resourceVersion or continue token is older than the API server's history. */
function isExpired(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 410;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export function createReflector<T extends KubeObject>(options: ReflectorOptions<T>): Reflector {
  const { kc, path, handlers, events = {} } = options;
  const pageSize = options.pageSize ?? SERVER_DEFAULTS.listPageSize;
  const watchTimeoutSeconds = options.watchTimeoutSeconds ?? SERVER_DEFAULTS.watchTimeoutSeconds;
  const silenceMs = options.silenceMs ?? SERVER_DEFAULTS.watchSilenceMs;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const unreachableBackoff: BackoffOptions = {
    initialMs: backoff.initialMs,
    maxMs: Math.min(backoff.maxMs, backoff.unreachableMaxMs ?? DEFAULT_UNREACHABLE_MAX_MS),
  };
  const log = options.logger.child({ reflector: path, ...(options.fieldSelector ? { fieldSelector: options.fieldSelector } : {}) });
  const selectors = { fieldSelector: options.fieldSelector, labelSelector: options.labelSelector };

  const stopController = new AbortController();
  let loop: Promise<void> | undefined;
  let synced = false;
  let waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  function emit<K extends keyof ReflectorEvents>(name: K, ...args: Parameters<ReflectorEvents[K]>): void {
    try {
      (events[name] as ((...a: Parameters<ReflectorEvents[K]>) => void) | undefined)?.(...args);
    } catch (err) {
      log.error({ err }, `reflector ${name} hook failed`);
    }
  }

  function safely(what: string, fn: () => void): void {
    // A throwing handler must not kill the loop (nor skip the resourceVersion).
    try {
      fn();
    } catch (err) {
      log.error({ err }, `reflector ${what} handler failed`);
    }
  }

  /**
   * Where the next list reads from. The API server's watch cache answers a list
   * with a resourceVersion (0 = any, else not older than it) in one response,
   * without touching etcd: far faster than a consistent read, which it pages.
   * After a 410 (our version is older than the cache's history) or a failed
   * cache list, the next list is a paged consistent read.
   */
  let fromCache = true;

  /** Lists every page; returns the snapshot's resourceVersion. */
  async function list(lastVersion: string | undefined): Promise<string> {
    const started = Date.now();
    const cached = fromCache;
    let count = 0;
    let token: string | undefined;
    let resourceVersion = '';
    if (handlers.listStart) safely('listStart', () => handlers.listStart?.());
    do {
      // A continue token carries its snapshot; resourceVersion must not go with it.
      const query = token !== undefined
        ? { ...selectors, limit: pageSize, continue: token }
        : cached
          ? { ...selectors, resourceVersion: lastVersion ?? '0' }
          : { ...selectors, limit: pageSize };
      let page: { metadata?: { resourceVersion?: string; continue?: string } };
      try {
        // Items are handled as they arrive: a list of 100,000 is never held whole.
        page = await kubeList(kc, { path, query, signal: stopController.signal, idleMs: silenceMs }, (item) => {
          safely('upsert', () => handlers.upsert(item as T));
          count++;
        });
      } catch (err) {
        if (cached && token === undefined && !stopController.signal.aborted) fromCache = false;
        throw err;
      }
      resourceVersion = page.metadata?.resourceVersion ?? '';
      token = page.metadata?.continue || undefined;
    } while (token !== undefined && !stopController.signal.aborted);
    stopController.signal.throwIfAborted();
    if (handlers.listEnd) safely('listEnd', () => handlers.listEnd?.());
    // Back to the cache for the next relist once a list worked.
    fromCache = true;
    const durationMs = Date.now() - started;
    log.info({ count, durationMs, resourceVersion, from: cached ? 'watch cache' : 'etcd' }, 'listed');
    emit('listed', { count, durationMs });
    return resourceVersion;
  }

  /** One watch request, from `from` until it ends; `onVersion` follows the stream. */
  function watch(from: string, onVersion: (rv: string) => void): Promise<WatchEnd> {
    const controller = new AbortController();
    const started = Date.now();
    let count = 0;
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      let res: IncomingMessage | undefined;
      const finish = (end: WatchEnd): void => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        stopController.signal.removeEventListener('abort', onStop);
        controller.abort();
        res?.destroy();
        resolve(end);
      };
      const onStop = (): void => finish({ kind: 'stopped' });
      stopController.signal.addEventListener('abort', onStop, { once: true });
      // Armed from the start: a server that never answers is as silent as one that stops talking.
      const watchdog = setTimeout(() => finish({ kind: 'silence' }), silenceMs);

      const handleLine = (line: string): void => {
        let event: WatchEvent;
        try {
          event = JSON.parse(line) as WatchEvent;
        } catch {
          // Skipping a line could skip an event; start over from the last version instead.
          finish({ kind: 'error', error: new AnswerError(`unparseable watch line: ${line.slice(0, 100)}`) });
          return;
        }
        watchdog.refresh();
        count++;
        const obj = event.object as T | undefined;
        switch (event.type) {
          case 'ADDED':
          case 'MODIFIED':
            if (obj) safely('upsert', () => handlers.upsert(obj));
            break;
          case 'DELETED':
            if (obj) safely('remove', () => handlers.remove(obj));
            break;
          case 'BOOKMARK':
            break;
          case 'ERROR': {
            const status = (event.object ?? {}) as StatusObject;
            const message = typeof status.message === 'string' ? status.message : 'watch error';
            if (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone') {
              finish({ kind: 'expired', message });
            } else {
              finish({ kind: 'error', error: new KubeApiError(`watch ${path}: ${message}`, typeof status.code === 'number' ? status.code : undefined) });
            }
            return;
          }
          default:
            finish({ kind: 'error', error: new AnswerError(`unknown watch event type ${String(event.type)}`) });
            return;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (rv) {
          onVersion(rv);
          emit('progress');
        }
      };

      kubeStream(kc, {
        path,
        query: { ...selectors, watch: 'true', resourceVersion: from, allowWatchBookmarks: 'true', timeoutSeconds: watchTimeoutSeconds },
        signal: controller.signal,
      }).then(
        async (response) => {
          res = response;
          if (settled) {
            response.destroy();
            return;
          }
          if (response.statusCode !== 200) {
            try {
              const text = await readBody(response);
              const err = statusError(response.statusCode, text, `watch ${path}`);
              finish(response.statusCode === 410 ? { kind: 'expired', message: err.message } : { kind: 'error', error: err });
            } catch (err) {
              finish({ kind: 'error', error: err as Error });
            }
            return;
          }
          response.setEncoding('utf8');
          let buffer = '';
          response.on('data', (chunk: string) => {
            buffer += chunk;
            let start = 0;
            let newline: number;
            while (!settled && (newline = buffer.indexOf('\n', start)) !== -1) {
              const line = buffer.slice(start, newline).trim();
              start = newline + 1;
              if (line !== '') handleLine(line);
            }
            buffer = buffer.slice(start);
          });
          response.on('end', () => {
            if (buffer.trim() !== '' && !settled) handleLine(buffer.trim());
            finish({ kind: 'closed', events: count, durationMs: Date.now() - started });
          });
          response.on('error', (err) => finish({ kind: 'error', error: err }));
          response.on('close', () => {
            if (!response.complete) finish({ kind: 'error', error: new Error('watch connection broke') });
          });
        },
        (err: unknown) => finish(stopController.signal.aborted ? { kind: 'stopped' } : { kind: 'error', error: err as Error }),
      );
    });
  }

  async function run(): Promise<void> {
    const signal = stopController.signal;
    let resourceVersion: string | undefined;
    /** The newest version seen; a relist asks the cache for a state not older than it. */
    let lastSeen: string | undefined;
    // Counted apart: after a long outage the first answers (429 while the
    // API server warms up, 410 for our old version) start from the first delay.
    const failures: Record<FailureKind, number> = { unreachable: 0, answered: 0 };
    /** Set by a 410 that relisted at once; a second 410 before the watch moves on backs off (no list storm). */
    let relistedOnExpiry = false;
    const succeeded = (): void => {
      failures.unreachable = 0;
      failures.answered = 0;
    };
    const fail = async (reason: RestartReason, kind: FailureKind, detail: Record<string, unknown>, message: string): Promise<void> => {
      const count = ++failures[kind];
      const delayMs = backoffDelay(count, kind === 'unreachable' ? unreachableBackoff : backoff);
      (reason === 'expired' ? log.info : log.warn).call(log, { ...detail, reason, failures: count, delayMs }, message);
      emit('restart', reason);
      await sleep(delayMs, signal);
    };
    const expired = async (detail: Record<string, unknown>, message: string): Promise<void> => {
      if (relistedOnExpiry) return fail('expired', 'answered', detail, message);
      // The version is gone and waiting will not bring it back: relist now.
      relistedOnExpiry = true;
      log.info({ ...detail, reason: 'expired' }, message);
      emit('restart', 'expired');
    };

    while (!signal.aborted) {
      if (resourceVersion === undefined) {
        try {
          resourceVersion = await list(lastSeen);
          lastSeen = resourceVersion || lastSeen;
          succeeded();
          if (!synced) {
            synced = true;
            emit('synced');
            for (const w of waiters) w.resolve();
            waiters = [];
          }
        } catch (err) {
          if (signal.aborted) break;
          // An expired continue token means starting the list over; anything else is retried the same way.
          if (isExpired(err)) {
            fromCache = false;
            await expired({ err }, 'list expired; relisting');
          }
          else await fail(err instanceof IdleTimeoutError ? 'silence' : 'error', failureKind(err), { err }, 'list failed');
          continue;
        }
      }

      const end = await watch(resourceVersion, (rv) => {
        resourceVersion = rv;
        lastSeen = rv;
        // Something arrived: the connection works, so the next problem starts from the first delay.
        succeeded();
        relistedOnExpiry = false;
      });
      switch (end.kind) {
        case 'stopped':
          break;
        case 'closed':
          if (end.events === 0 && end.durationMs < SHORT_WATCH_MS) {
            await fail('closed-early', 'answered', { durationMs: end.durationMs }, 'watch closed at once; retrying');
          } else {
            succeeded();
            relistedOnExpiry = false;
            log.debug({ events: end.events, durationMs: end.durationMs }, 'watch ended; re-watching');
          }
          break;
        case 'expired':
          resourceVersion = undefined;
          await expired({ message: end.message }, 'watch resourceVersion expired; relisting');
          break;
        case 'silence':
          await fail('silence', 'unreachable', { silenceMs }, 'watch silent; restarting it');
          break;
        case 'error':
          await fail('error', failureKind(end.error), { err: end.error }, 'watch failed; retrying');
          break;
      }
    }
  }

  return {
    start(): void {
      if (loop || stopController.signal.aborted) return;
      loop = run().catch((err: unknown) => log.error({ err }, 'reflector loop failed'));
    },
    async stop(): Promise<void> {
      stopController.abort();
      for (const w of waiters) w.reject(new Error(`reflector for ${path} stopped before it synced`));
      waiters = [];
      await loop;
    },
    hasSynced: () => synced,
    waitForSync(): Promise<void> {
      if (synced) return Promise.resolve();
      if (stopController.signal.aborted) return Promise.reject(new Error(`reflector for ${path} stopped before it synced`));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
  };
}
