// Every ServiceAccount of the cluster, reduced to its parsed annotations and
// kept current by a reflector. ServiceAccounts without annotations of ours
// share NO_SETTINGS, so a cluster of 100,000 costs a map of keys and little
// else. A pod can arrive before the watch has delivered its brand-new
// ServiceAccount; lookup() then races the watch against a direct GET.
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { SERVER_DEFAULTS } from '../config.js';
import { type ReflectorEvents, type ReflectorTuning, type ReflectorHandlers, createReflector } from '../kube/reflector.js';
import type { KubeConnection } from '../kube/client.js';
import { KubeApiError, kubeRequest } from '../kube/request.js';
import { NO_SETTINGS, type ServiceAccountSettings, parseServiceAccountAnnotations } from '../settings/service-account.js';
import type { RoleArnComposition } from '../settings/role-arn.js';

/** The fields of a ServiceAccount read here; the rest of the JSON is dropped with the event. */
export interface ServiceAccountObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string> | null;
  };
}

/** `fromWatch` is false for settings stored by set() (a direct GET). */
type Listener = (settings: ServiceAccountSettings | undefined, fromWatch: boolean) => void;

export interface ServiceAccountStore {
  /** Feed for a reflector on /api/v1/serviceaccounts. */
  handlers: ReflectorHandlers<ServiceAccountObject>;
  get(namespace: string, name: string): ServiceAccountSettings | undefined;
  /** Stores settings read outside the watch (a direct GET). */
  set(namespace: string, name: string, settings: ServiceAccountSettings): void;
  size(): number;
  /** ServiceAccounts with annotations of ours, for the debug handler. */
  annotated(): Array<[string, ServiceAccountSettings]>;
  /** Calls `listener` on every upsert (settings) or removal (undefined) of the key until the returned function is called. */
  listen(namespace: string, name: string, listener: Listener): () => void;
}

const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;

/**
 * Settings by namespace, then by name. Two levels rather than one map keyed
 * "namespace/name": each entry keeps the name string it came with instead of a
 * joined key of its own, about 56 bytes less per ServiceAccount (5.6 MB for 100,000).
 */
function namespacedMap<V>() {
  const byNamespace = new Map<string, Map<string, V>>();
  let size = 0;
  return {
    get: (namespace: string, name: string): V | undefined => byNamespace.get(namespace)?.get(name),
    set(namespace: string, name: string, value: V): void {
      let names = byNamespace.get(namespace);
      if (!names) byNamespace.set(namespace, (names = new Map<string, V>()));
      if (!names.has(name)) size++;
      names.set(name, value);
    },
    delete(namespace: string, name: string): boolean {
      const names = byNamespace.get(namespace);
      if (!names?.delete(name)) return false;
      size--;
      if (names.size === 0) byNamespace.delete(namespace);
      return true;
    },
    size: (): number => size,
    *entries(): Generator<[namespace: string, name: string, value: V]> {
      for (const [namespace, names] of byNamespace) for (const [name, value] of names) yield [namespace, name, value];
    },
  };
}

export function createServiceAccountStore(annotationPrefix: string, composition?: RoleArnComposition): ServiceAccountStore {
  const entries = namespacedMap<ServiceAccountSettings>();
  const listeners = new Map<string, Set<Listener>>();
  /** Keys upserted since the running relist began; undefined outside a relist. */
  let seen: Set<string> | undefined;

  const notify = (key: string, settings: ServiceAccountSettings | undefined, fromWatch = true): void => {
    const set = listeners.get(key);
    if (set) for (const listener of [...set]) listener(settings, fromWatch);
  };
  const put = (namespace: string, name: string, settings: ServiceAccountSettings, fromWatch: boolean): void => {
    entries.set(namespace, name, settings);
    // Only the list itself vouches for a key during a relist: a GET that raced a
    // deletion must not keep the key alive past listEnd.
    if (fromWatch) seen?.add(keyOf(namespace, name));
    if (listeners.size > 0) notify(keyOf(namespace, name), settings, fromWatch);
  };
  const remove = (namespace: string, name: string): void => {
    if (entries.delete(namespace, name) && listeners.size > 0) notify(keyOf(namespace, name), undefined);
  };

  const store: ServiceAccountStore = {
    handlers: {
      listStart() {
        seen = new Set();
      },
      upsert(sa) {
        const { namespace, name } = sa.metadata ?? {};
        if (namespace && name) put(namespace, name, parseServiceAccountAnnotations(sa.metadata?.annotations, annotationPrefix, composition), true);
      },
      remove(sa) {
        const { namespace, name } = sa.metadata ?? {};
        if (namespace && name) remove(namespace, name);
      },
      listEnd() {
        const listed = seen;
        seen = undefined;
        if (!listed) return;
        // Only the keys that went are collected (a relist of 100,000 usually removes few).
        const gone: Array<[string, string]> = [];
        for (const [namespace, name] of entries.entries()) if (!listed.has(keyOf(namespace, name))) gone.push([namespace, name]);
        for (const [namespace, name] of gone) remove(namespace, name);
      },
    },
    get: (namespace, name) => entries.get(namespace, name),
    set: (namespace, name, settings) => put(namespace, name, settings, false),
    size: () => entries.size(),
    annotated: () => [...entries.entries()].filter(([, , settings]) => settings !== NO_SETTINGS).map(([namespace, name, settings]) => [keyOf(namespace, name), settings]),
    listen(namespace, name, listener) {
      const key = keyOf(namespace, name);
      let set = listeners.get(key);
      if (!set) listeners.set(key, (set = new Set()));
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(key) === set) listeners.delete(key);
      };
    },
  };
  return store;
}

export type LookupOutcome = 'cache' | 'watch' | 'api' | 'not-found' | 'timeout' | 'error';

export interface LookupResult {
  /** Undefined when the ServiceAccount was not found (in time). */
  settings: ServiceAccountSettings | undefined;
  outcome: LookupOutcome;
}

export interface ServiceAccountCacheOptions extends ReflectorTuning {
  kc: KubeConnection;
  annotationPrefix: string;
  /** --compose-role-arn. */
  roleArnComposition?: RoleArnComposition | undefined;
  logger: Logger;
  /** How long a cache miss may wait for the watch or the API. */
  gracePeriodMs?: number | undefined;
  /** Direct GETs running at once; the rest queue. */
  lookupConcurrency?: number | undefined;
  events?: Partial<ReflectorEvents> | undefined;
  /** Starts a lookup's grace-period timer and returns its cancel; tests pass one they fire themselves. */
  startGraceTimer?: ((expire: () => void, ms: number) => () => void) | undefined;
}

const startTimer = (expire: () => void, ms: number): (() => void) => {
  const timer = setTimeout(expire, ms);
  return () => clearTimeout(timer);
};

export interface ServiceAccountCache {
  start(): void;
  /** Stops the reflector, aborts GETs and settles pending lookups (as 'error'). */
  stop(): Promise<void>;
  hasSynced(): boolean;
  waitForSync(): Promise<void>;
  /** The hot path: synchronous, no Promise. */
  get(namespace: string, name: string): ServiceAccountSettings | undefined;
  size(): number;
  annotated(): Array<[string, ServiceAccountSettings]>;
  /** get(), or on a miss the first of the watch and a direct GET, within the grace period. */
  lookup(namespace: string, name: string): Promise<LookupResult>;
}

type FetchResult =
  | { kind: 'found'; settings: ServiceAccountSettings }
  | { kind: 'not-found' }
  | { kind: 'error'; error: unknown };

interface Fetch {
  promise: Promise<FetchResult>;
  /** Lookups still waiting on it; none left means a queued GET is not worth sending. */
  waiting: number;
}

export function createServiceAccountCache(options: ServiceAccountCacheOptions): ServiceAccountCache {
  const { kc, annotationPrefix } = options;
  const log = options.logger.child({ component: 'service-account-cache' });
  const gracePeriodMs = options.gracePeriodMs ?? SERVER_DEFAULTS.serviceAccountLookupGracePeriodMs;
  const concurrency = Math.max(1, options.lookupConcurrency ?? SERVER_DEFAULTS.lookupConcurrency);
  const startGraceTimer = options.startGraceTimer ?? startTimer;
  const store = createServiceAccountStore(annotationPrefix, options.roleArnComposition);
  const reflector = createReflector<ServiceAccountObject>({
    kc,
    path: '/api/v1/serviceaccounts',
    pageSize: options.pageSize,
    watchTimeoutSeconds: options.watchTimeoutSeconds,
    silenceMs: options.silenceMs,
    backoff: options.backoff,
    logger: options.logger,
    handlers: store.handlers,
    events: options.events,
  });

  const stopController = new AbortController();
  // Every running GET listens on it; lookupConcurrency may exceed the default warning threshold.
  setMaxListeners(0, stopController.signal);
  const inflight = new Map<string, Fetch>();
  const pending = new Set<(result: LookupResult) => void>();
  let active = 0;
  const queue: (() => void)[] = [];

  const acquire = (): Promise<void> => {
    if (active < concurrency) {
      active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => queue.push(resolve));
  };
  // Hands the slot straight to the next in line, so `active` never overshoots.
  const release = (): void => {
    const next = queue.shift();
    if (next) next();
    else active--;
  };

  async function get(namespace: string, name: string, fetch: Fetch): Promise<FetchResult> {
    await acquire();
    try {
      if (stopController.signal.aborted) return { kind: 'error', error: new Error('stopped') };
      // While queued, the watch may have delivered it, or every lookup may have given up.
      const cached = store.get(namespace, name);
      if (cached) return { kind: 'found', settings: cached };
      if (fetch.waiting === 0) return { kind: 'error', error: new Error('abandoned') };

      let touched = false;
      const unlisten = store.listen(namespace, name, (_settings, fromWatch) => (touched ||= fromWatch));
      try {
        const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(name)}`;
        // Nobody waits longer than the grace period, so neither does the GET (it would hold a slot).
        let sa: ServiceAccountObject;
        try {
          sa = (await kubeRequest(kc, { path, signal: stopController.signal, idleMs: gracePeriodMs })).body as ServiceAccountObject;
        } catch (err) {
          if (err instanceof KubeApiError && err.status === 404) return { kind: 'not-found' };
          throw err;
        }
        const settings = parseServiceAccountAnnotations(sa.metadata?.annotations, annotationPrefix, options.roleArnComposition);
        // The watch is the authority: if it upserted or deleted the key meanwhile, our copy may be older.
        if (!touched && !store.get(namespace, name)) store.set(namespace, name, settings);
        return { kind: 'found', settings };
      } finally {
        unlisten();
      }
    } catch (error) {
      return { kind: 'error', error };
    } finally {
      release();
    }
  }

  /** One GET per key at a time: concurrent misses of the same key share it. */
  function fetchOnce(namespace: string, name: string): Fetch {
    const key = keyOf(namespace, name);
    const existing = inflight.get(key);
    if (existing) return existing;
    const fetch: Fetch = { promise: undefined as unknown as Promise<FetchResult>, waiting: 0 };
    fetch.promise = get(namespace, name, fetch).finally(() => inflight.delete(key));
    inflight.set(key, fetch);
    return fetch;
  }

  function lookup(namespace: string, name: string): Promise<LookupResult> {
    const hit = store.get(namespace, name);
    if (hit) return Promise.resolve({ settings: hit, outcome: 'cache' });
    if (stopController.signal.aborted) return Promise.resolve({ settings: undefined, outcome: 'error' });
    return new Promise<LookupResult>((resolve) => {
      let apiFailed = false;
      let done = false;
      const fetch = fetchOnce(namespace, name);
      fetch.waiting++;
      const finish = (result: LookupResult): void => {
        if (done) return;
        done = true;
        fetch.waiting--;
        cancelTimer();
        unlisten();
        pending.delete(finish);
        resolve(result);
      };
      pending.add(finish);
      const cancelTimer = startGraceTimer(() => finish({ settings: undefined, outcome: apiFailed ? 'error' : 'timeout' }), gracePeriodMs);
      // Settings stored by a GET reach this lookup through fetch.promise, as 'api'.
      const unlisten = store.listen(namespace, name, (settings, fromWatch) => {
        if (settings && fromWatch) finish({ settings, outcome: 'watch' });
      });
      void fetch.promise.then((result) => {
        if (result.kind === 'found') finish({ settings: result.settings, outcome: 'api' });
        else if (result.kind === 'not-found') finish({ settings: undefined, outcome: 'not-found' });
        else if (!done) {
          // The watch may still deliver before the grace period ends.
          apiFailed = true;
          log.warn({ err: result.error, namespace, name }, 'ServiceAccount GET failed');
        }
      });
    });
  }

  return {
    start: () => reflector.start(),
    async stop() {
      stopController.abort();
      for (const finish of [...pending]) finish({ settings: undefined, outcome: 'error' });
      // Queued GETs take their slot, see the abort and give it back.
      for (const next of queue.splice(0)) {
        active++;
        next();
      }
      await Promise.all([reflector.stop(), ...[...inflight.values()].map((f) => f.promise)]);
    },
    hasSynced: () => reflector.hasSynced(),
    waitForSync: () => reflector.waitForSync(),
    get: (namespace, name) => store.get(namespace, name),
    size: () => store.size(),
    annotated: () => store.annotated(),
    lookup,
  };
}
