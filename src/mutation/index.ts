// The engine's one entry point: pod + what is known of its ServiceAccount +
// options -> JSON patch and warnings. No I/O; the server and the CLI call it.
import type { V1Pod } from '@kubernetes/client-node';
import type { MutationOptions } from '../config.js';
import { buildPodPatch, type PatchOperation } from './patch.js';
import { type Identity, type IdentitySources, resolveIdentity } from './resolve.js';

export type { Identity, IdentitySources, PatchOperation };
export { resolveIdentity } from './resolve.js';
export { buildPodPatch } from './patch.js';
export { patchJson } from './serialize.js';

export interface MutationResult {
  patch: PatchOperation[];
  warnings: string[];
  /** The identity the pod was given; undefined when its ServiceAccount has none. */
  identity: Identity | undefined;
}

export function serviceAccountNameOf(pod: V1Pod): string {
  const name: unknown = pod.spec?.serviceAccountName;
  return typeof name === 'string' && name !== '' ? name : 'default';
}

export function mutatePod(
  pod: V1Pod,
  namespace: string,
  sources: IdentitySources,
  options: MutationOptions,
  random?: () => number,
): MutationResult {
  const { identity, warnings } = resolveIdentity(namespace, serviceAccountNameOf(pod), sources, options);
  if (!identity) return { patch: [], warnings: [...warnings], identity };
  const result = buildPodPatch(pod, identity, options, random);
  return { patch: result.patch, warnings: [...warnings, ...result.warnings], identity };
}
