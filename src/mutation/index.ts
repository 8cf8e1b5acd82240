// The engine's entry points: pod + what is known of its ServiceAccount +
// options -> JSON patch and warnings. No I/O; the server and the CLI call it.
import type { MutationOptions } from '../config.js';
import { buildPodPatch, type PatchOperation } from './patch.js';
import { decodePod, type PodView } from './pod.js';
import { type Identity, type IdentitySources, resolveIdentity } from './resolve.js';
import { warningList } from './warnings.js';

export type { Identity, IdentitySources, PatchOperation, PodView };
export { resolveIdentity } from './resolve.js';
export { buildPodPatch } from './patch.js';
export { patchJson } from './serialize.js';
export { decodePod, serviceAccountNameOf } from './pod.js';
export { boundWarnings, MAX_WARNING_LENGTH, MAX_WARNINGS_LENGTH } from './warnings.js';

export interface MutationResult {
  patch: PatchOperation[];
  /** Deduplicated, each cut to the API server's limit, at most a few dozen. */
  warnings: string[];
  /** The identity the pod was given; undefined when its ServiceAccount has none. */
  identity: Identity | undefined;
}

/** The warning for a pod whose fields have the wrong types. */
export function unreadablePodWarning(problem: string): string {
  return `the pod could not be read (${problem}); it is admitted unchanged`;
}

/** Mutates an already decoded pod; `namespace` and `serviceAccountName` are where it runs. */
export function mutatePodView(
  pod: PodView,
  namespace: string,
  serviceAccountName: string,
  sources: IdentitySources,
  options: MutationOptions,
  random?: () => number,
): MutationResult {
  const { identity, warnings: found } = resolveIdentity(namespace, serviceAccountName, sources, options);
  const warnings = warningList(found);
  const patch = identity ? buildPodPatch(pod, identity, options, warnings, random) : [];
  return { patch, warnings: warnings.list(), identity };
}

/**
 * Mutates a pod read from outside (any JSON value). A pod with fields of the
 * wrong type gets no patch and one warning saying which field.
 */
export function mutatePod(
  pod: unknown,
  namespace: string,
  sources: IdentitySources,
  options: MutationOptions,
  random?: () => number,
): MutationResult {
  const decoded = decodePod(pod);
  if (!decoded.pod) return { patch: [], warnings: [unreadablePodWarning(decoded.problem)], identity: undefined };
  const name = decoded.pod.serviceAccountName || 'default';
  return mutatePodView(decoded.pod, namespace, name, sources, options, random);
}
