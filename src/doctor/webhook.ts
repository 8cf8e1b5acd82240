// What `doctor` checks about the MutatingWebhookConfiguration: does one of
// its webhooks see this pod's CREATE, is its caBundle a usable CA, and does
// the endpoint answer over TLS that the caBundle verifies, as the API server
// requires.
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import type { V1LabelSelector, V1MutatingWebhook, V1RuleWithOperations } from '@kubernetes/client-node';
import { formatDate } from '../tls/certificates.js';
import { firstPemCertificate } from '../tls/pem.js';

export interface Outcome {
  ok: boolean;
  detail: string;
}

function anyOf(list: string[] | undefined, ...accepted: string[]): boolean {
  return (list ?? []).some((v) => accepted.includes(v));
}

function ruleMatchesPodCreate(rule: V1RuleWithOperations): boolean {
  return (
    anyOf(rule.operations, 'CREATE', '*') &&
    anyOf(rule.apiGroups, '', '*') &&
    anyOf(rule.apiVersions, 'v1', '*') &&
    // "pods/*" covers subresources only, not pods themselves.
    anyOf(rule.resources, 'pods', '*', '*/*') &&
    (rule.scope === undefined || rule.scope === '*' || rule.scope === 'Namespaced')
  );
}

export function webhookMatchesPodCreate(webhook: V1MutatingWebhook): boolean {
  return (webhook.rules ?? []).some(ruleMatchesPodCreate);
}

/** Kubernetes label selector semantics; no selector (or an empty one) selects everything. */
export function selectorMatches(selector: V1LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    const ok =
      e.operator === 'In' ? has && values.includes(value as string)
        : e.operator === 'NotIn' ? !has || !values.includes(value as string)
          : e.operator === 'Exists' ? has
            : e.operator === 'DoesNotExist' ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

/** The PEM text of a caBundle field (base64 of PEM), or why it cannot be used. */
export function decodeCaBundle(caBundle: string | undefined): { pem?: string; problem?: string; certificate?: X509Certificate } {
  if (!caBundle) return { problem: 'it has no caBundle' };
  const pem = Buffer.from(caBundle, 'base64').toString('utf8');
  try {
    const certificate = firstPemCertificate(pem);
    if (!certificate) return { problem: 'its caBundle is not a base64-encoded PEM certificate' };
    return { pem, certificate };
  } catch (err) {
    return { problem: `its caBundle cannot be read: ${(err as Error).message}` };
  }
}

/** "CN=x, O=y": node prints one attribute per line. */
function oneLine(name: string): string {
  return name.split('\n').filter((s) => s !== '').join(', ');
}

/** Subject, names and validity of a certificate, for sentences. */
export function describeCertificate(cert: X509Certificate, now = new Date()): string {
  const sans = cert.subjectAltName ? `, SANs ${cert.subjectAltName.replace(/IP Address:/g, 'IP:')}` : ', no SANs';
  const until = new Date(cert.validTo);
  const validity = until.getTime() < now.getTime() ? `expired on ${formatDate(until)}` : `valid until ${formatDate(until)}`;
  return `subject ${oneLine(cert.subject)}${sans}, issued by ${oneLine(cert.issuer)}, ${validity}`;
}

const TLS_REASONS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'it was not issued by the caBundle\'s CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'it was not issued by the caBundle\'s CA',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'it is self-signed and not the caBundle',
  SELF_SIGNED_CERT_IN_CHAIN: 'its chain ends in a CA that is not the caBundle',
  CERT_HAS_EXPIRED: 'it has expired',
  CERT_NOT_YET_VALID: 'it is not valid yet',
  CERT_SIGNATURE_FAILURE: 'its signature does not verify',
};

/** The first HTTP status line of a raw response, e.g. "HTTP/1.1 200 OK" -> 200. */
function statusOf(head: string): number | undefined {
  const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(head);
  return m ? Number(m[1]) : undefined;
}

/**
 * Connects to a webhook URL as the API server would: the caBundle as the only
 * trusted CA (the system's roots when there is none), the URL's host as the
 * name to verify; then asks GET /healthz on that connection.
 */
export function probeWebhookUrl(url: string, caPem: string | undefined, timeoutMs: number): Promise<ProbeOutcome> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.resolve({ ok: false, reached: false, detail: `clientConfig.url "${url}" is not a URL` });
  }
  if (target.protocol !== 'https:') return Promise.resolve({ ok: false, reached: false, detail: `clientConfig.url ${url} must be https://` });
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  return probeServing({ host, port: Number(target.port || 443), name: host, caPem, timeoutMs, label: url });
}

export interface ServingProbe {
  /** Where to connect. */
  host: string;
  port: number;
  /** The name the certificate must be for (the API server's: the URL host, or <service>.<namespace>.svc). */
  name: string;
  caPem: string | undefined;
  timeoutMs: number;
  /** How the target is named in sentences. */
  label?: string;
}

/** Outcome of a probe; `reached` is false when no TLS handshake happened (refused, unreachable, timed out). */
export interface ProbeOutcome extends Outcome {
  reached: boolean;
  /** The handshake happened and the certificate verified for the name. */
  verified?: boolean;
}

/** TLS to host:port verified against the caBundle for `name`, then GET /healthz. */
export function probeServing(p: ServingProbe): Promise<ProbeOutcome> {
  const { host, port, name, caPem, timeoutMs } = p;
  const at = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  const label = p.label ?? at;
  const trust = caPem ? 'the caBundle' : 'the system\'s CAs (no caBundle)';

  return new Promise<ProbeOutcome>((resolve) => {
    let settled = false;
    const finish = (o: ProbeOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    // Verification is done by hand after the handshake, so the certificate can be described when it fails.
    const socket = tls.connect({
      host,
      port,
      ...(caPem ? { ca: [caPem] } : {}),
      ...(isIP(name) ? {} : { servername: name }),
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => finish({ ok: false, reached: false, detail: `${label}: no TLS answer within ${timeoutMs / 1000} s` }), timeoutMs);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      finish({ ok: false, reached: false, detail: `cannot connect to ${at}: ${err.code ?? err.message}` });
    });
    socket.once('secureConnect', () => {
      // One call: on Node 20, getPeerX509Certificate() first leaves getPeerCertificate() returning {}.
      const legacy = socket.getPeerCertificate();
      const peer = legacy.raw ? new X509Certificate(legacy.raw) : undefined;
      const presented = peer ? describeCertificate(peer) : 'no certificate';
      const code = String(socket.authorizationError ?? '');
      // Node checks the name only once the chain verified, and reports a mismatch as this code.
      const nameError = code === 'ERR_TLS_CERT_ALTNAME_INVALID' || (socket.authorized && tls.checkServerIdentity(name, legacy) !== undefined);
      if (nameError) {
        return finish({ ok: false, reached: true, detail: `the serving certificate at ${at} verifies with ${trust} but is not for ${name}; it presented ${presented}` });
      }
      if (!socket.authorized) {
        const why = TLS_REASONS[code] ?? code;
        return finish({ ok: false, reached: true, detail: `${trust} does not verify the serving certificate at ${at} (${why}); it presented ${presented}` });
      }
      let head = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        head += chunk;
        if (!head.includes('\r\n')) return;
        const status = statusOf(head);
        finish({
          ok: status !== undefined,
          reached: true,
          verified: true,
          detail: status !== undefined
            ? `${at} answered HTTP ${status} to GET /healthz over TLS that ${trust} verifies (${presented})`
            : `${at} completed TLS but did not answer HTTP`,
        });
      });
      socket.on('end', () => finish({ ok: false, reached: true, verified: true, detail: `${at} closed the connection without answering GET /healthz` }));
      socket.write(`GET /healthz HTTP/1.1\r\nHost: ${at}\r\nConnection: close\r\n\r\n`);
    });
  });
}
