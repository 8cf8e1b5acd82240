// --watch-config-map: the identities of the `pod-identity-webhook` ConfigMap,
// kept current by a reflector. An update replaces the whole map, a deletion
// empties it (the reference webhook keeps serving stale entries after a
// delete), and an invalid data.config keeps the last good map.
import type { Logger } from 'pino';
import { CONFIG_MAP_NAME } from '../config.js';
import type { KubeConnection } from '../kube/client.js';
import { type ReflectorEvents, type ReflectorTuning, createReflector } from '../kube/reflector.js';
import { type ConfigMapIdentities, EMPTY_CONFIG_MAP, parseConfigMapConfig } from '../settings/config-map.js';

export interface ConfigMapObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  data?: Record<string, string> | null;
}

export interface ConfigMapWatchEvents extends ReflectorEvents {
  /** A new map is in use (also the empty one after a deletion). */
  applied(info: { entries: number; resourceVersion: string | undefined }): void;
  /** data.config could not be parsed; the last good map stays. */
  invalid(error: Error): void;
}

export interface ConfigMapWatchOptions extends ReflectorTuning {
  kc: KubeConnection;
  namespace: string;
  /** Defaults to CONFIG_MAP_NAME. */
  name?: string | undefined;
  logger: Logger;
  events?: Partial<ConfigMapWatchEvents> | undefined;
}

export interface ConfigMapWatch {
  start(): void;
  stop(): Promise<void>;
  hasSynced(): boolean;
  waitForSync(): Promise<void>;
  /** The identities in force now; a new map object on every change, never mutated. */
  current(): ConfigMapIdentities;
}

export function createConfigMapWatch(options: ConfigMapWatchOptions): ConfigMapWatch {
  const name = options.name ?? CONFIG_MAP_NAME;
  const events = options.events ?? {};
  const log = options.logger.child({ configMap: `${options.namespace}/${name}` });
  let identities: ConfigMapIdentities = EMPTY_CONFIG_MAP;
  /** Whether the running (re)list has seen the ConfigMap. */
  let listedIt = false;

  const apply = (next: ConfigMapIdentities, resourceVersion: string | undefined): void => {
    identities = next;
    events.applied?.({ entries: next.size, resourceVersion });
  };
  const clear = (why: string): void => {
    if (identities === EMPTY_CONFIG_MAP) return;
    log.info(why);
    apply(EMPTY_CONFIG_MAP, undefined);
  };

  const reflector = createReflector<ConfigMapObject>({
    kc: options.kc,
    path: `/api/v1/namespaces/${encodeURIComponent(options.namespace)}/configmaps`,
    fieldSelector: `metadata.name=${name}`,
    pageSize: options.pageSize,
    watchTimeoutSeconds: options.watchTimeoutSeconds,
    silenceMs: options.silenceMs,
    backoff: options.backoff,
    logger: options.logger,
    events: options.events,
    handlers: {
      listStart() {
        listedIt = false;
      },
      upsert(cm) {
        // The field selector should guarantee it; a server ignoring it must not feed us other ConfigMaps.
        if (cm.metadata?.name !== name) return;
        listedIt = true;
        const resourceVersion = cm.metadata.resourceVersion;
        try {
          const next = parseConfigMapConfig(cm.data?.config);
          apply(next, resourceVersion);
          log.info({ entries: next.size, resourceVersion }, 'ConfigMap identities loaded');
        } catch (err) {
          log.error({ err, resourceVersion }, 'ConfigMap data.config is invalid; keeping the last good identities');
          events.invalid?.(err as Error);
        }
      },
      remove(cm) {
        if (cm.metadata?.name !== name) return;
        clear('ConfigMap deleted; identities cleared');
      },
      listEnd() {
        // Deleted while we were not watching: the relist is the only news of it.
        if (!listedIt) clear('ConfigMap absent; identities cleared');
      },
    },
  });

  return {
    start: () => reflector.start(),
    stop: () => reflector.stop(),
    hasSynced: () => reflector.hasSynced(),
    waitForSync: () => reflector.waitForSync(),
    current: () => identities,
  };
}
