// AdmissionReview in -> identity lookup -> engine -> AdmissionReview out.
// Knows nothing of HTTP: the route hands it the parsed body.
import type { MutationOptions } from '../config.js';
import type { ConfigMapIdentities } from '../settings/config-map.js';
import type { ContainerCredentialsIdentities } from '../settings/container-credentials.js';
import type { ServiceAccountSettings } from '../settings/service-account.js';
import {
  boundWarnings,
  decodePod,
  mutateEphemeralView,
  mutatePodView,
  type PodView,
  patchJson,
  unreadablePodWarning,
} from '../mutation/index.js';
import { describeValue } from '../settings/warnings.js';

import type { LookupOutcome } from '../identity/service-account-cache.js';

export type { LookupOutcome };

export interface ServiceAccountLookup {
  settings: ServiceAccountSettings | undefined;
  outcome: LookupOutcome;
}

/** Where the identities come from; the server wires the live caches in. */
export interface IdentityProvider {
  /** Synchronous when the ServiceAccount is cached, a Promise on a cache miss. */
  serviceAccount(namespace: string, name: string): ServiceAccountLookup | Promise<ServiceAccountLookup>;
  configMap(): ConfigMapIdentities | undefined;
  containerCredentials(): ContainerCredentialsIdentities | undefined;
}

export const ADMISSION_API_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;

/** A request the webhook cannot read; answered with HTTP 400 and this reason. */
export class BadReviewError extends Error {}

export interface ReviewOutcome {
  /** The AdmissionReview to send back, as JSON. */
  review: string;
  outcome: 'mutated' | 'unchanged' | 'ignored';
  /**
   * What one log line says about the admission; the route fills in outcome
   * and durationMs (their keys are here already, so the line is logged as it
   * is, without copying it into a new object).
   */
  log: {
    uid: string;
    pod?: string;
    namespace?: string;
    serviceAccount?: string;
    mode?: string;
    lookup?: LookupOutcome;
    warnings?: number;
    outcome?: string;
    durationMs?: number;
  };
}

/** The fields of a request the webhook reads, each checked for its type. */
interface AdmissionRequest {
  uid: string;
  kind: string | undefined;
  group: string | undefined;
  resource: string | undefined;
  subResource: string | undefined;
  namespace: string | undefined;
  operation: string | undefined;
  object: unknown;
  /** Only read for an UPDATE of pods/ephemeralcontainers. */
  oldObject: unknown;
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An own property only: "__proto__" or "constructor" are never looked up the prototype chain. */
function own(o: unknown, key: string): unknown {
  return isObject(o) && Object.hasOwn(o, key) ? o[key] : undefined;
}

function ownString(o: unknown, key: string): string | undefined {
  const v = own(o, key);
  return typeof v === 'string' ? v : undefined;
}

function readRequest(body: unknown): { apiVersion: string; request: AdmissionRequest } {
  if (!isObject(body)) throw new BadReviewError('body is not a JSON object');
  const apiVersion = own(body, 'apiVersion');
  const kind = own(body, 'kind');
  const request = own(body, 'request');
  if (kind !== 'AdmissionReview') throw new BadReviewError(`kind is ${describeValue(kind)}, expected "AdmissionReview"`);
  if (typeof apiVersion !== 'string' || !(ADMISSION_API_VERSIONS as readonly string[]).includes(apiVersion)) {
    throw new BadReviewError(`apiVersion is ${describeValue(apiVersion)}, expected one of ${ADMISSION_API_VERSIONS.join(', ')}`);
  }
  if (!isObject(request)) throw new BadReviewError('AdmissionReview has no request');
  const uid = own(request, 'uid');
  if (typeof uid !== 'string' || uid === '') throw new BadReviewError('request.uid is missing');
  const kindOf = own(request, 'kind');
  return {
    apiVersion,
    request: {
      uid,
      kind: ownString(kindOf, 'kind'),
      group: ownString(kindOf, 'group'),
      resource: ownString(own(request, 'resource'), 'resource'),
      subResource: ownString(request, 'subResource'),
      namespace: ownString(request, 'namespace'),
      operation: ownString(request, 'operation'),
      object: own(request, 'object'),
      oldObject: own(request, 'oldObject'),
    },
  };
}

/** The response review, written directly: it is sent for every pod the cluster creates. */
function respond(apiVersion: string, uid: string, patch?: string, warnings?: readonly string[]): string {
  let response = `{"uid":${JSON.stringify(uid)},"allowed":true`;
  if (patch) response += `,"patchType":"JSONPatch","patch":"${Buffer.from(patch).toString('base64')}"`;
  if (warnings && warnings.length > 0) response += `,"warnings":${JSON.stringify(warnings)}`;
  return `{"apiVersion":${JSON.stringify(apiVersion)},"kind":"AdmissionReview","response":${response}}}`;
}

const WARNING_PREFIX = 'pod-identity-webhook: ';

/** Only pod CREATE is mutated; everything else is allowed unchanged. */
function isPodCreate(r: AdmissionRequest): boolean {
  return r.operation === 'CREATE' && !r.subResource && (r.kind === 'Pod' || r.resource === 'pods') && (r.group ?? '') === '';
}

/**
 * The part of a review the webhook acts on, read and type-checked: small, and
 * plain data (a large body is decoded in a worker thread and this is what
 * crosses back; see body-decoder.ts).
 */
export type DecodedReview =
  | { apiVersion: string; uid: string; kind: 'ignored' }
  | { apiVersion: string; uid: string; kind: 'unreadable'; problem: string }
  | { apiVersion: string; uid: string; kind: 'pod'; pod: PodView; namespace: string | undefined }
  | { apiVersion: string; uid: string; kind: 'ephemeral'; namespace: string | undefined; pods: EphemeralPods };

/** An UPDATE of pods/ephemeralcontainers: the pod after and before, or why they cannot be read. */
type EphemeralPods = { pod: PodView; old: PodView } | { problem: string } | { malformed: string };

/** Reads a parsed AdmissionReview; throws BadReviewError when it is not one. */
export function decodeReview(body: unknown): DecodedReview {
  const { apiVersion, request } = readRequest(body);
  const uid = request.uid;
  if (isEphemeralContainersUpdate(request)) {
    return { apiVersion, uid, kind: 'ephemeral', namespace: request.namespace, pods: decodeEphemeralPods(request) };
  }
  if (!isPodCreate(request)) return { apiVersion, uid, kind: 'ignored' };
  if (!isObject(request.object) || !isObject(own(request.object, 'spec'))) {
    throw new BadReviewError('request.object is not a Pod with a spec');
  }
  const decoded = decodePod(request.object);
  if (!decoded.pod) return { apiVersion, uid, kind: 'unreadable', problem: decoded.problem };
  return { apiVersion, uid, kind: 'pod', pod: decoded.pod, namespace: request.namespace };
}

/**
 * Keeps only the pod annotations the engine reads (those under `prefix/`), so
 * that a review made of megabytes of annotations decodes to a few bytes.
 */
export function withOwnAnnotations(review: DecodedReview, prefix: string): DecodedReview {
  if (review.kind !== 'pod') return review;
  const annotations = new Map<string, string>();
  for (const [k, v] of review.pod.annotations) if (k.startsWith(`${prefix}/`)) annotations.set(k, v);
  return { ...review, pod: { ...review.pod, annotations } };
}

/**
 * Synchronous when the ServiceAccount is cached (the usual case), so the hot
 * path allocates no Promise; a Promise only while a cache miss is looked up.
 */
export function reviewAdmission(
  body: unknown,
  identities: IdentityProvider,
  options: MutationOptions,
  random?: () => number,
): ReviewOutcome | Promise<ReviewOutcome> {
  return admitReview(decodeReview(body), identities, options, random);
}

/** The answer to a decoded review. */
export function admitReview(
  review: DecodedReview,
  identities: IdentityProvider,
  options: MutationOptions,
  random?: () => number,
): ReviewOutcome | Promise<ReviewOutcome> {
  const { apiVersion, uid } = review;
  if (review.kind === 'ephemeral') return admitEphemeralContainers(review, options);
  if (review.kind === 'ignored') {
    return { review: respond(apiVersion, uid), outcome: 'ignored', log: { uid } };
  }
  if (review.kind === 'unreadable') {
    const warnings = boundWarnings([unreadablePodWarning(review.problem)], WARNING_PREFIX);
    return { review: respond(apiVersion, uid, undefined, warnings), outcome: 'unchanged', log: { uid, warnings: 1, outcome: undefined, durationMs: undefined } };
  }
  const pod = review.pod;
  const namespace = review.namespace || pod.namespace || 'default';
  const name = pod.serviceAccountName || 'default';
  const found = identities.serviceAccount(namespace, name);
  const admit = (lookup: ServiceAccountLookup): ReviewOutcome =>
    admitPod(apiVersion, uid, pod, namespace, name, lookup, identities, options, random);
  return found instanceof Promise ? found.then(admit) : admit(found);
}

function admitPod(
  apiVersion: string,
  uid: string,
  pod: PodView,
  namespace: string,
  name: string,
  lookup: ServiceAccountLookup,
  identities: IdentityProvider,
  options: MutationOptions,
  random: (() => number) | undefined,
): ReviewOutcome {
  const result = mutatePodView(
    pod,
    namespace,
    name,
    { serviceAccount: lookup.settings, configMap: identities.configMap(), containerCredentials: identities.containerCredentials() },
    options,
    random,
  );
  const found = [...result.warnings];
  if (!result.identity && (lookup.outcome === 'timeout' || lookup.outcome === 'error')) {
    found.push(`ServiceAccount ${namespace}/${name} could not be read in time (${lookup.outcome}); the pod was admitted without AWS credentials`);
  }
  const warnings = boundWarnings(found, WARNING_PREFIX);
  return {
    review: respond(apiVersion, uid, result.patch.length > 0 ? patchJson(result.patch) : undefined, warnings),
    outcome: result.patch.length > 0 ? 'mutated' : 'unchanged',
    log: {
      uid,
      // Kubernetes names are at most 253 characters; a log line never carries more.
      pod: pod.name.slice(0, 253),
      namespace: namespace.slice(0, 253),
      serviceAccount: name.slice(0, 253),
      mode: result.identity?.mode ?? 'none',
      lookup: lookup.outcome,
      warnings: warnings.length,
      outcome: undefined,
      durationMs: undefined,
    },
  };
}

// --- --mutate-ephemeral-containers ------------------------------------------
// A debug container added to a running pod (kubectl debug) arrives as an UPDATE
// of the pods/ephemeralcontainers subresource, with the pod before and after.

const EPHEMERAL_OFF_WARNING = `${WARNING_PREFIX}the ephemeral containers are admitted unchanged: this webhook runs without --mutate-ephemeral-containers`;

function isEphemeralContainersUpdate(r: AdmissionRequest): boolean {
  return r.operation === 'UPDATE' && r.subResource === 'ephemeralcontainers' && r.resource === 'pods' && (r.group ?? '') === '';
}

function decodeEphemeralPods(request: AdmissionRequest): EphemeralPods {
  for (const [field, value] of [['object', request.object], ['oldObject', request.oldObject]] as const) {
    if (!isObject(value) || !isObject(own(value, 'spec'))) return { malformed: `request.${field} is not a Pod with a spec` };
  }
  const pod = decodePod(request.object);
  const old = decodePod(request.oldObject);
  if (!pod.pod || !old.pod) return { problem: pod.problem ?? `old object: ${old.problem ?? ''}` };
  return { pod: pod.pod, old: old.pod };
}

/** Synchronous: the identity comes from the pod itself, not from its ServiceAccount. */
function admitEphemeralContainers(review: Extract<DecodedReview, { kind: 'ephemeral' }>, options: MutationOptions): ReviewOutcome {
  const { apiVersion, uid, pods } = review;
  if (!options.mutateEphemeralContainers) {
    // The webhook configuration sends the subresource, but this webhook was not asked to handle it.
    return { review: respond(apiVersion, uid, undefined, [EPHEMERAL_OFF_WARNING]), outcome: 'ignored', log: { uid } };
  }
  if ('malformed' in pods) throw new BadReviewError(pods.malformed);
  if ('problem' in pods) {
    const warnings = boundWarnings([unreadablePodWarning(pods.problem)], WARNING_PREFIX);
    return { review: respond(apiVersion, uid, undefined, warnings), outcome: 'unchanged', log: { uid, warnings: 1 } };
  }
  const result = mutateEphemeralView(pods.pod, pods.old, options);
  const warnings = boundWarnings(result.warnings, WARNING_PREFIX);
  const namespace = review.namespace || pods.pod.namespace || 'default';
  return {
    review: respond(apiVersion, uid, result.patch.length > 0 ? patchJson(result.patch) : undefined, warnings),
    outcome: result.patch.length > 0 ? 'mutated' : 'unchanged',
    log: {
      uid,
      pod: pods.pod.name.slice(0, 253),
      namespace: namespace.slice(0, 253),
      mode: result.mode ?? 'none',
      warnings: warnings.length,
    },
  };
}
