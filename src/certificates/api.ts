// The one door of --manage-certificates to the API server (GET, PUT, POST,
// PATCH with JSON), so that a change of HTTP client touches this file only.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { readBody, statusError } from '../kube/reflector-request.js';

export interface ApiResponse {
  statusCode: number;
  body: unknown;
}

/** Answers above this size are refused: our objects are a few KiB. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/**
 * One request; 2xx and 404/409 resolve (the caller decides: missing object,
 * lost update race), other statuses reject with a KubeApiError.
 */
export async function apiRequest(
  kc: KubeConfig,
  method: 'GET' | 'PUT' | 'POST' | 'PATCH',
  path: string,
  body?: unknown,
  contentType = 'application/json',
  timeoutMs = 10_000,
): Promise<ApiResponse> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const options: https.RequestOptions = {
    method,
    headers: { Accept: 'application/json', ...(payload !== undefined ? { 'Content-Type': contentType } : {}) },
  };
  await kc.applyToHTTPSOptions(options);
  const transport = url.protocol === 'https:' ? https : http;
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = transport.request(url, { ...options, signal: AbortSignal.timeout(timeoutMs) }, resolve);
    req.on('error', reject);
    req.end(payload);
  });
  const length = Number(res.headers['content-length'] ?? 0);
  if (length > MAX_RESPONSE_BYTES) {
    res.destroy();
    throw new Error(`${method} ${path}: answer of ${length} bytes refused`);
  }
  const text = await readBody(res);
  const statusCode = res.statusCode ?? 0;
  if ((statusCode >= 200 && statusCode < 300) || statusCode === 404 || statusCode === 409) {
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
    } catch {
      parsed = undefined;
    }
    return { statusCode, body: parsed };
  }
  throw statusError(statusCode, text, `${method} ${path}`);
}
