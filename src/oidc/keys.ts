// The public half of an OIDC issuer for service account tokens: the JWKS and
// the discovery document that AWS STS fetches to verify IRSA tokens, made
// the way kube-apiserver makes its own (same key ids, same algorithms).
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { pemBlocks } from '../tls/pem.js';

export type SigningAlg = 'RS256' | 'ES256';

export interface Jwk {
  use: 'sig';
  kty: string;
  kid: string;
  alg: string;
  [member: string]: unknown;
}

export interface Jwks {
  keys: Jwk[];
}

export interface DiscoveryDocument {
  issuer: string;
  jwks_uri: string;
  response_types_supported: string[];
  subject_types_supported: string[];
  id_token_signing_alg_values_supported: string[];
  claims_supported: string[];
  [member: string]: unknown;
}

/** Bad key material; the message says what is wrong and how to fix it. */
export class KeyError extends Error {}

export const STS_AUDIENCE = 'sts.amazonaws.com';
export const JWKS_FILE = 'keys.json';
export const DISCOVERY_PATH = '.well-known/openid-configuration';

const CURVE_NAMES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** kube-apiserver's key id: unpadded base64url of SHA-256 over the DER SubjectPublicKeyInfo. */
export function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64url');
}

/** The JWS algorithm kube-apiserver signs with for this key, or a KeyError naming the key type. */
export function signingAlgorithm(publicKey: KeyObject): SigningAlg {
  const type = publicKey.asymmetricKeyType;
  if (type === 'rsa') return 'RS256';
  if (type === 'ec') {
    const curve = publicKey.asymmetricKeyDetails?.namedCurve ?? 'unknown';
    if (curve === 'prime256v1') return 'ES256';
    const name = CURVE_NAMES[curve];
    throw new KeyError(`key type EC ${name ? `${name} (${curve})` : curve} is not supported; use an RSA or EC P-256 key`);
  }
  const names: Record<string, string> = { ed25519: 'Ed25519', ed448: 'Ed448', 'rsa-pss': 'RSA-PSS', dsa: 'DSA', x25519: 'X25519', x448: 'X448', dh: 'DH' };
  const name = type ? (names[type] ?? type) : 'unknown';
  throw new KeyError(`key type ${name} is not supported; use an RSA or EC P-256 key`);
}

export function jwkFromPublicKey(publicKey: KeyObject): Jwk {
  const alg = signingAlgorithm(publicKey);
  const { kty, ...material } = publicKey.export({ format: 'jwk' });
  return { use: 'sig', kty: kty as string, kid: keyId(publicKey), alg, ...material };
}

/**
 * The public keys in a PEM text: "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
 * (PKCS#1) and "CERTIFICATE" blocks, as kube-apiserver's
 * --service-account-key-file reads them. Private keys are refused so that
 * nobody publishes one by mistake. `source` names the file in hints.
 */
export function publicKeysFromPem(pemText: string, source = 'KEY'): KeyObject[] {
  const keys: KeyObject[] = [];
  for (const { label, text } of pemBlocks(pemText)) {
    if (label.endsWith('PRIVATE KEY')) {
      throw new KeyError(`is a private key; give the public key (openssl pkey -in ${source} -pubout)`);
    }
    // openssl ecparam -genkey writes the curve parameters before the key.
    if (label === 'EC PARAMETERS') continue;
    if (label !== 'PUBLIC KEY' && label !== 'RSA PUBLIC KEY' && label !== 'CERTIFICATE') {
      throw new KeyError(`holds a "${label}" PEM block; expected a public key ("PUBLIC KEY" or "RSA PUBLIC KEY")`);
    }
    try {
      keys.push(createPublicKey(text));
    } catch (err) {
      throw new KeyError(`cannot read the "${label}" PEM block: ${(err as Error).message}`);
    }
  }
  if (keys.length === 0) {
    // Upstream's setup guide makes the key pair with ssh-keygen, whose .pub is not PEM.
    if (/^(ssh-rsa|ecdsa-sha2-nistp256) /.test(pemText.trim())) {
      throw new KeyError(`is an OpenSSH public key; convert it with ssh-keygen -e -m PKCS8 -f ${source}`);
    }
    throw new KeyError('holds no PEM public key (expected "-----BEGIN PUBLIC KEY-----")');
  }
  return keys;
}

/** The JWK of the first public key in a PEM text. */
export function jwkFromPublicKeyPem(pem: string): Jwk {
  return jwkFromPublicKey(publicKeysFromPem(pem)[0] as KeyObject);
}

/**
 * A JWKS with each key once (by kid). `legacyEmptyKid` adds a copy of every
 * key with kid "": tokens from before Kubernetes 1.16 carry an empty key id.
 */
export function buildJwks(keys: Jwk[], options: { legacyEmptyKid?: boolean } = {}): Jwks {
  const unique = new Map<string, Jwk>();
  for (const k of keys) if (!unique.has(k.kid)) unique.set(k.kid, k);
  const list = [...unique.values()];
  if (options.legacyEmptyKid) {
    const seen = new Set<string>();
    for (const k of [...list]) {
      // Same material under two kids is still one key; copy it once.
      const material = JSON.stringify({ ...k, kid: '' });
      if (k.kid === '' || seen.has(material)) continue;
      seen.add(material);
      list.push({ ...k, kid: '' });
    }
  }
  return { keys: list };
}

/** Why an issuer URL cannot be used, or undefined. */
export function issuerProblem(issuer: string): string | undefined {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return 'is not a URL';
  }
  // STS fetches the documents over HTTPS only, and OIDC issuers have no query or fragment.
  if (url.protocol !== 'https:') return 'must be an https:// URL';
  if (issuer.includes('?')) return 'must not have a query (?...)';
  if (issuer.includes('#')) return 'must not have a fragment (#...)';
  if (url.username || url.password) return 'must not hold a user name or password';
  return undefined;
}

function issuerBase(issuer: string): string {
  return issuer.replace(/\/+$/, '');
}

/** Where the JWKS lives for an issuer: next to the discovery document. */
export function jwksUri(issuer: string): string {
  return `${issuerBase(issuer)}/${JWKS_FILE}`;
}

/** Where OIDC clients (STS) look for the discovery document of an issuer. */
export function discoveryUrl(issuer: string): string {
  return `${issuerBase(issuer)}/${DISCOVERY_PATH}`;
}

export function discoveryDocument(issuer: string, algs: string[]): DiscoveryDocument {
  return {
    issuer,
    jwks_uri: jwksUri(issuer),
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [...new Set(algs)].sort(),
    claims_supported: ['sub', 'iss'],
  };
}
