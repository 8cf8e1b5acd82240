// Minimal HTTPS client for tests: real TLS against the test CA.
import { Agent, request } from 'node:https';

export interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  peerSerial?: string;
}

export function agent(ca: string, extra: { cert?: string; key?: string; keepAlive?: boolean } = {}): Agent {
  return new Agent({ ca, keepAlive: extra.keepAlive ?? true, maxSockets: 16, ...(extra.cert ? { cert: extra.cert, key: extra.key } : {}) });
}

export function send(
  port: number,
  method: 'GET' | 'POST',
  path: string,
  opts: { agent: Agent; body?: string | Buffer; contentType?: string | null },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.contentType !== null) headers['content-type'] = opts.contentType ?? 'application/json';
    const req = request({ host: '127.0.0.1', port, method, path, agent: opts.agent, headers }, (res) => {
      const peerSerial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate?.()?.serialNumber;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          headers: res.headers,
          peerSerial,
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

export function review(pod: unknown, over: Record<string, unknown> = {}, apiVersion = 'admission.k8s.io/v1'): string {
  return JSON.stringify({
    apiVersion,
    kind: 'AdmissionReview',
    request: {
      uid: 'uid-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'default',
      operation: 'CREATE',
      object: pod,
      ...over,
    },
  });
}
