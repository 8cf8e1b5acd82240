// Reads the managed Secret's data into the facts the rotation decisions need.
// The Secret is input like any other: whatever does not parse counts as absent.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { canonicalIp, keyMatchesCertificate, readCertificateInfo, serviceDnsNames } from '../tls/certificates.js';
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

/** The Service, and any other names the serving certificate must hold (a webhook reached by URL). */
export interface ServingNames {
  name: string;
  namespace: string;
  extraDnsNames?: readonly string[] | undefined;
  ipAddresses?: readonly string[] | undefined;
}

/** Every DNS name the serving certificate holds: the Service's four spellings, then the extra ones. */
export function servingDnsNames(service: ServingNames): string[] {
  const all = [service.name, `${service.name}.${service.namespace}`, ...serviceDnsNames(service.name, service.namespace), ...(service.extraDnsNames ?? [])];
  return [...new Set(all)];
}

/** The state nextStep() decides on. `bundleWritten` comes from the webhook configuration. */
export function inspectMaterial(
  m: ManagedMaterial,
  annotations: Record<string, string> | undefined,
  service: ServingNames,
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
    let info: { dnsNames: string[]; ipAddresses: string[] } = { dnsNames: [], ipAddresses: [] };
    try {
      info = readCertificateInfo(m.cert);
    } catch {
      // Names that cannot be read are names it lacks: a new certificate is issued.
    }
    const dns = new Set(info.dnsNames.map((n) => n.toLowerCase()));
    const ips = new Set(info.ipAddresses);
    state.serving = {
      ...validity(cert),
      signedByCa: state.ca !== undefined && signedBy(cert, ca),
      signedByPreviousCa: state.previousCa !== undefined && signedBy(cert, previous),
      namesOk: servingDnsNames(service).every((n) => dns.has(n.toLowerCase())) && (service.ipAddresses ?? []).every((ip) => ips.has(canonicalIp(ip))),
    };
  }
  const caRotatedAt = date(annotations?.[SECRET_ANNOTATIONS.caRotatedAt]);
  if (caRotatedAt) state.caRotatedAt = caRotatedAt;
  const servingSwitchedAt = date(annotations?.[SECRET_ANNOTATIONS.servingSwitchedAt]);
  if (servingSwitchedAt) state.servingSwitchedAt = servingSwitchedAt;
  return state;
}
