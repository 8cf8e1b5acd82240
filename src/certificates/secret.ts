// Reads the managed Secret's data into the facts the rotation decisions need.
// The Secret is input like any other: whatever does not parse counts as absent.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { keyMatchesCertificate, serviceDnsNames } from '../tls/certificates.js';
import { type RotationState, SECRET_ANNOTATIONS, SECRET_KEYS, type Validity } from './rotation.js';

export interface SecretView {
  /** data, base64 as the API returns it. */
  data?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Decoded PEM texts of the Secret (missing keys are undefined). */
export interface ManagedMaterial {
  caCert?: string;
  caKey?: string;
  previousCaCert?: string;
  cert?: string;
  key?: string;
}

/** Bounds what one Secret value may cost to parse; a Secret holds at most 1 MiB anyway. */
const MAX_VALUE_BYTES = 64 * 1024;

export function decodeSecret(secret: SecretView): ManagedMaterial {
  const out: ManagedMaterial = {};
  for (const [field, key] of Object.entries(SECRET_KEYS) as [keyof ManagedMaterial, string][]) {
    const b64 = secret.data?.[key];
    if (typeof b64 !== 'string' || b64.length === 0 || b64.length > (MAX_VALUE_BYTES * 4) / 3 + 4) continue;
    out[field] = Buffer.from(b64, 'base64').toString('utf8');
  }
  return out;
}

function parse(pem: string | undefined): X509Certificate | undefined {
  if (!pem) return undefined;
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function validity(x: X509Certificate): Validity {
  return { notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) };
}

function signedBy(cert: X509Certificate, ca: X509Certificate | undefined): boolean {
  return ca !== undefined && cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

function date(text: string | undefined): Date | undefined {
  const d = text === undefined ? undefined : new Date(text);
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

/** The state nextStep() decides on. `bundleWritten` comes from the webhook configuration. */
export function inspectMaterial(
  m: ManagedMaterial,
  annotations: Record<string, string> | undefined,
  service: { name: string; namespace: string },
  bundleWritten: boolean,
): RotationState {
  const state: RotationState = { bundleWritten };
  const ca = parse(m.caCert);
  let caKeyOk = false;
  try {
    caKeyOk = m.caKey !== undefined && m.caCert !== undefined && ca !== undefined && ca.ca && ca.checkPrivateKey(createPrivateKey(m.caKey));
  } catch {
    caKeyOk = false;
  }
  if (ca && caKeyOk) state.ca = validity(ca);
  const previous = parse(m.previousCaCert);
  if (previous?.ca) state.previousCa = validity(previous);
  const cert = parse(m.cert);
  if (cert && m.key && m.cert && keyMatchesCertificate(m.key, m.cert)) {
    const names = new Set((cert.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4)));
    const want = [service.name, `${service.name}.${service.namespace}`, ...serviceDnsNames(service.name, service.namespace)];
    state.serving = {
      ...validity(cert),
      signedByCa: state.ca !== undefined && signedBy(cert, ca),
      signedByPreviousCa: state.previousCa !== undefined && signedBy(cert, previous),
      namesOk: want.every((n) => names.has(n)),
    };
  }
  const caRotatedAt = date(annotations?.[SECRET_ANNOTATIONS.caRotatedAt]);
  if (caRotatedAt) state.caRotatedAt = caRotatedAt;
  const servingSwitchedAt = date(annotations?.[SECRET_ANNOTATIONS.servingSwitchedAt]);
  if (servingSwitchedAt) state.servingSwitchedAt = servingSwitchedAt;
  return state;
}
