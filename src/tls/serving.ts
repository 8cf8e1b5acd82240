// The serving certificate of the HTTPS server: loaded, checked, and turned into
// the options Node's TLS server takes (also for setSecureContext on reload).
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { pemCertificates } from './pem.js';
import type { SecureContextOptions } from 'node:tls';

export interface ServingMaterial {
  context: SecureContextOptions;
  notAfter: Date;
  subject: string;
  /** The CA certificates of --client-ca, when given. */
  clientCas?: X509Certificate[];
}

/** Go's names for the TLS versions, as the reference webhook's flag takes them. */
const TLS_VERSIONS = { '1.0': 'TLSv1', '1.1': 'TLSv1.1', '1.2': 'TLSv1.2', '1.3': 'TLSv1.3' } as const;
export type TlsVersionFlag = keyof typeof TLS_VERSIONS;

export function tlsMinVersion(flag: string): SecureContextOptions['minVersion'] {
  const v = TLS_VERSIONS[flag as TlsVersionFlag];
  if (!v) throw new Error(`--tls-min-version ${flag}: expected one of ${Object.keys(TLS_VERSIONS).join(', ')}`);
  return v;
}

/** Checks that the key belongs to the certificate, so a half-rotated pair is refused. */
export function servingMaterial(certPem: string, keyPem: string, clientCaPem?: string): ServingMaterial {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new Error(`certificate is not a PEM X.509 certificate: ${(err as Error).message}`, { cause: err });
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`key is not a PEM private key: ${(err as Error).message}`, { cause: err });
  }
  if (!cert.checkPrivateKey(key)) throw new Error('the private key does not belong to the certificate');
  const context: SecureContextOptions = { cert: certPem, key: keyPem };
  let clientCas: X509Certificate[] | undefined;
  if (clientCaPem !== undefined) {
    try {
      clientCas = pemCertificates(clientCaPem);
    } catch (err) {
      throw new Error(`client CA is not a PEM certificate: ${(err as Error).message}`, { cause: err });
    }
    if (clientCas.length === 0) throw new Error('client CA file holds no PEM certificate');
    context.ca = clientCaPem;
  }
  return { context, notAfter: new Date(cert.validTo), subject: cert.subject, ...(clientCas ? { clientCas } : {}) };
}

/** Go (IANA) cipher suite names, as the reference webhook's flag takes them, to OpenSSL's. */
const GO_CIPHER_SUITES: Record<string, string> = {
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_RSA_WITH_AES_128_CBC_SHA256: 'AES128-SHA256',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: 'ECDHE-ECDSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: 'ECDHE-RSA-AES128-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_AES_128_GCM_SHA256: 'TLS_AES_128_GCM_SHA256',
  TLS_AES_256_GCM_SHA384: 'TLS_AES_256_GCM_SHA384',
  TLS_CHACHA20_POLY1305_SHA256: 'TLS_CHACHA20_POLY1305_SHA256',
};
const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/**
 * `--tls-cipher-suites` (comma-separated Go names) to Node's `ciphers` string.
 * As in Go, the list only narrows TLS 1.2: TLS 1.3 suites stay enabled.
 */
export function cipherList(flag: string): string | undefined {
  const names = flag.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) return undefined;
  const unknown = names.filter((n) => !GO_CIPHER_SUITES[n]);
  if (unknown.length > 0) throw new Error(`--tls-cipher-suites: unknown or unsupported suite ${unknown.join(', ')}`);
  const openssl = names.map((n) => GO_CIPHER_SUITES[n] as string);
  for (const s of TLS13_SUITES) if (!openssl.includes(s)) openssl.push(s);
  return openssl.join(':');
}
