// Reading the OIDC documents the API server already serves
// (ServiceAccountIssuerDiscovery), to republish them at a public URL.
import { ApiException, type KubeConfig, OpenidApi, WellKnownApi } from '@kubernetes/client-node';
import type { Jwk, Jwks } from './keys.js';

export interface ServedIssuer {
  discovery: Record<string, unknown>;
  jwks: Jwks;
}

// The generated client types these answers as string but hands over the parsed
// JSON when the content type is JSON-like (application/jwk-set+json is).
function asObject(what: string, value: unknown): Record<string, unknown> {
  const parsed: unknown = typeof value === 'string' ? JSON.parse(value) : value;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${what}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

async function get(what: string, call: () => Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    return asObject(what, await call());
  } catch (err) {
    if (err instanceof ApiException) {
      const hint = err.code === 401 || err.code === 403 ? ' (the caller needs the system:service-account-issuer-discovery ClusterRole)' : '';
      const hint404 = err.code === 404 ? ' (is ServiceAccountIssuerDiscovery enabled, and --service-account-issuer set?)' : '';
      throw new Error(`GET ${what}: HTTP ${err.code}${hint}${hint404}`);
    }
    throw new Error(`GET ${what}: ${(err as Error).message}`);
  }
}

export async function fetchServedIssuer(kc: KubeConfig): Promise<ServedIssuer> {
  const discovery = await get('/.well-known/openid-configuration', () =>
    kc.makeApiClient(WellKnownApi).getServiceAccountIssuerOpenIDConfiguration());
  const jwks = await get('/openid/v1/jwks', () => kc.makeApiClient(OpenidApi).getServiceAccountIssuerOpenIDKeyset());
  const keys = jwks['keys'];
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => k && typeof k === 'object' && typeof k.kty === 'string')) {
    throw new Error('GET /openid/v1/jwks: no keys in the answer');
  }
  return { discovery, jwks: { ...jwks, keys: keys as Jwk[] } };
}
