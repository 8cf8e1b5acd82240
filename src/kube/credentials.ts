// How a request to the API server authenticates: a bearer token (given, from a
// file the kubelet rotates, or from an exec credential plugin), a client
// certificate (files, inline data or an exec plugin), or basic auth; and how it
// verifies the server (certificate-authority, tls-server-name, or not at all).
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import type { Agent } from 'node:http';
import https from 'node:https';
import type { ExecConfig, KubeCluster, KubeUser } from './client.js';

/** What one request carries: headers, and the TLS options of its connection. */
export interface RequestCredentials {
  headers: Record<string, string | string[]>;
  tls: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; rejectUnauthorized: boolean; servername?: string };
}

export interface KubeCredentials {
  /** Keep-alive agent of this connection; TLS options from credentials() select its socket pool. */
  readonly agent: Agent;
  /** For the next request: files are re-read when they change, exec credentials reused until they expire. */
  credentials(): Promise<RequestCredentials>;
  /** The API server answered 401: the next request runs the exec plugin again. */
  unauthorized(): void;
}

export class CredentialError extends Error {}

/** A file read again whenever its identity, size or mtime changes (token rotation, certificate renewal). */
function changingFile(path: string, what: string): () => Promise<Buffer> {
  let cached: { key: string; data: Buffer } | undefined;
  return async () => {
    try {
      const s = await stat(path);
      const key = `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
      if (cached?.key === key) return cached.data;
      const data = await readFile(path);
      cached = { key, data };
      return data;
    } catch (err) {
      throw new CredentialError(`${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
}

interface ExecResult {
  token?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** ms since the epoch; undefined: until the API server says 401. */
  expiresAt?: number | undefined;
}

/** A plugin that hangs must not hold requests forever. */
const EXEC_TIMEOUT_MS = 60_000;
const EXEC_MAX_OUTPUT = 1024 * 1024;

/** Runs an exec credential plugin (client.authentication.k8s.io v1 or v1beta1) and parses its ExecCredential. */
export function runExecPlugin(exec: ExecConfig, cluster: KubeCluster, server: string): Promise<ExecResult> {
  const spec: Record<string, unknown> = { interactive: false };
  if (exec.provideClusterInfo) {
    spec['cluster'] = {
      server,
      ...(cluster.tlsServerName ? { 'tls-server-name': cluster.tlsServerName } : {}),
      ...(cluster.insecureSkipTlsVerify ? { 'insecure-skip-tls-verify': true } : {}),
      ...(cluster.caData ? { 'certificate-authority-data': Buffer.from(cluster.caData).toString('base64') } : {}),
    };
  }
  const info = JSON.stringify({ apiVersion: exec.apiVersion, kind: 'ExecCredential', spec });
  const env = { ...process.env, ...Object.fromEntries(exec.env.map((e) => [e.name, e.value])), KUBERNETES_EXEC_INFO: info };
  const name = `exec plugin ${exec.command}`;
  return new Promise((resolve, reject) => {
    execFile(exec.command, exec.args, { env, timeout: EXEC_TIMEOUT_MS, maxBuffer: EXEC_MAX_OUTPUT, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const e = err as Error & { code?: string | number; killed?: boolean };
        if (e.code === 'ENOENT') return reject(new CredentialError(`${name}: not found${exec.installHint ? ` (${exec.installHint.trim()})` : ''}`));
        if (e.killed) return reject(new CredentialError(`${name}: no answer within ${EXEC_TIMEOUT_MS / 1000} s`));
        const said = stderr.trim().split('\n').pop()?.slice(0, 300);
        return reject(new CredentialError(`${name}: ${typeof e.code === 'number' ? `exit code ${e.code}` : e.message}${said ? `: ${said}` : ''}`));
      }
      try {
        resolve(parseExecCredential(stdout, exec.apiVersion));
      } catch (parseErr) {
        reject(new CredentialError(`${name}: ${(parseErr as Error).message}`));
      }
    });
  });
}

export function parseExecCredential(text: string, apiVersion: string): ExecResult {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error('its output is not an ExecCredential (not JSON)');
  }
  const o = (doc ?? {}) as { kind?: unknown; apiVersion?: unknown; status?: unknown };
  if (o.kind !== 'ExecCredential') throw new Error(`its output has kind ${JSON.stringify(o.kind)}, not ExecCredential`);
  if (o.apiVersion !== apiVersion) throw new Error(`its output has apiVersion ${JSON.stringify(o.apiVersion)}, not ${apiVersion}`);
  const status = (o.status ?? {}) as Record<string, unknown>;
  const text_ = (k: string): string | undefined => (typeof status[k] === 'string' && status[k] !== '' ? (status[k]) : undefined);
  const token = text_('token');
  const cert = text_('clientCertificateData');
  const key = text_('clientKeyData');
  if (!token && !(cert && key)) throw new Error('its ExecCredential has neither status.token nor clientCertificateData with clientKeyData');
  if (Boolean(cert) !== Boolean(key)) throw new Error('its ExecCredential has only one of clientCertificateData and clientKeyData');
  const expiry = text_('expirationTimestamp');
  let expiresAt: number | undefined;
  if (expiry) {
    expiresAt = Date.parse(expiry);
    if (Number.isNaN(expiresAt)) throw new Error(`its expirationTimestamp "${expiry}" is not a time`);
  }
  return { token, cert, key, expiresAt };
}

export function createCredentials(cluster: KubeCluster, user: KubeUser, server: string): KubeCredentials {
  const agent = server.startsWith('https:') ? new https.Agent({ keepAlive: true }) : new (process.getBuiltinModule('node:http').Agent)({ keepAlive: true }) /* not imported: see request.ts */;
  const ca = cluster.caFile ? changingFile(cluster.caFile, 'certificate-authority') : undefined;
  const certFile = user.certFile ? changingFile(user.certFile, 'client-certificate') : undefined;
  const keyFile = user.keyFile ? changingFile(user.keyFile, 'client-key') : undefined;
  const tokenFile = user.tokenFile ? changingFile(user.tokenFile, 'tokenFile') : undefined;
  const fixed: Record<string, string | string[]> = { Accept: 'application/json' };
  if (user.impersonate) fixed['Impersonate-User'] = user.impersonate;
  if (user.impersonateUid) fixed['Impersonate-Uid'] = user.impersonateUid;
  // An array becomes one header line per group, which is what the API server reads.
  if (user.impersonateGroups?.length) fixed['Impersonate-Group'] = user.impersonateGroups;

  let execResult: ExecResult | undefined;
  let execRunning: Promise<ExecResult> | undefined;
  const execCredential = async (): Promise<ExecResult> => {
    // Refreshed a little early, so a request does not leave with a token about to lapse.
    if (execResult && (execResult.expiresAt === undefined || execResult.expiresAt - 10_000 > Date.now())) return execResult;
    execRunning ??= runExecPlugin(user.exec as ExecConfig, cluster, server).then(
      (result) => {
        execResult = result;
        execRunning = undefined;
        return result;
      },
      (err: unknown) => {
        execRunning = undefined;
        throw err;
      },
    );
    return execRunning;
  };

  return {
    agent,
    unauthorized() {
      execResult = undefined;
    },
    async credentials() {
      const headers = { ...fixed };
      const tls: RequestCredentials['tls'] = { rejectUnauthorized: !cluster.insecureSkipTlsVerify };
      if (cluster.tlsServerName) tls.servername = cluster.tlsServerName;
      if (!cluster.insecureSkipTlsVerify) {
        if (cluster.caData) tls.ca = cluster.caData;
        else if (ca) tls.ca = await ca();
      }
      if (user.certData && user.keyData) {
        tls.cert = user.certData;
        tls.key = user.keyData;
      } else if (certFile && keyFile) {
        [tls.cert, tls.key] = await Promise.all([certFile(), keyFile()]);
      }
      let token = user.token;
      if (!token && tokenFile) token = (await tokenFile()).toString('utf8').trim();
      if (!token && user.exec) {
        const result = await execCredential();
        token = result.token;
        if (result.cert && result.key && !tls.cert) {
          tls.cert = result.cert;
          tls.key = result.key;
        }
      }
      if (token) headers['Authorization'] = `Bearer ${token}`;
      else if (user.username !== undefined && user.password !== undefined) {
        headers['Authorization'] = `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;
      }
      return { headers, tls };
    },
  };
}
