// The live identity sources of `serve`: the ServiceAccount cache (list/watch
// with cache-miss lookups), the optional ConfigMap, the optional identities file.
import type { Logger } from 'pino';
import type { KubeConnection } from '../kube/client.js';
import type { MutationOptions } from '../config.js';
import { createConfigMapWatch, type ConfigMapWatch } from '../identity/config-map-watch.js';
import { type ContainerCredentialsFile, watchContainerCredentialsFile } from '../identity/container-credentials-file.js';
import { createServiceAccountCache } from '../identity/service-account-cache.js';
import type { RoleArnComposition } from '../settings/role-arn.js';
import type { ReflectorEvents } from '../kube/reflector.js';
import type { IdentityProvider } from './admission.js';
import type { WebhookMetrics } from './metrics.js';
import { collectAfterLargeList, LARGE_LIST_ITEMS } from './heap.js';

export interface IdentityRuntime {
  provider: IdentityProvider;
  /** Reasons the webhook is not ready yet (empty when it is). */
  notReady(): string[];
  cacheSize(): number;
  debugSnapshot(): unknown;
  stop(): Promise<void>;
}

export interface IdentityRuntimeOptions {
  kubeConfig: KubeConnection | undefined;
  mutation: MutationOptions;
  namespace: string;
  watchConfigMap: boolean;
  containerCredentialsFile: string | undefined;
  lookupGracePeriodMs: number;
  roleArnComposition?: RoleArnComposition | undefined;
  logger: Logger;
  metrics: WebhookMetrics;
  filePollMs?: number | undefined;
}

function reflectorMetrics(metrics: WebhookMetrics, resource: string): Partial<ReflectorEvents> {
  return {
    restart: (reason) => metrics.reflectorRestarts.inc({ resource, reason }),
    listed: () => metrics.reflectorLastSync.set({ resource }, Date.now() / 1000),
    progress: () => metrics.reflectorLastSync.set({ resource }, Date.now() / 1000),
  };
}

export function startIdentityRuntime(o: IdentityRuntimeOptions): IdentityRuntime {
  if (!o.kubeConfig) throw new Error('serve needs a Kubernetes API connection');
  const { metrics, logger } = o;
  const serviceAccountEvents = reflectorMetrics(metrics, 'serviceaccounts');
  const serviceAccounts = createServiceAccountCache({
    kc: o.kubeConfig,
    annotationPrefix: o.mutation.annotationPrefix,
    roleArnComposition: o.roleArnComposition,
    logger,
    gracePeriodMs: o.lookupGracePeriodMs,
    events: {
      ...serviceAccountEvents,
      listed: (info) => {
        serviceAccountEvents.listed?.(info);
        if (info.count >= LARGE_LIST_ITEMS) collectAfterLargeList();
      },
    },
  });
  serviceAccounts.start();

  let configMap: ConfigMapWatch | undefined;
  if (o.watchConfigMap) {
    configMap = createConfigMapWatch({
      kc: o.kubeConfig,
      namespace: o.namespace,
      logger,
      events: {
        ...reflectorMetrics(metrics, 'configmaps'),
        applied: () => metrics.configReloads.inc({ source: 'config-map', result: 'success' }),
        invalid: () => metrics.configReloads.inc({ source: 'config-map', result: 'error' }),
      },
    });
    configMap.start();
  }

  let identitiesFile: ContainerCredentialsFile | undefined;
  if (o.containerCredentialsFile) {
    identitiesFile = watchContainerCredentialsFile(
      o.containerCredentialsFile,
      logger,
      (result) => metrics.configReloads.inc({ source: 'container-credentials', result }),
      o.filePollMs,
    );
  }

  return {
    provider: {
      serviceAccount(namespace, name) {
        // The hot path stays synchronous: no Promise when the cache has the answer.
        const settings = serviceAccounts.get(namespace, name);
        if (settings) return { settings, outcome: 'cache' };
        return serviceAccounts.lookup(namespace, name);
      },
      configMap: () => configMap?.current(),
      containerCredentials: () => identitiesFile?.current(),
    },
    notReady() {
      const reasons: string[] = [];
      if (!serviceAccounts.hasSynced()) reasons.push('ServiceAccount cache not synced');
      if (configMap && !configMap.hasSynced()) reasons.push('ConfigMap not synced');
      if (identitiesFile && !identitiesFile.loaded()) reasons.push('container-credentials identities file not loaded');
      return reasons;
    },
    cacheSize: () => serviceAccounts.size(),
    debugSnapshot: () => ({
      serviceAccounts: serviceAccounts.size(),
      annotated: Object.fromEntries(serviceAccounts.annotated()),
      configMap: configMap ? Object.fromEntries(configMap.current()) : undefined,
      containerCredentials: identitiesFile ? [...identitiesFile.current()] : undefined,
    }),
    async stop() {
      identitiesFile?.close();
      await Promise.all([serviceAccounts.stop(), configMap?.stop()]);
    },
  };
}
