// Prometheus metrics of the webhook, on a registry of its own so tests and
// several servers in one process do not collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** bad_request: a 4xx for the request itself; forbidden: no trusted client certificate; error: a 5xx (a bug). */
export type AdmissionOutcome = 'mutated' | 'unchanged' | 'ignored' | 'bad_request' | 'forbidden' | 'error';

export interface WebhookMetrics {
  registry: Registry;
  admissions: Counter<'outcome'>;
  admissionDuration: Histogram<'outcome'>;
  podsMutated: Counter<'mode'>;
  cacheMisses: Counter<'outcome'>;
  cacheSize: Gauge;
  reflectorRestarts: Counter<'resource' | 'reason'>;
  reflectorLastSync: Gauge<'resource'>;
  certificateExpiry: Gauge;
  configReloads: Counter<'source' | 'result'>;
  certificateSteps: Counter<'step'>;
  certificateLeader: Gauge;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): WebhookMetrics {
  const registry = new Registry();
  const p = 'pod_identity_webhook_';
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    admissions: new Counter({ name: `${p}admission_requests_total`, help: 'Admission requests by outcome.', labelNames: ['outcome'], registers }),
    admissionDuration: new Histogram({
      name: `${p}admission_duration_seconds`,
      help: 'Time to answer an admission request, by outcome.',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    podsMutated: new Counter({ name: `${p}pods_mutated_total`, help: 'Pods given credentials, by mode.', labelNames: ['mode'], registers }),
    cacheMisses: new Counter({
      name: `${p}service_account_cache_misses_total`,
      help: 'ServiceAccounts not in the cache at admission, by how the lookup ended.',
      labelNames: ['outcome'],
      registers,
    }),
    cacheSize: new Gauge({ name: `${p}service_account_cache_size`, help: 'ServiceAccounts in the cache.', registers }),
    reflectorRestarts: new Counter({
      name: `${p}reflector_restarts_total`,
      help: 'List/watch restarts, by resource and reason.',
      labelNames: ['resource', 'reason'],
      registers,
    }),
    reflectorLastSync: new Gauge({
      name: `${p}reflector_last_sync_timestamp_seconds`,
      help: 'Unix time of the last successful list or watch event, by resource.',
      labelNames: ['resource'],
      registers,
    }),
    certificateExpiry: new Gauge({
      name: `${p}serving_certificate_expiry_timestamp_seconds`,
      help: 'Unix time at which the serving certificate expires.',
      registers,
    }),
    configReloads: new Counter({
      name: `${p}config_reloads_total`,
      help: 'Reloads of watched configuration (certificate, identities file, ConfigMap), by result.',
      labelNames: ['source', 'result'],
      registers,
    }),
    certificateSteps: new Counter({
      name: `${p}certificate_steps_total`,
      help: 'Steps of --manage-certificates carried out by this replica while it held the Lease, by step.',
      labelNames: ['step'],
      registers,
    }),
    certificateLeader: new Gauge({ name: `${p}certificate_leader`, help: '1 while this replica holds the certificate Lease (--manage-certificates), else 0.', registers }),
  };
}
