// An in-process stand-in for the Kubernetes API server, just big enough for
// the reflector: ServiceAccounts and ConfigMaps in memory, paged lists, watch
// streams with bookmarks, single GETs, and knobs to break it in the ways a
// real API server breaks (cut watches, 410 Gone, outages, silent watches,
// slow GETs). Plain http; the kubeconfig it writes skips TLS verification.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type WaitOptions, waitUntil } from './wait.js';

export type Resource = 'serviceaccounts' | 'configmaps';

export interface FakeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    uid?: string;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  data?: Record<string, string>;
  [key: string]: unknown;
}

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  type: EventType;
  resource: Resource;
  obj: FakeObject;
}

interface Selection {
  resource: Resource;
  namespace: string | undefined;
  name: string | undefined;
}

interface Watcher extends Selection {
  res: ServerResponse;
  muted: boolean;
  timeout?: NodeJS.Timeout | undefined;
  bookmark?: NodeJS.Timeout | undefined;
}

export interface FakeStats {
  /** List requests without a continue token. */
  lists: number;
  /** All list requests, continued pages included. */
  listPages: number;
  /** Lists with a resourceVersion (served whole, as the API server's watch cache does). */
  cacheLists: number;
  watches: number;
  /** Single-object GETs per "resource/namespace/name". */
  gets: Map<string, number>;
  getsInFlight: number;
  maxGetsInFlight: number;
  bookmarks: number;
}

/** refuse: nothing listens; reset: connections are dropped; 503: answers 503; hang: requests are never answered. */
export type DownMode = 'refuse' | 'reset' | '503' | 'hang';

export interface FakeApiServer {
  readonly url: string;
  readonly port: number;
  readonly token: string;
  /** A kubeconfig file pointing at this server (removed by close()). */
  readonly kubeconfigPath: string;
  readonly stats: FakeStats;
  /** Creates or replaces an object (ADDED or MODIFIED to watchers). */
  put(resource: Resource, obj: FakeObject): FakeObject;
  remove(resource: Resource, namespace: string, name: string): boolean;
  serviceAccount(namespace: string, name: string, annotations?: Record<string, string>): FakeObject;
  configMap(namespace: string, name: string, data: Record<string, string>): FakeObject;
  has(resource: Resource, namespace: string, name: string): boolean;
  resourceVersion(): number;
  getCount(resource: Resource, namespace: string, name: string): number;
  activeWatches(): number;
  /** Destroys every open watch connection. */
  cutWatches(): void;
  /** Forgets history: watches and continue tokens from before now get 410 Gone. */
  compact(): void;
  /** The next watch request gets 410 Gone, as an ERROR event (as real API servers do) or as the HTTP status. */
  expireNextWatch(how?: 'event' | 'http'): void;
  /** The next continued list request gets 410 Gone (continue token expired). */
  expireNextContinue(): void;
  /** Lists with a resourceVersion (from the watch cache) answer 500 while on. */
  failCacheLists(on: boolean): void;
  /** Outage (see DownMode); open watches are cut. up() drops requests left hanging. */
  down(mode?: DownMode): Promise<void>;
  up(): Promise<void>;
  /** Open watches, and new ones while on, stay connected and send nothing at all. */
  silenceWatches(on: boolean): void;
  /** Single-object GETs answer after this long. */
  setGetDelay(ms: number): void;
  /** GETs of objects whose name matches are held (not answered) until the returned release() is called. */
  holdGets(match: (name: string) => boolean): () => void;
  close(): Promise<void>;
}

export interface FakeApiServerOptions {
  /** How often watches that asked for bookmarks get one; 0 for never. */
  bookmarkIntervalMs?: number;
  token?: string;
}

const KINDS: Record<Resource, string> = { serviceaccounts: 'ServiceAccount', configmaps: 'ConfigMap' };
const PATH = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?(serviceaccounts|configmaps)(?:\/([^/]+))?$/;

const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function send(res: ServerResponse, code: number, body: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startFakeApiServer(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const bookmarkIntervalMs = options.bookmarkIntervalMs ?? 0;
  const token = options.token ?? 'fake-token';
  const store: Record<Resource, Map<string, FakeObject>> = { serviceaccounts: new Map(), configmaps: new Map() };
  const history: HistoryEvent[] = [];
  let rv = 1;
  let compactedRv = 0;
  let uid = 0;
  let expireWatch: 'event' | 'http' | undefined;
  let expireContinue = false;
  let cacheListsFail = false;
  let downMode: DownMode | undefined;
  let silent = false;
  let getDelayMs = 0;
  const holds = new Set<{ match: (name: string) => boolean; waiting: Set<() => void> }>();
  const watchers = new Set<Watcher>();
  const hanging = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  const stats: FakeStats = { lists: 0, listPages: 0, cacheLists: 0, watches: 0, gets: new Map(), getsInFlight: 0, maxGetsInFlight: 0, bookmarks: 0 };

  const matches = (sel: Selection, resource: Resource, obj: FakeObject): boolean =>
    sel.resource === resource &&
    (sel.namespace === undefined || sel.namespace === obj.metadata.namespace) &&
    (sel.name === undefined || sel.name === obj.metadata.name);

  const writeEvent = (w: Watcher, type: string, object: unknown): void => {
    if (w.muted || w.res.destroyed || w.res.writableEnded) return;
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  };

  const stopTimers = (w: Watcher): void => {
    clearTimeout(w.timeout);
    clearTimeout(w.bookmark);
  };
  const closeWatcher = (w: Watcher): void => {
    stopTimers(w);
    watchers.delete(w);
  };

  const record = (type: EventType, resource: Resource, obj: FakeObject): void => {
    history.push({ rv, type, resource, obj });
    for (const w of watchers) if (matches(w, resource, obj)) writeEvent(w, type, obj);
  };

  function put(resource: Resource, input: FakeObject): FakeObject {
    const map = store[resource];
    const key = keyOf(input.metadata.namespace, input.metadata.name);
    const previous = map.get(key);
    rv++;
    const obj: FakeObject = structuredClone({
      ...input,
      apiVersion: 'v1',
      kind: KINDS[resource],
      metadata: { ...input.metadata, uid: previous?.metadata.uid ?? `uid-${++uid}`, resourceVersion: String(rv) },
    });
    map.set(key, obj);
    record(previous ? 'MODIFIED' : 'ADDED', resource, obj);
    return obj;
  }

  function remove(resource: Resource, namespace: string, name: string): boolean {
    const map = store[resource];
    const key = keyOf(namespace, name);
    const previous = map.get(key);
    if (!previous) return false;
    map.delete(key);
    rv++;
    record('DELETED', resource, { ...previous, metadata: { ...previous.metadata, resourceVersion: String(rv) } });
    return true;
  }

  function parseSelector(text: string | null, sel: Selection): string | undefined {
    if (!text) return undefined;
    for (const term of text.split(',')) {
      const [field, value] = term.split('=');
      if (field === 'metadata.name' && value) sel.name = value;
      else if (field === 'metadata.namespace' && value) sel.namespace = value;
      else return `unsupported field selector ${term}`;
    }
    return undefined;
  }

  function list(res: ServerResponse, sel: Selection, query: URLSearchParams): void {
    stats.listPages++;
    const continueToken = query.get('continue');
    let snapshotRv = rv;
    let after = '';
    if (continueToken) {
      let decoded: { rv: number; after: string };
      try {
        decoded = JSON.parse(Buffer.from(continueToken, 'base64url').toString('utf8')) as { rv: number; after: string };
      } catch {
        return send(res, 400, status(400, 'BadRequest', 'invalid continue token'));
      }
      if (expireContinue || decoded.rv < compactedRv) {
        expireContinue = false;
        const message =
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.';
        return send(res, 410, status(410, 'Expired', message));
      }
      snapshotRv = decoded.rv;
      after = decoded.after;
    } else {
      stats.lists++;
    }
    // A list with a resourceVersion comes from the watch cache, which answers in one response whatever the limit.
    const fromCache = !continueToken && (query.get('resourceVersion') ?? '') !== '';
    if (fromCache) {
      stats.cacheLists++;
      if (cacheListsFail) return send(res, 500, status(500, 'InternalError', 'watch cache not ready'));
    }
    const limit = fromCache ? 0 : Number(query.get('limit') ?? '0');
    // Current state rather than a true snapshot: items changed between pages also reach the watch, which is harmless.
    const keys = [...store[sel.resource].keys()].filter((k) => k > after).sort();
    const items: FakeObject[] = [];
    let next: string | undefined;
    for (const key of keys) {
      const obj = store[sel.resource].get(key) as FakeObject;
      if (!matches(sel, sel.resource, obj)) continue;
      if (limit > 0 && items.length === limit) {
        next = Buffer.from(JSON.stringify({ rv: snapshotRv, after: keyOf(items[items.length - 1]!.metadata.namespace, items[items.length - 1]!.metadata.name) })).toString('base64url');
        break;
      }
      items.push(obj);
    }
    send(res, 200, {
      kind: `${KINDS[sel.resource]}List`,
      apiVersion: 'v1',
      metadata: { resourceVersion: String(snapshotRv), ...(next ? { continue: next } : {}) },
      items,
    });
  }

  function watch(res: ServerResponse, sel: Selection, query: URLSearchParams): void {
    stats.watches++;
    const fromText = query.get('resourceVersion') ?? '';
    const from = fromText === '' || fromText === '0' ? undefined : Number(fromText);
    if (expireWatch === 'http') {
      expireWatch = undefined;
      return send(res, 410, status(410, 'Gone', `too old resource version: ${fromText} (${rv})`));
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    const w: Watcher = { ...sel, res, muted: silent };
    watchers.add(w);
    res.on('close', () => closeWatcher(w));
    if (silent) return;

    if (expireWatch === 'event' || (from !== undefined && from < compactedRv)) {
      expireWatch = undefined;
      writeEvent(w, 'ERROR', status(410, 'Expired', `too old resource version: ${fromText} (${rv})`));
      res.end();
      return;
    }
    if (from === undefined) {
      // Like the API server: without a resourceVersion the watch starts with the current state.
      for (const obj of store[sel.resource].values()) if (matches(sel, sel.resource, obj)) writeEvent(w, 'ADDED', obj);
    } else {
      for (const event of history) {
        if (event.rv > from && matches(sel, event.resource, event.obj)) writeEvent(w, event.type, event.obj);
      }
    }
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? '0');
    if (timeoutSeconds > 0) w.timeout = setTimeout(() => res.end(), timeoutSeconds * 1000);
    if (query.get('allowWatchBookmarks') === 'true' && bookmarkIntervalMs > 0) {
      const bookmark = (): void => {
        stats.bookmarks++;
        writeEvent(w, 'BOOKMARK', { kind: KINDS[sel.resource], apiVersion: 'v1', metadata: { resourceVersion: String(rv) } });
        w.bookmark = setTimeout(bookmark, bookmarkIntervalMs);
      };
      w.bookmark = setTimeout(bookmark, bookmarkIntervalMs);
    }
  }

  function getOne(res: ServerResponse, sel: Selection): void {
    const counter = `${sel.resource}/${sel.namespace ?? ''}/${sel.name ?? ''}`;
    stats.gets.set(counter, (stats.gets.get(counter) ?? 0) + 1);
    stats.getsInFlight++;
    stats.maxGetsInFlight = Math.max(stats.maxGetsInFlight, stats.getsInFlight);
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const hold = [...holds].find((h) => h.match(sel.name ?? ''));
    const finish = (): void => {
      if (finished) return;
      finished = true;
      stats.getsInFlight--;
      clearTimeout(timer);
      hold?.waiting.delete(answer);
    };
    res.on('close', finish);
    const answer = (): void => {
      if (finished) return;
      const obj = store[sel.resource].get(keyOf(sel.namespace ?? '', sel.name ?? ''));
      if (obj) send(res, 200, obj);
      else send(res, 404, status(404, 'NotFound', `${sel.resource} "${sel.name}" not found`));
      finish();
    };
    if (hold) hold.waiting.add(answer);
    else timer = setTimeout(answer, getDelayMs);
  }

  const server = http.createServer((req, res) => {
    if (downMode === 'hang') {
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return;
    }
    if (downMode === '503') return send(res, 503, status(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
    if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    const url = new URL(req.url ?? '/', 'http://fake');
    const m = PATH.exec(url.pathname);
    if (req.method !== 'GET' || !m) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const sel: Selection = { resource: m[2] as Resource, namespace: m[1] && decodeURIComponent(m[1]), name: m[3] && decodeURIComponent(m[3]) };
    if (sel.name !== undefined) {
      if (sel.namespace === undefined) return send(res, 404, status(404, 'NotFound', 'cluster-scoped GET of a namespaced resource'));
      return getOne(res, sel);
    }
    const problem = parseSelector(url.searchParams.get('fieldSelector'), sel);
    if (problem) return send(res, 400, status(400, 'BadRequest', problem));
    const isWatch = url.searchParams.get('watch');
    if (isWatch === 'true' || isWatch === '1') return watch(res, sel, url.searchParams);
    return list(res, sel, url.searchParams);
  });
  server.on('connection', (socket: Socket) => {
    if (downMode === 'reset') {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;

  const dir = mkdtempSync(join(tmpdir(), 'fake-apiserver-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfigPath,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
      'current-context': 'fake',
    }),
  );

  const cutWatches = (): void => {
    for (const w of [...watchers]) {
      closeWatcher(w);
      w.res.socket?.destroy();
    }
  };
  const dropHanging = (): void => {
    for (const res of [...hanging]) res.socket?.destroy();
    hanging.clear();
  };

  return {
    url,
    port,
    token,
    kubeconfigPath,
    stats,
    put,
    remove,
    serviceAccount: (namespace, name, annotations) =>
      put('serviceaccounts', { metadata: { namespace, name, ...(annotations ? { annotations } : {}) } }),
    configMap: (namespace, name, data) => put('configmaps', { metadata: { namespace, name }, data }),
    has: (resource, namespace, name) => store[resource].has(keyOf(namespace, name)),
    resourceVersion: () => rv,
    getCount: (resource, namespace, name) => stats.gets.get(`${resource}/${namespace}/${name}`) ?? 0,
    activeWatches: () => watchers.size,
    cutWatches,
    compact() {
      compactedRv = rv;
      history.length = 0;
    },
    expireNextWatch(how = 'event') {
      expireWatch = how;
    },
    expireNextContinue() {
      expireContinue = true;
    },
    failCacheLists(on) {
      cacheListsFail = on;
    },
    async down(mode = 'refuse') {
      downMode = mode;
      cutWatches();
      if (mode === 'refuse') {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await closed;
      }
    },
    async up() {
      const wasRefusing = downMode === 'refuse';
      downMode = undefined;
      dropHanging();
      if (wasRefusing) await listen(port);
    },
    silenceWatches(on) {
      silent = on;
      if (!on) return;
      for (const w of watchers) {
        w.muted = true;
        stopTimers(w);
      }
    },
    setGetDelay(ms) {
      getDelayMs = ms;
    },
    holdGets(match) {
      const hold = { match, waiting: new Set<() => void>() };
      holds.add(hold);
      return () => {
        holds.delete(hold);
        for (const answer of [...hold.waiting]) answer();
      };
    },
    async close() {
      cutWatches();
      dropHanging();
      for (const socket of sockets) socket.destroy();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `condition` until it holds (no deadline of its own: see wait.ts). */
export async function until(condition: () => boolean, what: string, options: WaitOptions = {}): Promise<void> {
  await waitUntil(what, () => (condition() ? true : undefined), { everyMs: 20, ...options });
}
