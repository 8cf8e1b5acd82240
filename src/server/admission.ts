// AdmissionReview in -> identity lookup -> engine -> AdmissionReview out.
// Knows nothing of HTTP: the route hands it the parsed body.
import type { V1Pod } from '@kubernetes/client-node';
import type { MutationOptions } from '../config.js';
import type { ConfigMapIdentities } from '../identity/config-map.js';
import type { ContainerCredentialsIdentities } from '../identity/container-credentials.js';
import type { ServiceAccountSettings } from '../identity/service-account.js';
import { mutatePod, patchJson, serviceAccountNameOf } from '../mutation/index.js';

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
  /** What one log line says about the admission. */
  log: {
    uid: string;
    pod?: string;
    namespace?: string;
    serviceAccount?: string;
    mode?: string;
    lookup?: LookupOutcome;
    warnings?: number;
  };
}

interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { resource?: string };
  subResource?: string;
  namespace?: string;
  operation?: string;
  object?: unknown;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readRequest(body: unknown): { apiVersion: string; request: AdmissionRequest } {
  if (!isObject(body)) throw new BadReviewError('body is not a JSON object');
  const { apiVersion, kind, request } = body;
  if (kind !== 'AdmissionReview') throw new BadReviewError(`kind is ${JSON.stringify(kind)}, expected "AdmissionReview"`);
  if (typeof apiVersion !== 'string' || !(ADMISSION_API_VERSIONS as readonly string[]).includes(apiVersion)) {
    throw new BadReviewError(`apiVersion ${JSON.stringify(apiVersion)} is not one of ${ADMISSION_API_VERSIONS.join(', ')}`);
  }
  if (!isObject(request)) throw new BadReviewError('AdmissionReview has no request');
  if (typeof request['uid'] !== 'string' || request['uid'] === '') throw new BadReviewError('request.uid is missing');
  return { apiVersion, request: request as unknown as AdmissionRequest };
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
  return r.operation === 'CREATE' && !r.subResource && (r.kind?.kind === 'Pod' || r.resource?.resource === 'pods') && (r.kind?.group ?? '') === '';
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
  const { apiVersion, request } = readRequest(body);
  const uid = request.uid;
  if (!isPodCreate(request)) {
    return { review: respond(apiVersion, uid), outcome: 'ignored', log: { uid } };
  }
  if (!isObject(request.object) || !isObject(request.object['spec'])) {
    throw new BadReviewError('request.object is not a Pod with a spec');
  }
  const pod = request.object as V1Pod;
  const namespace = (typeof request.namespace === 'string' && request.namespace) || pod.metadata?.namespace || 'default';
  const name = serviceAccountNameOf(pod);
  const found = identities.serviceAccount(namespace, name);
  const admit = (lookup: ServiceAccountLookup): ReviewOutcome =>
    admitPod(apiVersion, uid, pod, namespace, name, lookup, identities, options, random);
  return found instanceof Promise ? found.then(admit) : admit(found);
}

function admitPod(
  apiVersion: string,
  uid: string,
  pod: V1Pod,
  namespace: string,
  name: string,
  lookup: ServiceAccountLookup,
  identities: IdentityProvider,
  options: MutationOptions,
  random: (() => number) | undefined,
): ReviewOutcome {
  const result = mutatePod(
    pod,
    namespace,
    { serviceAccount: lookup.settings, configMap: identities.configMap(), containerCredentials: identities.containerCredentials() },
    options,
    random,
  );
  const warnings = result.warnings.map((w) => WARNING_PREFIX + w);
  if (!result.identity && (lookup.outcome === 'timeout' || lookup.outcome === 'error')) {
    warnings.push(`${WARNING_PREFIX}ServiceAccount ${namespace}/${name} could not be read in time (${lookup.outcome}); the pod was admitted without AWS credentials`);
  }
  return {
    review: respond(apiVersion, uid, result.patch.length > 0 ? patchJson(result.patch) : undefined, warnings),
    outcome: result.patch.length > 0 ? 'mutated' : 'unchanged',
    log: {
      uid,
      pod: pod.metadata?.name || pod.metadata?.generateName || '',
      namespace,
      serviceAccount: name,
      mode: result.identity?.mode ?? 'none',
      lookup: lookup.outcome,
      warnings: warnings.length,
    },
  };
}
