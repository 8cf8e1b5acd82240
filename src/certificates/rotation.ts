// Rotation decisions of --manage-certificates: pure functions from "now" and
// what the Secret and the MutatingWebhookConfiguration hold to the one next
// step the leader takes. No I/O here, so every rule is unit-tested.
//
// CA rotation keeps an overlap so the API server never meets a certificate it
// cannot verify:
//   1. rotate-ca: a new CA is created; the old one stays as `ca-previous.crt`;
//      the serving certificate is unchanged (still signed by the old CA), and
//      the bundle written to the webhook configuration is new CA + old CA.
//   2. issue-serving (under the new CA) only once that bundle is in the webhook
//      configuration AND `grace` has passed since step 1 (the API server's
//      webhook informer picks the change up).
//   3. drop-previous-ca only once `grace` has passed since step 2 (every
//      replica reloads the Secret from its watch) or the old CA has expired.
// A serving certificate renewed under the same CA needs no bundle change.

/** The Secret's data keys. */
export const SECRET_KEYS = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  previousCaCert: 'ca-previous.crt',
  cert: 'tls.crt',
  key: 'tls.key',
} as const;

/** Annotations on the Secret that record when a rotation step happened. */
export const SECRET_ANNOTATIONS = {
  caRotatedAt: 'pod-identity-webhook/ca-rotated-at',
  servingSwitchedAt: 'pod-identity-webhook/serving-switched-at',
} as const;

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/** What the leader knows, already parsed and checked (see inspectSecret in the caller). */
export interface RotationState {
  /** The current CA, when present, parseable, a CA, and its key matches. */
  ca?: Validity;
  /** The previous CA kept in the bundle during an overlap. */
  previousCa?: Validity;
  /** The serving certificate, when present and its key matches. */
  serving?: Validity & {
    /** Signed by the current CA. */
    signedByCa: boolean;
    /** Signed by the previous CA (during step 1 of a CA rotation). */
    signedByPreviousCa: boolean;
    /** Holds every DNS name the Service needs. */
    namesOk: boolean;
  };
  caRotatedAt?: Date;
  servingSwitchedAt?: Date;
  /** Every webhook of the configuration has exactly the bundle the Secret implies. */
  bundleWritten: boolean;
}

export interface RotationPolicy {
  /** Renew when this fraction of a lifetime has passed (2/3). */
  renewFraction: number;
  /** Time for the API server and every replica to pick up a change (see above). */
  graceMs: number;
}

export const DEFAULT_RENEW_FRACTION = 2 / 3;

export type RotationStep =
  | { step: 'create-ca'; reason: string }
  | { step: 'rotate-ca'; reason: string }
  | { step: 'issue-serving'; reason: string }
  | { step: 'drop-previous-ca'; reason: string }
  | { step: 'write-bundle'; reason: string }
  /** Nothing to do before `until` (unless the Secret or the configuration change). */
  | { step: 'wait'; until: Date; reason: string };

/** When a certificate valid over `v` is due for renewal. */
export function renewAt(v: Validity, fraction: number): Date {
  const life = v.notAfter.getTime() - v.notBefore.getTime();
  return new Date(v.notBefore.getTime() + Math.max(0, life) * fraction);
}

function usable(v: Validity | undefined, now: Date): v is Validity {
  return v !== undefined && v.notBefore.getTime() <= now.getTime() && now.getTime() < v.notAfter.getTime();
}

/** The one next step. Called again after every step and on every change. */
export function nextStep(now: Date, s: RotationState, policy: RotationPolicy): RotationStep {
  const t = now.getTime();
  if (!usable(s.ca, now)) return { step: 'create-ca', reason: s.ca ? 'the CA has expired' : 'no usable CA in the Secret' };
  const previous = usable(s.previousCa, now) ? s.previousCa : undefined;
  if (s.previousCa && !previous) return { step: 'drop-previous-ca', reason: 'the previous CA has expired' };
  // The bundle goes out before anything else: a serving certificate under a new
  // CA is issued only once the API server can be told to trust it.
  if (!s.bundleWritten) return { step: 'write-bundle', reason: 'the webhook configuration lacks the CA bundle' };

  const serving = s.serving;
  const servingValid = serving !== undefined && usable(serving, now) && serving.namesOk;
  if (previous && serving?.signedByPreviousCa && !serving.signedByCa && servingValid) {
    // Step 2 of a CA rotation: wait for the new bundle to reach the API server.
    const from = s.caRotatedAt?.getTime() ?? t;
    const switchAt = from + policy.graceMs;
    // The old serving certificate expiring cuts the wait short: it is useless then.
    if (t >= switchAt) return { step: 'issue-serving', reason: 'switching the serving certificate to the new CA' };
    return { step: 'wait', until: new Date(Math.min(switchAt, serving.notAfter.getTime())), reason: 'the new CA bundle is propagating' };
  }
  if (!servingValid || !serving.signedByCa) {
    return { step: 'issue-serving', reason: !serving ? 'no serving certificate' : !servingValid ? 'the serving certificate has expired or lacks a name' : 'the serving certificate is not signed by the CA' };
  }
  if (previous) {
    // Step 3: every replica must have reloaded before the old CA leaves the bundle.
    const dropAt = (s.servingSwitchedAt?.getTime() ?? t) + policy.graceMs;
    if (t >= dropAt) return { step: 'drop-previous-ca', reason: 'every replica serves a certificate of the new CA' };
    return { step: 'wait', until: new Date(Math.min(dropAt, previous.notAfter.getTime())), reason: 'replicas are reloading the new serving certificate' };
  }
  const caDue = renewAt(s.ca, policy.renewFraction).getTime();
  if (t >= caDue) return { step: 'rotate-ca', reason: 'two thirds of the CA lifetime have passed' };
  const servingDue = renewAt(serving, policy.renewFraction).getTime();
  if (t >= servingDue) return { step: 'issue-serving', reason: 'two thirds of the serving certificate lifetime have passed' };
  return { step: 'wait', until: new Date(Math.min(caDue, servingDue)), reason: 'certificates are fresh' };
}

/**
 * The CA bundle the API server must trust: the current CA first, then the previous
 * one while it is kept. Duplicates (the same PEM twice) are dropped.
 */
export function composeBundle(caCertPem: string, previousCaCertPem?: string): string {
  const blocks: string[] = [];
  for (const pem of [caCertPem, previousCaCertPem ?? '']) {
    for (const b of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
      if (!blocks.includes(b)) blocks.push(b);
    }
  }
  return blocks.map((b) => `${b}\n`).join('');
}

/** caBundle values of a MutatingWebhookConfiguration's webhooks (base64, as the API returns them). */
export function bundleWritten(webhooks: readonly { clientConfig?: { caBundle?: string } }[], bundlePem: string): boolean {
  const want = Buffer.from(bundlePem).toString('base64');
  return webhooks.length > 0 && webhooks.every((w) => w.clientConfig?.caBundle === want);
}

/**
 * The certificate lifetime actually issued: never beyond the CA's end, since a
 * certificate cannot be trusted longer than its issuer.
 */
export function servingNotAfter(now: Date, lifetimeMs: number, ca: Validity): Date {
  return new Date(Math.min(now.getTime() + lifetimeMs, ca.notAfter.getTime()));
}
