// The few API server reads `doctor` makes, as raw GETs with a deadline: a
// diagnosis tool must say "no answer" rather than hang on a dead endpoint,
// and the generated clients cannot be aborted.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export interface KubeAnswer {
  status: number;
  text: string;
  /** Parsed JSON, or undefined when the body is not JSON. */
  json: unknown;
}

export async function kubeGet(kc: KubeConfig, path: string, timeoutMs: number): Promise<KubeAnswer> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  // Appended, not resolved: the server URL may carry a path prefix.
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const options: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json, */*' } };
  await kc.applyToHTTPSOptions(options);
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise<KubeAnswer>((resolve, reject) => {
    const req = transport.request(url, { ...options, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.name === 'AbortError' || err.code === 'ABORT_ERR') reject(new Error(`GET ${path}: no answer within ${timeoutMs / 1000} s`));
      else reject(new Error(`GET ${path}: ${err.code ?? err.message}${err.code && err.message ? ` (${err.message})` : ''}`));
    });
    req.end();
  });
}

/** "HTTP 403: <the Status message>" for a failed answer. */
export function answerError(answer: KubeAnswer): string {
  const message = (answer.json as { message?: unknown } | undefined)?.message;
  const text = typeof message === 'string' ? message : answer.text.trim().slice(0, 200);
  return `HTTP ${answer.status}${text ? `: ${text}` : ''}`;
}
