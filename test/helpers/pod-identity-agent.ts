// A stand-in for the EKS Pod Identity agent (what AWS_CONTAINER_CREDENTIALS_FULL_URI
// points at): GET /v1/credentials with the pod's projected token as the
// Authorization header. It checks the token as the agent and EKS Auth do
// (signature against the issuer's keys, issuer, audience, expiry) and hands
// the ServiceAccount's association credentials out in the container
// credentials format the AWS SDKs read.
import { createServer } from 'node:http';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from 'jose';
import { credentialsForRole } from './sts-standin.js';

export interface PodIdentityAgentOptions {
  issuer: string;
  jwks: JSONWebKeySet | { keys: object[] };
  /** `system:serviceaccount:NS:NAME` -> role ARN (the Pod Identity associations). */
  associations: Map<string, string>;
  /** Default pods.eks.amazonaws.com. */
  audience?: string;
}

export interface PodIdentityAgentRequest {
  status: number;
  sub?: string;
  reason?: string;
}

export interface PodIdentityAgent {
  /** http://127.0.0.1:PORT/v1/credentials */
  readonly url: string;
  readonly requests: PodIdentityAgentRequest[];
  close(): Promise<void>;
}

export async function startPodIdentityAgent(options: PodIdentityAgentOptions): Promise<PodIdentityAgent> {
  const keys = createLocalJWKSet(options.jwks as JSONWebKeySet);
  const audience = options.audience ?? 'pods.eks.amazonaws.com';
  const requests: PodIdentityAgentRequest[] = [];
  const server = createServer((req, res) => {
    const answer = (status: number, body: object, record: PodIdentityAgentRequest): void => {
      requests.push(record);
      const text = JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    void (async () => {
      if (req.method !== 'GET' || req.url !== '/v1/credentials') return answer(404, { message: 'not found' }, { status: 404, reason: `${req.method} ${req.url}` });
      const token = req.headers.authorization;
      if (!token) return answer(400, { message: 'no Authorization header' }, { status: 400, reason: 'no token' });
      let sub: string;
      try {
        const { payload } = await jwtVerify(token, keys, { issuer: options.issuer, audience });
        sub = String(payload.sub);
      } catch (err) {
        return answer(401, { message: 'invalid token' }, { status: 401, reason: (err as Error).message });
      }
      const role = options.associations.get(sub);
      if (!role) return answer(403, { message: 'no association' }, { status: 403, sub, reason: 'no association' });
      const c = credentialsForRole(role);
      return answer(
        200,
        { AccessKeyId: c.accessKeyId, SecretAccessKey: c.secretAccessKey, Token: c.sessionToken, AccountId: role.split(':')[4], Expiration: new Date(Date.now() + 3600_000).toISOString() },
        { status: 200, sub },
      );
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/v1/credentials`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
