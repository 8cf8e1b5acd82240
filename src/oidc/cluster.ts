// Reading the OIDC documents the API server already serves
// (ServiceAccountIssuerDiscovery), to republish them at a public URL.
import type { KubeConnection } from '../kube/client.js';
import { KubeApiError, kubeRequest } from '../kube/request.js';
import type { Jwk, Jwks } from './keys.js';

export interface ServedIssuer {
  discovery: Record<string, unknown>;
  jwks: Jwks;
}

async function get(kc: KubeConnection, path: string): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    // The JWKS comes as application/jwk-set+json.
    ({ body } = await kubeRequest(kc, { path, accept: 'application/json, application/jwk-set+json', signal: AbortSignal.timeout(30_000) }));
  } catch (err) {
    if (err instanceof KubeApiError) {
      const hint = err.status === 401 || err.status === 403 ? ' (the caller needs the system:service-account-issuer-discovery ClusterRole)' : '';
      const hint404 = err.status === 404 ? ' (is ServiceAccountIssuerDiscovery enabled, and --service-account-issuer set?)' : '';
      throw new Error(`GET ${path}: HTTP ${err.status}${hint}${hint404}`);
    }
    throw new Error(`GET ${path}: ${(err as Error).message}`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error(`${path}: not a JSON object`);
  return body as Record<string, unknown>;
}

export async function fetchServedIssuer(kc: KubeConnection): Promise<ServedIssuer> {
  const discovery = await get(kc, '/.well-known/openid-configuration');
  const jwks = await get(kc, '/openid/v1/jwks');
  const keys = jwks['keys'];
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k: unknown) => typeof k === 'object' && k !== null && typeof (k as Record<string, unknown>)['kty'] === 'string')) {
    throw new Error('GET /openid/v1/jwks: no keys in the answer');
  }
  return { discovery, jwks: { ...jwks, keys: keys as Jwk[] } };
}
