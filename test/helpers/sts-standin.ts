// A stand-in for AWS STS, just big enough for AssumeRoleWithWebIdentity as
// the AWS SDKs call it (Query API: a form-encoded POST, XML answers). It
// verifies the token against the issuer's keys.json, decides from a small
// trust table of its own (role -> subjects, audience) and hands out
// credentials derived from the role ARN, so a test can tell which role the
// SDK got. The table is deliberately not the product's trust-policy
// evaluator (src/doctor/trust-policy.ts): a mistake there must be able to
// fail the SDK and doctor tests, not be repeated by the stand-in.
import { createHash, randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createLocalJWKSet, decodeJwt, errors as joseErrors, type JSONWebKeySet, type JWTPayload, jwtVerify } from 'jose';

export const STS_VERSION = '2011-06-15';
const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

/** Whom a role trusts: what the IRSA trust policy of that role would say, as data. */
export interface RoleTrust {
  /**
   * The token `sub` values the role admits: exact, or ending in `*` for every
   * subject with that prefix (`system:serviceaccount:shop:*`, as StringLike).
   */
  subjects: readonly string[];
  /** The `aud` the role's condition requires; unset: any audience the provider accepts. */
  audience?: string;
}

export interface StsStandinOptions {
  /** The issuer URL the tokens must carry (the IAM OIDC provider's URL). */
  issuer: string;
  /** The issuer's keys.json. */
  jwks: JSONWebKeySet | { keys: object[] };
  /** Role ARN -> whom it trusts. Unknown roles are refused as STS does (AccessDenied). */
  roles: Map<string, RoleTrust>;
  /** The provider's client IDs (allowed audiences); default sts.amazonaws.com. */
  audiences?: string[];
  /** Lifetime of issued credentials when the call gives no DurationSeconds. */
  defaultDurationSeconds?: number;
  now?: () => Date;
}

export interface StsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export interface StsRequestRecord {
  method: string;
  params: Record<string, string>;
  /** 200, or the HTTP status of the error. */
  status: number;
  /** Error code, when refused. */
  code?: string;
  message?: string;
  claims?: JWTPayload;
  /** The trust decision, when it got that far: why the role admitted or refused the token. */
  verdict?: { allowed: boolean; reason: string };
}

export interface StsStandin {
  readonly url: string;
  readonly port: number;
  readonly requests: StsRequestRecord[];
  /** Adds or replaces a role. */
  setRole(roleArn: string, trust: RoleTrust): void;
  close(): Promise<void>;
}

class StsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly type: 'Sender' | 'Receiver' = 'Sender',
  ) {
    super(message);
  }
}

/** The credentials the stand-in hands out for a role: derived from its ARN, so tests can predict them. */
export function credentialsForRole(roleArn: string): StsCredentials {
  const digest = (salt: string): Buffer => createHash('sha256').update(`${salt}:${roleArn}`).digest();
  const roleName = roleArn.split('/').pop() ?? 'role';
  return {
    // ASIA: the prefix of temporary keys; then 16 characters from the ARN.
    accessKeyId: `ASIA${digest('id').toString('hex').slice(0, 16).toUpperCase()}`,
    secretAccessKey: digest('secret').toString('base64').slice(0, 40),
    sessionToken: `standin/${roleName}/${digest('token').toString('base64url')}`,
  };
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] as string);
}

function element(name: string, value: string): string {
  return `<${name}>${xmlEscape(value)}</${name}>`;
}

function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, xml: string): void {
  res.writeHead(status, { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(xml), 'x-amzn-RequestId': randomUUID() });
  res.end(xml);
}

function errorXml(err: StsError): string {
  return (
    `<ErrorResponse xmlns="${NS}"><Error>${element('Type', err.type)}${element('Code', err.code)}${element('Message', err.message)}</Error>` +
    `${element('RequestId', randomUUID())}</ErrorResponse>`
  );
}

/** The stand-in's own trust decision (issuer and signature are checked before). */
export function trustVerdict(trust: RoleTrust | undefined, sub: string, audience: string): { allowed: boolean; reason: string } {
  if (trust === undefined) return { allowed: false, reason: 'no such role' };
  if (trust.audience !== undefined && trust.audience !== audience) {
    return { allowed: false, reason: `audience ${audience} is not the role's ${trust.audience}` };
  }
  const hit = trust.subjects.find((s) => (s.endsWith('*') ? sub.startsWith(s.slice(0, -1)) : sub === s));
  return hit === undefined
    ? { allowed: false, reason: `subject ${sub} is none of ${trust.subjects.join(', ')}` }
    : { allowed: true, reason: `subject ${sub} matches ${hit}` };
}

/** "oidc.example.com/path": the issuer URL without https://, as IAM names the provider. */
function providerPath(issuer: string): string {
  return issuer.replace(/^https:\/\//, '').replace(/\/+$/, '');
}

const accessDenied = (): StsError => new StsError(403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');

function required(params: Record<string, string>, name: string): string {
  const value = params[name];
  if (value === undefined || value === '') {
    const member = name.charAt(0).toLowerCase() + name.slice(1);
    throw new StsError(400, 'ValidationError', `1 validation error detected: Value null at '${member}' failed to satisfy constraint: Member must not be null`);
  }
  return value;
}

export async function startStsStandin(options: StsStandinOptions): Promise<StsStandin> {
  const roles = new Map<string, RoleTrust>();
  const setRole = (arn: string, trust: RoleTrust): void => {
    // An empty table would look like AccessDenied; fail the test setup instead.
    if (trust.subjects.length === 0) throw new Error(`role ${arn}: no subjects`);
    roles.set(arn, trust);
  };
  for (const [arn, trust] of options.roles) setRole(arn, trust);
  const audiences = options.audiences ?? ['sts.amazonaws.com'];
  const keySet = createLocalJWKSet(options.jwks as JSONWebKeySet);
  const now = options.now ?? (() => new Date());
  const requests: StsRequestRecord[] = [];

  async function assume(params: Record<string, string>, record: StsRequestRecord): Promise<string> {
    const action = required(params, 'Action');
    if (action !== 'AssumeRoleWithWebIdentity') throw new StsError(400, 'InvalidAction', `Could not find operation ${action} for version ${params['Version'] ?? ''}`);
    if (params['Version'] !== STS_VERSION) throw new StsError(400, 'InvalidAction', `Could not find operation ${action} for version ${params['Version'] ?? ''}`);
    const roleArn = required(params, 'RoleArn');
    const sessionName = required(params, 'RoleSessionName');
    const token = required(params, 'WebIdentityToken');
    if (!/^[\w+=,.@-]{2,64}$/.test(sessionName)) {
      throw new StsError(400, 'ValidationError', `1 validation error detected: Value '${sessionName}' at 'roleSessionName' failed to satisfy constraint`);
    }

    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch {
      throw new StsError(400, 'InvalidIdentityToken', 'The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)');
    }
    // STS finds the provider by the token's iss, so an unknown issuer is "no provider".
    if (unverified.iss !== options.issuer) {
      throw new StsError(400, 'InvalidIdentityToken', `No OpenIDConnect provider found in your account for ${String(unverified.iss)}`);
    }
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, keySet, { issuer: options.issuer, currentDate: now(), clockTolerance: 0 }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) {
        throw new StsError(400, 'ExpiredTokenException', `Token expired: current date/time ${isoSeconds(now())} must be before the expiration date/time`);
      }
      if (err instanceof joseErrors.JWKSNoMatchingKey) {
        throw new StsError(400, 'InvalidIdentityToken', "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements");
      }
      throw new StsError(400, 'InvalidIdentityToken', `The token could not be verified: ${(err as Error).message}`);
    }
    record.claims = claims;
    const tokenAudiences = Array.isArray(claims.aud) ? claims.aud : claims.aud === undefined ? [] : [claims.aud];
    const audience = tokenAudiences.find((a) => audiences.includes(a));
    if (audience === undefined) throw new StsError(400, 'InvalidIdentityToken', 'Incorrect token audience');
    if (typeof claims.sub !== 'string') throw new StsError(400, 'InvalidIdentityToken', 'The token has no sub claim');

    const accountId = /^arn:[^:]+:iam::(\d{12}):role\//.exec(roleArn)?.[1];
    const verdict = trustVerdict(roles.get(roleArn), claims.sub, audience);
    record.verdict = verdict;
    if (!verdict.allowed) throw accessDenied();

    const duration = params['DurationSeconds'] ? Number(params['DurationSeconds']) : (options.defaultDurationSeconds ?? 3600);
    if (!Number.isInteger(duration) || duration < 900 || duration > 43200) {
      throw new StsError(400, 'ValidationError', `The requested DurationSeconds ${params['DurationSeconds']} is out of range (900-43200)`);
    }
    const creds = credentialsForRole(roleArn);
    const roleName = roleArn.split('/').pop() as string;
    const roleId = `AROA${createHash('sha256').update(roleArn).digest('hex').slice(0, 17).toUpperCase()}`;
    const expiration = new Date(now().getTime() + duration * 1000);
    const result =
      `<Credentials>${element('AccessKeyId', creds.accessKeyId)}${element('SecretAccessKey', creds.secretAccessKey)}` +
      `${element('SessionToken', creds.sessionToken)}${element('Expiration', isoSeconds(expiration))}</Credentials>` +
      element('SubjectFromWebIdentityToken', claims.sub) +
      `<AssumedRoleUser>${element('Arn', `arn:aws:sts::${accountId ?? '000000000000'}:assumed-role/${roleName}/${sessionName}`)}` +
      `${element('AssumedRoleId', `${roleId}:${sessionName}`)}</AssumedRoleUser>` +
      element('Audience', audience) +
      element('Provider', providerPath(options.issuer));
    return (
      `<AssumeRoleWithWebIdentityResponse xmlns="${NS}"><AssumeRoleWithWebIdentityResult>${result}</AssumeRoleWithWebIdentityResult>` +
      `<ResponseMetadata>${element('RequestId', randomUUID())}</ResponseMetadata></AssumeRoleWithWebIdentityResponse>`
    );
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const record: StsRequestRecord = { method: req.method ?? '', params: {}, status: 200 };
      requests.push(record);
      try {
        // The Query API takes parameters from the query string or a form-encoded body.
        const url = new URL(req.url ?? '/', 'http://sts');
        const body = req.method === 'POST' ? await readBody(req) : '';
        const params = Object.fromEntries([...url.searchParams, ...new URLSearchParams(body)]);
        record.params = params;
        if (req.method !== 'POST' && req.method !== 'GET') throw new StsError(405, 'InvalidAction', `method ${req.method} is not supported`);
        send(res, 200, await assume(params, record));
      } catch (err) {
        const e = err instanceof StsError ? err : new StsError(500, 'InternalFailure', (err as Error).message, 'Receiver');
        record.status = e.status;
        record.code = e.code;
        record.message = e.message;
        send(res, e.status, errorXml(e));
      }
    })();
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    setRole,
    async close() {
      // The SDK keeps connections alive; close them so the server can stop.
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
