// The live identity sources of `serve`: the ServiceAccount cache (list/watch
// with cache-miss lookups), the optional ConfigMap, the optional identities file.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { MutationOptions } from '../config.js';
import type { IdentityProvider } from './admission.js';
import type { WebhookMetrics } from './metrics.js';

export interface IdentityRuntime {
  provider: IdentityProvider;
  /** Reasons the webhook is not ready yet (empty when it is). */
  notReady(): string[];
  cacheSize(): number;
  debugSnapshot(): unknown;
  stop(): Promise<void>;
}

export interface IdentityRuntimeOptions {
  kubeConfig: KubeConfig | undefined;
  mutation: MutationOptions;
  namespace: string;
  watchConfigMap: boolean;
  containerCredentialsFile: string | undefined;
  lookupGracePeriodMs: number;
  logger: Logger;
  metrics: WebhookMetrics;
  filePollMs?: number | undefined;
}

export function startIdentityRuntime(o: IdentityRuntimeOptions): IdentityRuntime {
  void o;
  throw new Error('not wired yet');
}
