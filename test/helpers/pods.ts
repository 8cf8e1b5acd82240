// Small builders for pods and engine inputs used across the tests.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { DEFAULT_MUTATION_OPTIONS, type MutationOptions } from '../../src/config.js';
import { parseServiceAccountAnnotations } from '../../src/settings/service-account.js';
import type { IdentitySources } from '../../src/mutation/index.js';

export const ROLE = 'arn:aws:iam::111122223333:role/s3-reader';

export function pod(containers: V1Container[], extra: { spec?: Partial<V1Pod['spec']>; metadata?: V1Pod['metadata'] } = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'default', ...extra.metadata },
    spec: { serviceAccountName: 'app', containers, ...extra.spec },
  } as V1Pod;
}

export function options(over: Partial<MutationOptions> = {}): MutationOptions {
  return { ...DEFAULT_MUTATION_OPTIONS, containerCredentials: { ...DEFAULT_MUTATION_OPTIONS.containerCredentials }, ...over };
}

export function saSources(annotations: Record<string, string>, prefix = 'eks.amazonaws.com'): IdentitySources {
  return { serviceAccount: parseServiceAccountAnnotations(annotations, prefix) };
}
