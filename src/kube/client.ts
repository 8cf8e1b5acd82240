// Where the webhook's API credentials come from: --kubeconfig, --kube-api, or
// the pod's own ServiceAccount (in-cluster) when neither is given.
import { existsSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';

export interface KubeConnectionFlags {
  kubeconfig?: string | undefined;
  /** Overrides the server URL of the chosen configuration. */
  kubeApi?: string | undefined;
}

export class KubeConfigError extends Error {}

export function loadKubeConfig(flags: KubeConnectionFlags): KubeConfig {
  const kc = new KubeConfig();
  if (flags.kubeconfig) {
    if (!existsSync(flags.kubeconfig)) throw new KubeConfigError(`--kubeconfig ${flags.kubeconfig}: no such file`);
    try {
      kc.loadFromFile(flags.kubeconfig);
    } catch (err) {
      throw new KubeConfigError(`--kubeconfig ${flags.kubeconfig}: not a usable kubeconfig (${(err as Error).message})`);
    }
  } else if (process.env['KUBERNETES_SERVICE_HOST']) {
    kc.loadFromCluster();
  } else if (flags.kubeApi) {
    // Plain http (e.g. `kubectl proxy`) has no TLS to verify; the client refuses it otherwise.
    const plain = flags.kubeApi.startsWith('http://');
    kc.loadFromClusterAndUser({ name: 'kube-api', server: flags.kubeApi, skipTLSVerify: plain }, { name: 'anonymous' });
  } else {
    throw new KubeConfigError('no API server: give --kubeconfig or --kube-api, or run inside a cluster');
  }
  if (flags.kubeApi) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new KubeConfigError('the kubeconfig has no current cluster');
    const server = flags.kubeApi;
    kc.clusters = kc.clusters.map((c) =>
      c.name === cluster.name ? { ...c, server, skipTLSVerify: c.skipTLSVerify || server.startsWith('http://') } : c,
    );
  }
  return kc;
}
