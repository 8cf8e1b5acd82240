// Leader election on a coordination.k8s.io/v1 Lease: the decision part, pure.
// The caller GETs the Lease, asks what to do, and PUTs with the resourceVersion
// it read, so of two replicas racing for an expired Lease only one wins (409).

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export type LeaseDecision = 'renew' | 'acquire' | 'follow';

/** Kubernetes' MicroTime: RFC 3339 with microseconds. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Whether `identity` holds, may take, or must leave the Lease at `now`. */
export function leaseDecision(now: Date, spec: LeaseSpec | undefined, identity: string): LeaseDecision {
  const holder = spec?.holderIdentity;
  if (holder === identity) return 'renew';
  if (!holder) return 'acquire';
  const renewed = Date.parse(spec?.renewTime ?? spec?.acquireTime ?? '');
  const duration = spec?.leaseDurationSeconds;
  if (Number.isNaN(renewed) || typeof duration !== 'number' || duration <= 0) return 'acquire';
  return now.getTime() >= renewed + duration * 1000 ? 'acquire' : 'follow';
}

/** The spec to PUT for a renew or an acquire. */
export function leaseSpecFor(decision: 'renew' | 'acquire', now: Date, spec: LeaseSpec | undefined, identity: string, durationSeconds: number): LeaseSpec {
  const t = microTime(now);
  if (decision === 'renew') return { ...spec, holderIdentity: identity, leaseDurationSeconds: durationSeconds, renewTime: t };
  return {
    holderIdentity: identity,
    leaseDurationSeconds: durationSeconds,
    acquireTime: t,
    renewTime: t,
    leaseTransitions: (spec?.leaseTransitions ?? 0) + (spec?.holderIdentity ? 1 : 0),
  };
}
