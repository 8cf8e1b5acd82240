// An identity runtime with fixed contents, for server tests without a cluster.
import type { ConfigMapIdentities } from '../../src/settings/config-map.js';
import { parseServiceAccountAnnotations, type ServiceAccountSettings } from '../../src/settings/service-account.js';
import type { ServiceAccountLookup } from '../../src/server/admission.js';
import type { IdentityRuntime } from '../../src/server/identities.js';

export interface StaticIdentities extends IdentityRuntime {
  set(namespace: string, name: string, annotations: Record<string, string>): void;
  containerCredentials: Set<string>;
  configMap: ConfigMapIdentities | undefined;
  ready: boolean;
  /** When set, a missing ServiceAccount is answered after this delay (a cache miss). */
  missDelayMs?: number;
  /** When set (with missDelayMs), misses are answered only once this settles (and the delay has passed). */
  missGate?: Promise<void>;
  /** Cache misses started so far. */
  missesStarted: number;
}

export function staticIdentities(prefix = 'eks.amazonaws.com'): StaticIdentities {
  const cache = new Map<string, ServiceAccountSettings>();
  const self: StaticIdentities = {
    containerCredentials: new Set(),
    configMap: undefined,
    ready: true,
    missesStarted: 0,
    set(namespace, name, annotations) {
      cache.set(`${namespace}/${name}`, parseServiceAccountAnnotations(annotations, prefix));
    },
    provider: {
      serviceAccount(namespace, name): ServiceAccountLookup | Promise<ServiceAccountLookup> {
        const settings = cache.get(`${namespace}/${name}`);
        if (settings) return { settings, outcome: 'cache' };
        if (self.missDelayMs === undefined) return { settings: undefined, outcome: 'not-found' };
        self.missesStarted++;
        const delay = new Promise<void>((resolve) => setTimeout(resolve, self.missDelayMs));
        return Promise.all([delay, self.missGate]).then(() => ({ settings: undefined, outcome: 'timeout' }));
      },
      configMap: () => self.configMap,
      containerCredentials: () => self.containerCredentials,
    },
    notReady: () => (self.ready ? [] : ['ServiceAccount cache not synced']),
    cacheSize: () => cache.size,
    debugSnapshot: () => Object.fromEntries(cache),
    stop: async () => undefined,
  };
  return self;
}
