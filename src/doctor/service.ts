// Where a service-backed webhook runs: its Service, the Service's ready
// endpoints (EndpointSlices, or Endpoints on older clusters), and the
// Deployment whose pods back it, whose container args are the webhook's
// flags. Each read has a deadline; what cannot be read is said, not guessed.
import type { KubeConnection } from '../kube/client.js';
import { answerError, kubeGet } from './kube.js';

export interface ServiceRef {
  namespace: string;
  name: string;
  port?: number;
}

export interface Endpoint {
  ip: string;
  port: number;
}

export type ServiceOutcome = 'missing' | 'no-port' | 'no-endpoints' | 'ready' | 'unknown';

export interface ServiceState {
  outcome: ServiceOutcome;
  /** One sentence. */
  detail: string;
  selector?: Record<string, string>;
  ready: Endpoint[];
}

export interface WebhookDeployment {
  /** "Deployment pod-identity-webhook/pod-identity-webhook, container webhook" */
  source: string;
  /** The webhook's flags: the container's command and args after `serve`. */
  args: string[];
}

interface PortSpec {
  name?: string;
  port?: number;
  targetPort?: number | string;
}

const selectorText = (s: Record<string, string>): string => Object.entries(s).map(([k, v]) => `${k}=${v}`).join(',');

/** Ready endpoints of the service port from EndpointSlices; undefined when they cannot be read. */
async function sliceEndpoints(kc: KubeConnection, svc: ServiceRef, portName: string, timeoutMs: number): Promise<{ ready: Endpoint[]; notReady: number } | undefined> {
  const selector = encodeURIComponent(`kubernetes.io/service-name=${svc.name}`);
  const answer = await kubeGet(kc, `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(svc.namespace)}/endpointslices?labelSelector=${selector}`, timeoutMs);
  if (answer.status !== 200) return undefined;
  type Slice = { ports?: Array<{ name?: string | null; port?: number }>; endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean | null } }> };
  const items = (answer.json as { items?: Slice[] } | undefined)?.items ?? [];
  const ready: Endpoint[] = [];
  let notReady = 0;
  for (const slice of items) {
    const port = (slice.ports ?? []).find((p) => (p.name ?? '') === portName)?.port;
    for (const e of slice.endpoints ?? []) {
      // A missing ready condition means ready (the API's rule).
      if (e.conditions?.ready === false || port === undefined) notReady++;
      else for (const ip of (e.addresses ?? []).slice(0, 1)) ready.push({ ip, port });
    }
  }
  return { ready, notReady };
}

/** The same from the older Endpoints object. */
async function legacyEndpoints(kc: KubeConnection, svc: ServiceRef, portName: string, timeoutMs: number): Promise<{ ready: Endpoint[]; notReady: number } | string> {
  const answer = await kubeGet(kc, `/api/v1/namespaces/${encodeURIComponent(svc.namespace)}/endpoints/${encodeURIComponent(svc.name)}`, timeoutMs);
  if (answer.status === 404) return { ready: [], notReady: 0 };
  if (answer.status !== 200) return answerError(answer);
  type Subset = { addresses?: Array<{ ip: string }>; notReadyAddresses?: unknown[]; ports?: Array<{ name?: string; port: number }> };
  const subsets = (answer.json as { subsets?: Subset[] } | undefined)?.subsets ?? [];
  const ready: Endpoint[] = [];
  let notReady = 0;
  for (const s of subsets) {
    const port = (s.ports ?? []).find((p) => (p.name ?? '') === portName)?.port;
    notReady += (s.notReadyAddresses ?? []).length;
    for (const a of s.addresses ?? []) {
      if (port === undefined) notReady++;
      else ready.push({ ip: a.ip, port });
    }
  }
  return { ready, notReady };
}

/** Does the Service exist, serve the port, and have ready endpoints behind it? */
export async function serviceState(kc: KubeConnection, svc: ServiceRef, timeoutMs: number): Promise<ServiceState> {
  const port = svc.port ?? 443;
  const who = `Service ${svc.namespace}/${svc.name}`;
  let answer;
  try {
    answer = await kubeGet(kc, `/api/v1/namespaces/${encodeURIComponent(svc.namespace)}/services/${encodeURIComponent(svc.name)}`, timeoutMs);
  } catch (err) {
    return { outcome: 'unknown', detail: `cannot read the ${who}: ${(err as Error).message}`, ready: [] };
  }
  if (answer.status === 404) {
    return { outcome: 'missing', detail: `the ${who} that the webhook configuration names does not exist, so the API server cannot call the webhook`, ready: [] };
  }
  if (answer.status !== 200) return { outcome: 'unknown', detail: `cannot read the ${who}: ${answerError(answer)}`, ready: [] };
  const spec = (answer.json as { spec?: { ports?: PortSpec[]; selector?: Record<string, string>; type?: string } }).spec ?? {};
  const selector = spec.selector;
  const ports = spec.ports ?? [];
  const match = ports.find((p) => p.port === port);
  if (!match) {
    const has = ports.map((p) => p.port).join(', ') || 'none';
    return { outcome: 'no-port', detail: `the ${who} has no port ${port}, which the webhook configuration names (its ports: ${has})`, ...(selector ? { selector } : {}), ready: [] };
  }
  if (spec.type === 'ExternalName') return { outcome: 'unknown', detail: `the ${who} is an ExternalName Service`, ready: [] };

  let found: { ready: Endpoint[]; notReady: number } | string;
  try {
    found = (await sliceEndpoints(kc, svc, match.name ?? '', timeoutMs)) ?? (await legacyEndpoints(kc, svc, match.name ?? '', timeoutMs));
  } catch (err) {
    found = (err as Error).message;
  }
  const sel = selector ? { selector } : {};
  if (typeof found === 'string') return { outcome: 'unknown', detail: `the ${who} exists; its endpoints cannot be read: ${found}`, ...sel, ready: [] };
  if (found.ready.length === 0) {
    const why = found.notReady > 0
      ? `${found.notReady} endpoint(s) are not ready: the webhook's pods are starting, failing /readyz or crashing`
      : selector ? `no running pod matches its selector ${selectorText(selector)}` : 'it has no selector and no endpoints';
    const look = selector ? ` (kubectl -n ${svc.namespace} get pods -l ${selectorText(selector)})` : '';
    return { outcome: 'no-endpoints', detail: `the ${who} exists but has no ready endpoints: ${why}${look}`, ...sel, ready: [] };
  }
  return { outcome: 'ready', detail: `the ${who} has ${found.ready.length} ready endpoint(s)`, ...sel, ready: found.ready };
}

/** The tokens after `serve` in a container's command and args (its args when neither says `serve`). */
export function webhookArgs(container: { command?: string[]; args?: string[] }): string[] {
  const all = [...(container.command ?? []), ...(container.args ?? [])].filter((a) => typeof a === 'string');
  const at = all.indexOf('serve');
  // The image's entrypoint already says `serve`; then args are the flags.
  return at >= 0 ? all.slice(at + 1) : (container.args ?? []);
}

/** The Deployment in the Service's namespace whose pods the Service selects, and its webhook container's flags. */
export async function webhookDeployment(kc: KubeConnection, namespace: string, selector: Record<string, string>, timeoutMs: number): Promise<WebhookDeployment | undefined> {
  const answer = await kubeGet(kc, `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`, timeoutMs);
  if (answer.status !== 200) return undefined;
  type Container = { name?: string; command?: string[]; args?: string[]; image?: string };
  type Deployment = { metadata?: { name?: string }; spec?: { template?: { metadata?: { labels?: Record<string, string> }; spec?: { containers?: Container[] } } } };
  const items = (answer.json as { items?: Deployment[] } | undefined)?.items ?? [];
  const deployment = items.find((d) => {
    const labels = d.spec?.template?.metadata?.labels ?? {};
    return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
  });
  const containers = deployment?.spec?.template?.spec?.containers ?? [];
  const container = containers.find((c) => [...(c.command ?? []), ...(c.args ?? [])].includes('serve'))
    ?? containers.find((c) => (c.image ?? '').includes('pod-identity-webhook'))
    ?? containers[0];
  if (!deployment || !container) return undefined;
  return { source: `Deployment ${namespace}/${deployment.metadata?.name ?? ''}, container ${container.name ?? ''}`, args: webhookArgs(container) };
}
