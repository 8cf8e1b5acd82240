// Client certificates under --client-ca, checked the way Go's crypto/tls checks
// them for a server with ClientAuth VerifyClientCertIfGiven or
// RequireAndVerifyClientCert (the API server's admission client is written
// against that): a chain from the leaf through intermediates the client sent
// up to one of the --client-ca roots, every certificate within its validity
// period, intermediates marked as CAs, and extended key usage that allows
// client authentication on every certificate of the chain that restricts it.
// All X.509 parsing and signature checks are Node's (OpenSSL's).
import type { X509Certificate } from 'node:crypto';

export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_ANY = '2.5.29.37.0';
/** Longer chains are refused, as are more certificates than this from the client. */
const MAX_CHAIN = 8;

export type ClientVerdict = { trusted: true } | { trusted: false; reason: string };

/** The leaf and the certificates the client sent after it, in the order Node links them. */
export function peerChain(leaf: X509Certificate | undefined): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  for (let c = leaf; c && chain.length < MAX_CHAIN && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    chain.push(c);
  }
  return chain;
}

function validAt(c: X509Certificate, now: number): boolean {
  return Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
}

/** No extended key usage extension means any usage, as does anyExtendedKeyUsage. */
function allowsClientAuth(c: X509Certificate): boolean {
  const eku = c.keyUsage as string[] | undefined;
  return eku === undefined || eku.length === 0 || eku.includes(EKU_CLIENT_AUTH) || eku.includes(EKU_ANY);
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Verifies `chain` (the leaf first, then what the client sent) against `roots`.
 * The intermediates may come in any order; the first path that verifies wins.
 */
export function verifyClientChain(chain: readonly X509Certificate[], roots: readonly X509Certificate[], now = Date.now()): ClientVerdict {
  const leaf = chain[0];
  if (!leaf) return { trusted: false, reason: 'no client certificate' };
  const intermediates = chain.slice(1, MAX_CHAIN);
  // The most telling reason seen while searching, for the log.
  let reason = 'not signed by a --client-ca certificate';
  const check = (c: X509Certificate, what: string): boolean => {
    if (!validAt(c, now)) {
      reason = `${what} ${c.subject.replace(/\n/g, ', ')} is outside its validity period (${c.validFrom} - ${c.validTo})`;
      return false;
    }
    if (!allowsClientAuth(c)) {
      reason = `${what} ${c.subject.replace(/\n/g, ', ')} does not allow client authentication (extended key usage)`;
      return false;
    }
    return true;
  };
  const extend = (path: X509Certificate[]): boolean => {
    const tip = path[path.length - 1] as X509Certificate;
    for (const root of roots) {
      if (tip.fingerprint256 === root.fingerprint256 || signedBy(tip, root)) {
        if (check(root, 'CA certificate')) return true;
      }
    }
    if (path.length >= MAX_CHAIN) return false;
    for (const next of intermediates) {
      if (path.some((p) => p.fingerprint256 === next.fingerprint256)) continue;
      if (!signedBy(tip, next)) continue;
      if (!next.ca) {
        reason = `intermediate ${next.subject.replace(/\n/g, ', ')} is not a CA`;
        continue;
      }
      if (check(next, 'intermediate') && extend([...path, next])) return true;
    }
    return false;
  };
  if (!check(leaf, 'client certificate')) return { trusted: false, reason };
  return extend([leaf]) ? { trusted: true } : { trusted: false, reason };
}
