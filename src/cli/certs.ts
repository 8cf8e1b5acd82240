// `certs`: creates (or keeps, or renews) the webhook's CA and serving
// certificate, and optionally puts the CA into the webhook configuration.
import { isIP } from 'node:net';
import { mkdirSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CERT_DEFAULTS } from '../config.js';
import type { KubeConnection } from '../kube/client.js';
import { KubeApiError, kubeRequest, PATCH } from '../kube/request.js';
import {
  canonicalIp,
  type CertificateResult,
  ensureCertificates,
  KEY_TYPES,
  type KeyType,
  serviceDnsNames,
} from '../tls/certificates.js';
import { addKubeConnectionFlags, durationFlag, isDnsLabel, kubeConfigFromFlags, listFlag, namespaceOption, UsageError } from './flags.js';
import type { CommandIO } from './mutate.js';

export interface CertsFlags {
  service: string;
  namespace: string;
  outDir: string;
  keyType: KeyType;
  days: string;
  renewBefore: string;
  dns?: string[];
  ip?: string[];
  patchWebhook?: string;
  kubeconfig?: string;
  kubeApi?: string;
  context?: string;
}

const DAY_MS = 86_400_000;

function checkLabel(flag: string, value: string): void {
  if (!isDnsLabel(value)) {
    throw new UsageError(`${flag} "${value}" is not a valid name (lower-case letters, digits and "-", at most 63)`);
  }
}

function checkDnsName(value: string): string {
  const name = value.toLowerCase();
  const labels = name.split('.');
  const ok = name.length <= 253 && labels.every((l, i) => (i === 0 && l === '*' && labels.length > 1) || isDnsLabel(l));
  if (!ok) throw new UsageError(`--dns "${value}" is not a valid DNS name`);
  return name;
}

function checkIp(value: string): string {
  if (isIP(value) === 0) throw new UsageError(`--ip "${value}" is not an IPv4 or IPv6 address`);
  return canonicalIp(value);
}

function parseDays(text: string): number {
  const days = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(days) || days <= 0) throw new UsageError(`--days "${text}" must be a positive whole number of days`);
  return days;
}

/** `30d` (days) or a Go duration such as `720h`; returns milliseconds. */
export function parseRenewBefore(text: string): number {
  const days = /^(\d+)d$/.exec(text);
  if (days) return Number(days[1]) * DAY_MS;
  // A bare number would be seconds to durationFlag; Go insists on a unit too.
  if (/^\d+(\.\d+)?$/.test(text) && Number(text) !== 0) {
    throw new UsageError(`--renew-before "${text}" needs a unit, such as 30d or 720h`);
  }
  try {
    return durationFlag(text);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new UsageError(`--renew-before "${text}": expected days such as 30d or a duration such as 720h`);
    throw err;
  }
}


/** The Kubernetes Status message of a failed call, or the error's own message. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof KubeApiError) {
    const message = safeMessage(err.body ?? '');
    return `HTTP ${err.status ?? '?'}${message ? `: ${message}` : ''}`;
  }
  return (err as Error).message;
}

function safeMessage(text: string): string | undefined {
  try {
    const message = (JSON.parse(text) as { message?: unknown } | null)?.message;
    return typeof message === 'string' ? message : undefined;
  } catch {
    return undefined;
  }
}

interface WebhookConfiguration {
  metadata?: { resourceVersion?: string };
  webhooks?: { clientConfig?: { caBundle?: string } }[] | null;
}

/** A request to the API server must not hold the command forever. */
const API_TIMEOUT_MS = 30_000;

/**
 * Sets every webhook's clientConfig.caBundle of a MutatingWebhookConfiguration.
 * A JSON patch touches only those fields (a read-modify-replace would drop
 * fields this program does not know); the resourceVersion test makes it fail
 * rather than patch the wrong webhook if the list changed.
 */
export async function patchWebhookCaBundle(kc: KubeConnection, name: string, caPem: string): Promise<{ updated: number; total: number }> {
  const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(name)}`;
  const bundle = Buffer.from(caPem).toString('base64');
  for (let attempt = 1; ; attempt++) {
    let config: WebhookConfiguration;
    try {
      config = ((await kubeRequest(kc, { path, signal: AbortSignal.timeout(API_TIMEOUT_MS) })).body ?? {});
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) throw new Error(`MutatingWebhookConfiguration "${name}" not found`);
      throw new Error(`cannot read MutatingWebhookConfiguration "${name}": ${apiErrorMessage(err)}`);
    }
    const webhooks = Array.isArray(config.webhooks) ? config.webhooks : [];
    if (webhooks.length === 0) throw new Error(`MutatingWebhookConfiguration "${name}" has no webhooks`);
    const stale = webhooks.flatMap((w, i) => (w.clientConfig?.caBundle === bundle ? [] : [i]));
    if (stale.length === 0) return { updated: 0, total: webhooks.length };
    const ops = [
      { op: 'test', path: '/metadata/resourceVersion', value: config.metadata?.resourceVersion },
      ...stale.map((i) => ({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: bundle })),
    ];
    try {
      await kubeRequest(kc, { method: 'PATCH', path, body: ops, contentType: PATCH.json, signal: AbortSignal.timeout(API_TIMEOUT_MS) });
      return { updated: stale.length, total: webhooks.length };
    } catch (err) {
      // A concurrent change fails the test operation (409/422): read again and retry.
      const conflict = err instanceof KubeApiError && (err.status === 409 || err.status === 422);
      if (!conflict || attempt >= 5) {
        throw new Error(`cannot patch MutatingWebhookConfiguration "${name}": ${apiErrorMessage(err)}`);
      }
    }
  }
}

export async function runCerts(flags: CertsFlags, io: CommandIO): Promise<CertificateResult> {
  checkLabel('--service', flags.service);
  const days = parseDays(flags.days);
  const renewBeforeMs = parseRenewBefore(flags.renewBefore);
  if (renewBeforeMs >= days * DAY_MS) {
    throw new UsageError(`--renew-before ${flags.renewBefore} must be shorter than --days ${days}, or every run would renew`);
  }
  if (!flags.outDir) throw new UsageError('--out-dir must not be empty');
  const dnsNames = [...new Set([...serviceDnsNames(flags.service, flags.namespace), ...(flags.dns ?? []).map(checkDnsName)])];
  const ipAddresses = [...new Set((flags.ip ?? []).map(checkIp))];
  // Credentials first: a bad --kubeconfig should not leave new files behind.
  const kc = flags.patchWebhook ? kubeConfigFromFlags(flags) : undefined;

  mkdirSync(flags.outDir, { recursive: true });
  const result = await ensureCertificates({
    outDir: flags.outDir,
    keyType: flags.keyType,
    dnsNames,
    ipAddresses,
    days,
    renewBeforeMs,
  });
  for (const f of result.files) io.stdout(`${f.path}: ${f.action} (${f.detail})`);

  if (kc && flags.patchWebhook) {
    const { updated, total } = await patchWebhookCaBundle(kc, flags.patchWebhook, result.ca.cert);
    const what = updated === 0 ? `caBundle already current in all ${total} webhook(s)` : `caBundle set in ${updated} of ${total} webhook(s)`;
    io.stdout(`mutatingwebhookconfiguration/${flags.patchWebhook}: ${what}`);
  } else if (result.caChanged) {
    io.stderr(`note: the CA is new; put ${flags.outDir}/ca.crt (base64) into the webhook configuration's caBundle, or rerun with --patch-webhook NAME`);
  }
  return result;
}

/** Failures that are not usage errors are reported in one line with exit code 1. */
export function reportFailure(err: unknown, io: CommandIO): void {
  // Programming errors keep their stack trace (the CLI prints it).
  if (err instanceof UsageError || err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError) throw err;
  io.stderr(`error: ${(err as Error).message ?? String(err)}`);
  process.exitCode = 1;
}

export function certsCommand(io: CommandIO): Command {
  const d = CERT_DEFAULTS;
  const cmd = new Command('certs')
    .description('create or renew the webhook\'s CA and serving certificate (kept while still valid)')
    .option('--service <name>', 'name of the webhook Service', d.service)
    .addOption(namespaceOption('namespace of the webhook Service', d.namespace))
    .option('--out-dir <dir>', 'where ca.crt, ca.key, tls.crt and tls.key are written', d.outDir)
    .addOption(new Option('--key-type <type>', 'key type: ec (P-256) or rsa (2048 bits)').choices(KEY_TYPES).default(d.keyType))
    .option('--days <days>', 'validity of a new serving certificate, in days', String(d.days))
    .option('--renew-before <duration>', 'renew certificates expiring within this time (30d, 720h)', `${d.renewBeforeDays}d`)
    .option('--dns <name>', 'extra DNS name for the serving certificate (repeatable)', listFlag)
    .option('--ip <address>', 'IP address for the serving certificate (repeatable)', listFlag)
    .option('--patch-webhook <name>', 'write the CA into the caBundle of every webhook of this MutatingWebhookConfiguration');
  return addKubeConnectionFlags(cmd, ' for --patch-webhook')
    .action(async (flags: CertsFlags) => {
      try {
        await runCerts(flags, io);
      } catch (err) {
        reportFailure(err, io);
      }
    });
}
