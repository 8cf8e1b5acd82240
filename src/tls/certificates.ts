// The webhook's TLS material: a private CA (its certificate is the caBundle the
// API server trusts) and a serving certificate signed by it. Generation goes
// through `selfsigned`; inspection through node:crypto's X509Certificate.
import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509lib from '@peculiar/x509';
import { generate } from 'selfsigned';
import { firstPemCertificate } from './pem.js';
import { writeFileAtomic } from './files.js';

export type KeyType = 'ec' | 'rsa';
export const KEY_TYPES: readonly KeyType[] = ['ec', 'rsa'];

export const CA_COMMON_NAME = 'pod-identity-webhook-ca';
/** The CA outlives many serving certificates, so the caBundle rarely changes. */
export const CA_DAYS = 3650;
const DAY_MS = 86_400_000;
/** Backdating covers clocks (API server, nodes) that run a little behind ours. */
const BACKDATE_MS = 5 * 60_000;

export const FILES = { caCert: 'ca.crt', caKey: 'ca.key', cert: 'tls.crt', key: 'tls.key' } as const;
const CERT_MODE = 0o644;
const KEY_MODE = 0o600;

export interface CertificateInfo {
  notBefore: Date;
  notAfter: Date;
  dnsNames: string[];
  ipAddresses: string[];
  isCA: boolean;
}

export interface PemPair {
  cert: string;
  key: string;
}

/** The first certificate of a PEM text (a chain starts with the leaf). */
function firstCertificate(pemText: string): X509Certificate {
  const cert = firstPemCertificate(pemText);
  if (!cert) throw new Error('no PEM certificate found');
  return cert;
}

/** DNS names and IP addresses of the subjectAltName extension, read from its DER (not from a text rendering). */
function subjectAltNames(x509: X509Certificate): { dnsNames: string[]; ipAddresses: string[] } {
  const san = new x509lib.X509Certificate(x509.raw).getExtension(x509lib.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  return {
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === 'ip').map((n) => canonicalIp(n.value)),
  };
}

/** OpenSSL prints IPv6 expanded and upper case; URL parsing gives the usual short form. */
export function canonicalIp(ip: string): string {
  return ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

function dateOf(x509: X509Certificate, field: 'validFrom' | 'validTo'): Date {
  // validFromDate/validToDate only exist from Node 22.10; the string form parses everywhere.
  const exact = (x509 as unknown as Record<string, unknown>)[`${field}Date`];
  return exact instanceof Date ? exact : new Date(x509[field]);
}

export function readCertificateInfo(pemText: string): CertificateInfo {
  const x509 = firstCertificate(pemText);
  return {
    notBefore: dateOf(x509, 'validFrom'),
    notAfter: dateOf(x509, 'validTo'),
    ...subjectAltNames(x509),
    isCA: x509.ca,
  };
}

/** True when `caPem`'s (first) certificate issued and signed `certPem`'s first certificate. */
export function verifySignedBy(certPem: string, caPem: string): boolean {
  try {
    const cert = firstCertificate(certPem);
    const ca = firstCertificate(caPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

function spki(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

export function keyMatchesCertificate(keyPem: string, certPem: string): boolean {
  try {
    return spki(createPublicKey(createPrivateKey(keyPem))).equals(spki(firstCertificate(certPem).publicKey));
  } catch {
    return false;
  }
}

/** "ec P-256", "rsa 2048", ... : what the key is, for comparisons and messages. */
export function describeKey(keyPem: string): string {
  const key = createPrivateKey(keyPem);
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') return `ec ${d.namedCurve === 'prime256v1' ? 'P-256' : d.namedCurve}`;
  if (key.asymmetricKeyType === 'rsa') return `rsa ${d.modulusLength}`;
  return String(key.asymmetricKeyType);
}

function expectedKey(keyType: KeyType): string {
  return keyType === 'ec' ? 'ec P-256' : 'rsa 2048';
}

/** The names the API server uses to reach the webhook Service. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
}

function keyOptions(keyType: KeyType) {
  // selfsigned defaults to SHA-1 signatures, which Go's TLS (the API server) rejects.
  return keyType === 'ec'
    ? ({ keyType: 'ec', curve: 'P-256', algorithm: 'sha256' } as const)
    : ({ keyType: 'rsa', keySize: 2048, algorithm: 'sha256' } as const);
}

/** `backdateMs`: how far notBefore lies in the past (default 5 minutes). */
export async function createCA(options: { keyType: KeyType; notAfter: Date; now?: Date; commonName?: string; backdateMs?: number }): Promise<PemPair> {
  const now = options.now ?? new Date();
  const pems = await generate([{ name: 'commonName', value: options.commonName ?? CA_COMMON_NAME }], {
    ...keyOptions(options.keyType),
    notBeforeDate: new Date(now.getTime() - (options.backdateMs ?? BACKDATE_MS)),
    notAfterDate: options.notAfter,
    extensions: [
      // pathLen 0: this CA signs serving certificates, never other CAs.
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

export async function createServingCertificate(
  ca: PemPair,
  options: { keyType: KeyType; dnsNames: string[]; ipAddresses: string[]; notAfter: Date; now?: Date; backdateMs?: number },
): Promise<PemPair> {
  const now = options.now ?? new Date();
  const commonName = options.dnsNames[0] ?? options.ipAddresses[0] ?? 'pod-identity-webhook';
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    ...keyOptions(options.keyType),
    notBeforeDate: new Date(now.getTime() - (options.backdateMs ?? BACKDATE_MS)),
    notAfterDate: options.notAfter,
    ca: { cert: ca.cert, key: ca.key },
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      // RSA key exchange (TLS 1.2 without ECDHE) encrypts with the key; ECDSA keys only sign.
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: options.keyType === 'rsa', critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...options.dnsNames.map((value) => ({ type: 2 as const, value })),
          ...options.ipAddresses.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

export interface CertificateRequest {
  outDir: string;
  keyType: KeyType;
  /** Names the serving certificate must cover (the Service names and any extra). */
  dnsNames: string[];
  ipAddresses: string[];
  /** Validity of a new serving certificate. */
  days: number;
  /** Validity of a new CA; defaults to CA_DAYS (at least `days`). */
  caDays?: number;
  /** Renew what expires within this many milliseconds. */
  renewBeforeMs: number;
  now?: Date;
}

export type FileAction = 'created' | 'renewed' | 'kept';

export interface FileOutcome {
  path: string;
  action: FileAction;
  /** Why it was renewed, or what was kept. */
  detail: string;
}

export interface CertificateResult {
  files: FileOutcome[];
  ca: PemPair;
  serving: PemPair;
  caChanged: boolean;
  servingChanged: boolean;
}

type Loaded = { state: 'missing' } | { state: 'broken'; why: string } | { state: 'ok'; pair: PemPair };

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function loadPair(dir: string, certFile: string, keyFile: string): Loaded {
  const cert = readIfPresent(join(dir, certFile));
  const key = readIfPresent(join(dir, keyFile));
  if (cert === undefined && key === undefined) return { state: 'missing' };
  if (cert === undefined) return { state: 'broken', why: `${certFile} is missing` };
  if (key === undefined) return { state: 'broken', why: `${keyFile} is missing` };
  try {
    firstCertificate(cert);
  } catch (err) {
    return { state: 'broken', why: `${certFile} cannot be read: ${(err as Error).message}` };
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    return { state: 'broken', why: `${keyFile} cannot be read: ${(err as Error).message}` };
  }
  if (!keyMatchesCertificate(key, cert)) return { state: 'broken', why: `${keyFile} does not belong to ${certFile}` };
  return { state: 'ok', pair: { cert, key } };
}

export function formatDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** 30d, 36h, 90s: the shortest exact spelling. */
export function formatDuration(ms: number): string {
  if (ms % DAY_MS === 0) return `${ms / DAY_MS}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  return `${ms / 1000}s`;
}

function expiryProblem(info: CertificateInfo, now: Date, renewBeforeMs: number): string | undefined {
  if (info.notAfter.getTime() <= now.getTime()) return `expired on ${formatDate(info.notAfter)}`;
  if (info.notAfter.getTime() - now.getTime() <= renewBeforeMs) {
    return `expires on ${formatDate(info.notAfter)}, within --renew-before ${formatDuration(renewBeforeMs)}`;
  }
  if (info.notBefore.getTime() > now.getTime()) return `not valid before ${formatDate(info.notBefore)}`;
  return undefined;
}

/** Why the existing CA cannot stay, or undefined when it can. */
function caProblem(loaded: Loaded, req: CertificateRequest, now: Date): string | undefined {
  if (loaded.state === 'missing') return 'missing';
  if (loaded.state === 'broken') return loaded.why;
  const info = readCertificateInfo(loaded.pair.cert);
  if (!info.isCA) return `${FILES.caCert} is not a CA certificate`;
  // selfsigned signs with the algorithm of the new key, so the CA key must be of the same family.
  const family = describeKey(loaded.pair.key).split(' ')[0];
  if (family !== req.keyType) return `the CA key is ${family} and --key-type is ${req.keyType}`;
  return expiryProblem(info, now, req.renewBeforeMs);
}

function servingProblem(loaded: Loaded, ca: PemPair, req: CertificateRequest, now: Date): string | undefined {
  if (loaded.state === 'missing') return 'missing';
  if (loaded.state === 'broken') return loaded.why;
  const { cert, key } = loaded.pair;
  if (!verifySignedBy(cert, ca.cert)) return `${FILES.cert} is not signed by ${FILES.caCert}`;
  const x509 = firstCertificate(cert);
  if (x509.ca) return `${FILES.cert} is a CA certificate`;
  // keyUsage holds the extended key usages; serverAuth is what TLS servers need.
  if (x509.keyUsage && !x509.keyUsage.includes('1.3.6.1.5.5.7.3.1')) return `${FILES.cert} is not for TLS servers`;
  const have = describeKey(key);
  if (have !== expectedKey(req.keyType)) return `the key is ${have} and --key-type ${req.keyType} asks for ${expectedKey(req.keyType)}`;
  // Exact names, not TLS matching: a wildcard SAN is not what was asked for.
  const info = readCertificateInfo(cert);
  const dns = new Set(info.dnsNames.map((n) => n.toLowerCase()));
  const ips = new Set(info.ipAddresses);
  const missing = [
    ...req.dnsNames.filter((n) => !dns.has(n.toLowerCase())).map((n) => `DNS:${n}`),
    ...req.ipAddresses.filter((ip) => !ips.has(canonicalIp(ip))).map((ip) => `IP:${ip}`),
  ];
  if (missing.length > 0) return `does not cover ${missing.join(', ')}`;
  return expiryProblem(info, now, req.renewBeforeMs);
}

/**
 * Makes `outDir` hold a valid CA and serving certificate for the request,
 * keeping whatever is still good. Each file is replaced atomically, the key
 * before its certificate, so a watcher that reloads on the certificate finds
 * the matching key already in place.
 */
export async function ensureCertificates(req: CertificateRequest): Promise<CertificateResult> {
  const now = req.now ?? new Date();
  const dir = req.outDir;
  const path = (f: string) => join(dir, f);
  const files: FileOutcome[] = [];

  const loadedCa = loadPair(dir, FILES.caCert, FILES.caKey);
  const caWhy = caProblem(loadedCa, req, now);
  let ca: PemPair;
  if (caWhy === undefined && loadedCa.state === 'ok') {
    ca = loadedCa.pair;
    const until = formatDate(readCertificateInfo(ca.cert).notAfter);
    files.push({ path: path(FILES.caCert), action: 'kept', detail: `valid until ${until}` });
    files.push({ path: path(FILES.caKey), action: 'kept', detail: describeKey(ca.key) });
  } else {
    const caDays = Math.max(req.caDays ?? CA_DAYS, req.days);
    ca = await createCA({ keyType: req.keyType, notAfter: new Date(now.getTime() + caDays * DAY_MS), now });
    writeFileAtomic(path(FILES.caKey), ca.key, KEY_MODE);
    writeFileAtomic(path(FILES.caCert), ca.cert, CERT_MODE);
    const action: FileAction = caWhy === 'missing' ? 'created' : 'renewed';
    const until = `valid until ${formatDate(readCertificateInfo(ca.cert).notAfter)}`;
    const why = action === 'renewed' ? `${caWhy}; ` : '';
    files.push({ path: path(FILES.caCert), action, detail: `${why}${until}` });
    files.push({ path: path(FILES.caKey), action, detail: describeKey(ca.key) });
  }
  const caChanged = caWhy !== undefined;

  const loaded = loadPair(dir, FILES.cert, FILES.key);
  const why = caChanged ? (loaded.state === 'missing' ? 'missing' : 'the CA is new') : servingProblem(loaded, ca, req, now);
  let serving: PemPair;
  if (why === undefined && loaded.state === 'ok') {
    serving = loaded.pair;
    const info = readCertificateInfo(serving.cert);
    files.push({ path: path(FILES.cert), action: 'kept', detail: `valid until ${formatDate(info.notAfter)}` });
    files.push({ path: path(FILES.key), action: 'kept', detail: describeKey(serving.key) });
  } else {
    // A serving certificate outliving its CA would stop verifying early anyway;
    // capping it makes both come up for renewal together.
    const caNotAfter = readCertificateInfo(ca.cert).notAfter.getTime();
    const notAfter = new Date(Math.min(now.getTime() + req.days * DAY_MS, caNotAfter));
    serving = await createServingCertificate(ca, {
      keyType: req.keyType,
      dnsNames: req.dnsNames,
      ipAddresses: req.ipAddresses,
      notAfter,
      now,
    });
    writeFileAtomic(path(FILES.key), serving.key, KEY_MODE);
    writeFileAtomic(path(FILES.cert), serving.cert, CERT_MODE);
    const action: FileAction = why === 'missing' ? 'created' : 'renewed';
    const info = readCertificateInfo(serving.cert);
    const names = [...info.dnsNames, ...info.ipAddresses].join(', ');
    const detail = `${action === 'renewed' ? `${why}; ` : ''}valid until ${formatDate(info.notAfter)}, for ${names}`;
    files.push({ path: path(FILES.cert), action, detail });
    files.push({ path: path(FILES.key), action, detail: describeKey(serving.key) });
  }
  return { files, ca, serving, caChanged, servingChanged: why !== undefined };
}
