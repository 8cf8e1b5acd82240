// Which identity a pod's ServiceAccount gives it, from what is known about
// that ServiceAccount. Pure: the caller gathers the sources.
import type { MutationOptions, RoleSessionNameMode } from '../config.js';
import { type ConfigMapIdentities, lookupConfigMap } from '../settings/config-map.js';
import { type ContainerCredentialsIdentities, containerCredentialsKey } from '../settings/container-credentials.js';
import type { ServiceAccountSettings } from '../settings/service-account.js';

export interface IdentitySources {
  /** The ServiceAccount's parsed annotations; undefined when it was not found. */
  serviceAccount: ServiceAccountSettings | undefined;
  configMap?: ConfigMapIdentities | undefined;
  containerCredentials?: ContainerCredentialsIdentities | undefined;
}

interface TokenSettings {
  regionalSts: boolean;
  tokenExpiration: number;
  /** The ServiceAccount's role-session-name annotation (used by web identities only). */
  roleSessionName?: RoleSessionNameMode | undefined;
}

export interface WebIdentity extends TokenSettings {
  mode: 'web-identity';
  roleArn: string;
  audience: string;
  source: 'service-account' | 'config-map';
}

export interface ContainerCredentialsIdentity extends TokenSettings {
  mode: 'container-credentials';
}

export type Identity = WebIdentity | ContainerCredentialsIdentity;

export interface Resolution {
  identity: Identity | undefined;
  warnings: readonly string[];
}

/**
 * Container credentials win over a role ARN. For a web identity the
 * ServiceAccount's role-arn annotation wins over the ConfigMap; either way each
 * ServiceAccount annotation that is present beats the ConfigMap's field.
 */
export function resolveIdentity(
  namespace: string,
  serviceAccountName: string,
  sources: IdentitySources,
  options: MutationOptions,
): Resolution {
  const sa = sources.serviceAccount;
  const warnings = sa?.warnings ?? [];
  const cm = sa?.roleArn ? undefined : lookupConfigMap(sources.configMap, namespace, serviceAccountName);

  if (sources.containerCredentials?.has(containerCredentialsKey(namespace, serviceAccountName))) {
    const tokenExpiration = sa?.tokenExpiration ?? cm?.tokenExpiration;
    return {
      warnings,
      identity: {
        mode: 'container-credentials',
        regionalSts: sa?.regionalSts ?? cm?.regionalSts ?? options.regionalSts,
        tokenExpiration: tokenExpiration ?? options.tokenExpiration,
        roleSessionName: sa?.roleSessionName,
      },
    };
  }

  const roleArn = sa?.roleArn ?? (cm?.roleArn || undefined);
  if (!roleArn) return { identity: undefined, warnings };
  const tokenExpiration = sa?.tokenExpiration ?? cm?.tokenExpiration;
  return {
    warnings,
    identity: {
      mode: 'web-identity',
      source: sa?.roleArn ? 'service-account' : 'config-map',
      roleArn,
      audience: sa?.audience ?? cm?.audience ?? options.tokenAudience,
      regionalSts: sa?.regionalSts ?? cm?.regionalSts ?? options.regionalSts,
      tokenExpiration: tokenExpiration ?? options.tokenExpiration,
      roleSessionName: sa?.roleSessionName,
    },
  };
}
