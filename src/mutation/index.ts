// The engine's entry points: pod + what is known of its ServiceAccount +
// options -> JSON patch and warnings. No I/O; the server and the CLI call it.
import type { MutationOptions } from '../config.js';
import { buildEphemeralPatch, buildPodPatch, type PatchOperation } from './patch.js';
import { decodePod, type PodView } from './pod.js';
import { type Identity, type IdentitySources, resolveIdentity } from './resolve.js';
import { warningList } from '../settings/warnings.js';

export type { Identity, IdentitySources, PatchOperation, PodView };
export { resolveIdentity } from './resolve.js';
export { buildEphemeralPatch, buildPodPatch } from './patch.js';
export { patchJson } from './serialize.js';
export { decodePod, serviceAccountNameOf } from './pod.js';
export { boundWarnings, MAX_WARNING_LENGTH, MAX_WARNINGS_LENGTH } from '../settings/warnings.js';

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

/** What an UPDATE of pods/ephemeralcontainers changes: the new ephemeral containers only. */
export interface EphemeralResult {
  patch: PatchOperation[];
  warnings: string[];
  /** The identity mode the pod was given at creation; undefined when it has none. */
  mode: Identity['mode'] | undefined;
}

/** An UPDATE of pods/ephemeralcontainers, on decoded pods: `pod` is the new object, `old` the stored one. */
export function mutateEphemeralView(pod: PodView, old: PodView, options: MutationOptions): EphemeralResult {
  const warnings = warningList();
  const { patch, mode } = buildEphemeralPatch(pod, old, options, warnings);
  return { patch, warnings: warnings.list(), mode };
}

/** The same on pods read from outside (any JSON value); an unreadable one gets no patch and a warning. */
export function mutateEphemeral(pod: unknown, old: unknown, options: MutationOptions): EphemeralResult {
  const decoded = decodePod(pod);
  if (!decoded.pod) return { patch: [], warnings: [unreadablePodWarning(decoded.problem)], mode: undefined };
  const decodedOld = decodePod(old);
  if (!decodedOld.pod) return { patch: [], warnings: [unreadablePodWarning(`old object: ${decodedOld.problem}`)], mode: undefined };
  return mutateEphemeralView(decoded.pod, decodedOld.pod, options);
}
