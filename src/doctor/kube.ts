// The few API server reads `doctor` makes, with a deadline: a diagnosis tool
// must say "no answer" rather than hang on a dead endpoint.
import type { KubeConnection } from '../kube/client.js';
import { KubeApiError, kubeRequest } from '../kube/request.js';

export interface KubeAnswer {
  status: number;
  text: string;
  /** Parsed JSON, or undefined when the body is not JSON. */
  json: unknown;
}

/** No answer within the deadline: the endpoint hangs, or something drops the traffic. */
export class KubeTimeoutError extends Error {}

/** Every answer, whatever its status; only no answer at all (or none in time) throws. */
export async function kubeGet(kc: KubeConnection, path: string, timeoutMs: number): Promise<KubeAnswer> {
  try {
    const { status, body } = await kubeRequest(kc, { path, accept: 'application/json, */*', signal: AbortSignal.timeout(timeoutMs) });
    return typeof body === 'string' ? { status, text: body, json: undefined } : { status, text: JSON.stringify(body ?? ''), json: body };
  } catch (err) {
    if (err instanceof KubeApiError) {
      const text = err.body ?? '';
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: err.status ?? 0, text, json };
    }
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError' || e.name === 'TimeoutError' || e.code === 'ABORT_ERR') throw new KubeTimeoutError(`GET ${path}: no answer within ${timeoutMs / 1000} s`);
    throw new Error(`GET ${path}: ${e.code ?? e.message}${e.code && e.message ? ` (${e.message})` : ''}`);
  }
}

/** "HTTP 403: <the Status message>" for a failed answer. */
export function answerError(answer: KubeAnswer): string {
  const message = (answer.json as { message?: unknown } | undefined)?.message;
  const text = typeof message === 'string' ? message : answer.text.trim().slice(0, 200);
  return `HTTP ${answer.status}${text ? `: ${text}` : ''}`;
}
