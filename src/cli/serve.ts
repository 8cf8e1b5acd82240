// `serve`: the admission webhook the API server calls.
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Command, Option } from 'commander';
import { bufferedDestination, createLogger, LOG_FORMATS, type LogFormat } from '../server/log.js';
import { MANAGED_CERT_DEFAULTS as M, SERVER_DEFAULTS as S } from '../config.js';
import type { ManagedCertificateSettings } from '../certificates/controller.js';
import {
  ACCOUNT_ID,
  PARTITION,
  type RoleArnComposition,
} from '../settings/role-arn.js';
import { compositionFromInstanceMetadata, instanceMetadataEndpoint } from '../identity/instance-metadata.js';
import { StartupError, startWebhookServer, type WebhookServerOptions } from '../server/serve.js';
import { capYoungGeneration } from '../server/heap.js';
import { onFirstAdmission } from '../server/app.js';
import { cipherList, tlsMinVersion } from '../tls/serving.js';
import {
  addKubeConnectionFlags,
  addMutationFlags,
  boolFlag,
  CommandError,
  durationFlag,
  durationOption,
  formatGoDuration,
  timerFlag,
  intFlag,
  isDnsLabel,
  isDnsSubdomain,
  kubeConfigFromFlags,
  listFlag,
  type MutationFlagValues,
  mutationOptionsFromFlags,
  nonNegativeIntFlag,
  UsageError,
} from './flags.js';

interface ServeFlags extends MutationFlagValues {
  port: number;
  metricsPort: number;
  bindAddress: string;
  tlsCert: string;
  tlsKey: string;
  tlsMinVersion: string;
  tlsCipherSuites?: string;
  clientCa?: string;
  kubeconfig?: string;
  kubeApi?: string;
  context?: string;
  /** Unset: kubectl's order; true: the pod's ServiceAccount; false: as unset (certificates come from files either way). */
  inCluster?: boolean;
  namespace?: string;
  composeRoleArn: boolean;
  awsAccountId?: string;
  awsPartition: string;
  watchConfigMap: boolean;
  resyncPeriod: number;
  serviceAccountLookupGracePeriod: number;
  enableDebuggingHandlers: boolean;
  logLevel: string;
  logFormat: LogFormat;
  maxRequestBodyBytes: number;
  shutdownTimeout: number;
  shutdownDelay: number;
  requestHeaderTimeout: number;
  requestTimeout: number;
  idleTimeout: number;
  maxConnections: number;
  maxRequestsPerConnection: number;
  maxInflightBodyBytes: number;
  manageCertificates: boolean;
  tlsSecret: string;
  serviceName: string;
  leaseName: string;
  webhookConfigurationName: string;
  caLifetime: number;
  certificateLifetime: number;
  caOverlap: number;
  leaseDuration: number;
  certificateDnsNames: string[];
  certificateIpAddresses: string[];
}

function portFlag(text: string): number {
  const n = intFlag(text);
  if (n < 0 || n > 65535) throw new UsageError(`port ${text} is out of range 0-65535`);
  return n;
}

/** Where a pod finds its own namespace. */
const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The namespace the webhook runs in (the reference calls --namespace that), else `default`. */
export function defaultNamespace(file = POD_NAMESPACE_FILE): string {
  try {
    return existsSync(file) ? readFileSync(file, 'utf8').trim() || S.namespace : S.namespace;
  } catch {
    return S.namespace;
  }
}

const COMPAT_GROUP = 'Accepted for compatibility with the reference webhook, without effect here:';

/** A klog level: `-v=2` reaches the parser as "=2" (commander's short-option form), which pflag reads as 2. */
function klogLevel(text: string): number {
  return nonNegativeIntFlag(text.replace(/^=/, ''));
}

/**
 * Flags of the reference webhook (its klog flags, and its certificate-request
 * mode) that change nothing here. They are parsed like the reference parses them,
 * so a manifest written for it starts unchanged, and each one given is logged once.
 */
function compatibilityOptions(): Option[] {
  const bool = (flags: string, what: string): Option => new Option(`${flags} [bool]`, what).argParser(boolFlag);
  const text = (flags: string, what: string): Option => new Option(flags, what);
  return [
    bool('--logtostderr', 'klog: log to stderr (logs are JSON lines on stdout here)'),
    bool('--alsologtostderr', 'klog'),
    new Option('-v, --v <level>', 'klog verbosity (use --log-level here)').argParser(klogLevel),
    text('--vmodule <list>', 'klog'),
    text('--log_dir, --log-dir <dir>', 'klog'),
    text('--log_file, --log-file <file>', 'klog'),
    new Option('--log_file_max_size, --log-file-max-size <mb>', 'klog').argParser(nonNegativeIntFlag),
    text('--stderrthreshold <severity>', 'klog'),
    text('--log_backtrace_at, --log-backtrace-at <file:line>', 'klog'),
    bool('--add_dir_header, --add-dir-header', 'klog'),
    bool('--one_output, --one-output', 'klog'),
    bool('--skip_headers, --skip-headers', 'klog'),
    bool('--skip_log_headers, --skip-log-headers', 'klog'),
  ].map((o) => o.helpGroup(COMPAT_GROUP));
}

const MANAGED_GROUP = 'Self-managed certificates (--manage-certificates):';

/**
 * The flags this command line gave that change nothing, as written (`--logtostderr`,
 * `-v`): the compatibility flags, and the certificate flags without --manage-certificates.
 */
export function ineffectiveFlagsGiven(cmd: Command): string[] {
  const managed = cmd.getOptionValue('manageCertificates') === true;
  return cmd.options
    .filter((o) => o.helpGroupHeading === COMPAT_GROUP || (!managed && o.helpGroupHeading === MANAGED_GROUP && o.attributeName() !== 'manageCertificates'))
    .filter((o) => cmd.getOptionValueSource(o.attributeName()) === 'cli')
    .map((o) => o.long ?? o.short ?? o.flags);
}

/** Repeatable, comma-separated list flags. */
function managedOptions(): Option[] {
  const duration = (flags: string, what: string, defaultMs: number): Option => durationOption(flags, what, defaultMs, durationFlag);
  return [
    new Option('--manage-certificates [bool]', 'create, publish and rotate the serving certificate: a CA and certificate in the Secret --tls-secret, the CA bundle in the webhook configuration, one replica (the Lease holder) at a time').argParser(boolFlag).default(false),
    new Option('--tls-secret <name>', 'Secret (in --namespace) holding the CA and serving certificate').default(M.secretName),
    new Option('--service-name <name>', 'Service of the webhook: the certificate is for <name>, <name>.<namespace>, <name>.<namespace>.svc and <name>.<namespace>.svc.cluster.local').default(M.serviceName),
    new Option('--lease-name <name>', 'coordination.k8s.io Lease (in --namespace) electing the replica that creates and rotates').default(M.leaseName),
    new Option('--webhook-configuration-name <name>', 'MutatingWebhookConfiguration whose webhooks get the CA bundle').default(M.webhookConfigurationName),
    duration('--ca-lifetime <duration>', 'validity of a new CA; a new one is made when 2/3 of it has passed', M.caLifetimeMs),
    duration('--certificate-lifetime <duration>', 'validity of a serving certificate (at most the CA\'s); renewed when 2/3 of it has passed', M.certificateLifetimeMs),
    duration('--ca-overlap <duration>', 'during a CA rotation: how long the new CA is trusted before it is served, and the old one after', M.caOverlapMs),
    duration('--lease-duration <duration>', 'the Lease expires this long after its holder\'s last renewal (renewed every third of it)', M.leaseDurationSeconds * 1000),
    new Option('--certificate-dns-names <names>', 'more DNS names for the serving certificate (comma-separated, repeatable)').argParser(listFlag).default([], 'none'),
    new Option('--certificate-ip-addresses <addresses>', 'IP addresses for the serving certificate, for a webhook configuration that calls a URL (comma-separated, repeatable)').argParser(listFlag).default([], 'none'),
  ].map((o) => o.helpGroup(MANAGED_GROUP));
}

function objectName(flag: string, value: string, label = false): string {
  const ok = label ? isDnsLabel(value) : isDnsSubdomain(value);
  if (!ok) throw new UsageError(`${flag} "${value}" is not a valid ${label ? 'Service' : 'object'} name (lower-case letters, digits, "-"${label ? '' : ' and "."'})`);
  return value;
}

/** The smallest lifetime: shorter ones leave no time to hand out a certificate before it is due again. */
const MIN_LIFETIME_MS = 10_000;

export function managedSettingsFromFlags(f: ServeFlags): ManagedCertificateSettings {
  for (const [flag, ms] of [['--ca-lifetime', f.caLifetime], ['--certificate-lifetime', f.certificateLifetime]] as const) {
    if (ms < MIN_LIFETIME_MS) throw new UsageError(`${flag} ${formatGoDuration(ms)} is too short (at least ${formatGoDuration(MIN_LIFETIME_MS)})`);
  }
  if (f.caLifetime < 9 * f.caOverlap) {
    throw new UsageError(`--ca-lifetime ${formatGoDuration(f.caLifetime)} must be at least 9 times --ca-overlap ${formatGoDuration(f.caOverlap)}: a CA rotation (two overlaps) happens in the last third of the CA's life`);
  }
  if (f.leaseDuration < 3000) throw new UsageError(`--lease-duration ${formatGoDuration(f.leaseDuration)} is too short (at least 3s)`);
  if (f.leaseDuration > 3_600_000) throw new UsageError(`--lease-duration ${formatGoDuration(f.leaseDuration)} is too long (at most 1h)`);
  for (const ip of f.certificateIpAddresses) if (isIP(ip) === 0) throw new UsageError(`--certificate-ip-addresses: "${ip}" is not an IP address`);
  for (const name of f.certificateDnsNames) {
    if (name.length > 253 || !name.split('.').every((p) => /^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/i.test(p))) throw new UsageError(`--certificate-dns-names: "${name}" is not a DNS name`);
  }
  return {
    secretName: objectName('--tls-secret', f.tlsSecret),
    leaseName: objectName('--lease-name', f.leaseName),
    webhookConfigurationName: objectName('--webhook-configuration-name', f.webhookConfigurationName),
    serviceName: objectName('--service-name', f.serviceName, true),
    extraDnsNames: f.certificateDnsNames,
    ipAddresses: f.certificateIpAddresses,
    caLifetimeMs: f.caLifetime,
    certificateLifetimeMs: f.certificateLifetime,
    renewFraction: M.renewFraction,
    caOverlapMs: f.caOverlap,
    leaseDurationSeconds: Math.ceil(f.leaseDuration / 1000),
    leaseRenewMs: Math.floor(f.leaseDuration / 3),
  };
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export function serveOptionsFromFlags(f: ServeFlags, warn: (m: string) => void): Omit<WebhookServerOptions, 'logger' | 'kubeConfig'> {
  if (!LOG_LEVELS.includes(f.logLevel)) throw new UsageError(`--log-level ${f.logLevel}: expected one of ${LOG_LEVELS.join(', ')}`);
  let minVersion;
  let ciphers;
  try {
    minVersion = tlsMinVersion(f.tlsMinVersion);
    ciphers = f.tlsCipherSuites ? cipherList(f.tlsCipherSuites) : undefined;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (f.maxRequestBodyBytes < 1024) throw new UsageError('--max-request-body-bytes must be at least 1024');
  if (f.requestHeaderTimeout <= 0 || f.requestTimeout <= 0 || f.idleTimeout <= 0) {
    throw new UsageError('--request-header-timeout, --request-timeout and --idle-timeout must be more than 0');
  }
  if (f.requestHeaderTimeout > f.requestTimeout) throw new UsageError('--request-header-timeout must not be longer than --request-timeout');
  return {
    port: f.port,
    metricsPort: f.metricsPort,
    host: f.bindAddress,
    tls: { certFile: f.tlsCert, keyFile: f.tlsKey, clientCaFile: f.clientCa, minVersion, ciphers },
    managedCertificates: f.manageCertificates ? managedSettingsFromFlags(f) : undefined,
    mutation: mutationOptionsFromFlags(f, warn),
    namespace: f.namespace ?? defaultNamespace(),
    watchConfigMap: f.watchConfigMap,
    containerCredentialsFile: f.watchContainerCredentialsConfig,
    lookupGracePeriodMs: f.serviceAccountLookupGracePeriod,
    debuggingHandlers: f.enableDebuggingHandlers,
    bodyLimit: f.maxRequestBodyBytes,
    limits: {
      headersTimeoutMs: f.requestHeaderTimeout,
      requestTimeoutMs: f.requestTimeout,
      idleTimeoutMs: f.idleTimeout,
      maxConnections: f.maxConnections,
      maxRequestsPerConnection: f.maxRequestsPerConnection,
      inflightBodyBytes: f.maxInflightBodyBytes,
    },
    shutdownTimeoutMs: f.shutdownTimeout,
    shutdownDelayMs: f.shutdownDelay,
  };
}

/** How long instance metadata may take to say which account and partition this is. */
const INSTANCE_METADATA_TIMEOUT_MS = 5000;

/**
 * --compose-role-arn: the account and partition from --aws-account-id and
 * --aws-partition, or else from EC2 instance metadata (as the reference).
 */
export async function roleArnCompositionFromFlags(
  f: Pick<ServeFlags, 'composeRoleArn' | 'awsAccountId' | 'awsPartition'>,
  partitionGiven: boolean,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<RoleArnComposition | undefined> {
  if (f.awsAccountId !== undefined && !ACCOUNT_ID.test(f.awsAccountId)) throw new UsageError(`--aws-account-id "${f.awsAccountId}" is not a 12-digit AWS account id`);
  if (!PARTITION.test(f.awsPartition)) throw new UsageError(`--aws-partition "${f.awsPartition}" is not a partition such as aws, aws-cn or aws-us-gov`);
  if (!f.composeRoleArn) return undefined;
  if (f.awsAccountId !== undefined) return { partition: f.awsPartition, accountId: f.awsAccountId };
  const endpoint = instanceMetadataEndpoint(env);
  try {
    const found = await compositionFromInstanceMetadata(endpoint, INSTANCE_METADATA_TIMEOUT_MS);
    return partitionGiven ? { ...found, partition: f.awsPartition } : found;
  } catch (err) {
    throw new CommandError(`--compose-role-arn needs the AWS account: give --aws-account-id (and --aws-partition), or run on EC2 (${(err as Error).message})`);
  }
}

async function runServe(f: ServeFlags, cmd: Command): Promise<void> {
  const destination = bufferedDestination();
  const logger = createLogger({ level: f.logLevel, format: f.logFormat, destination });
  // Log lines are buffered: a crash must not lose the ones that explain it.
  const fatal = (err: unknown, what: string): void => {
    logger.fatal({ err }, what);
    destination.flushSync();
    process.exit(1);
  };
  process.once('uncaughtException', (err) => fatal(err, 'uncaught exception'));
  process.once('unhandledRejection', (err) => fatal(err, 'unhandled promise rejection'));
  const options = serveOptionsFromFlags(f, (m) => logger.warn(m));
  const kubeConfig = kubeConfigFromFlags(f);
  const roleArnComposition = await roleArnCompositionFromFlags(f, cmd.getOptionValueSource('awsPartition') === 'cli');
  if (roleArnComposition) logger.info(roleArnComposition, '--compose-role-arn: bare role names in role-arn annotations are completed with this account');
  for (const flag of ineffectiveFlagsGiven(cmd)) {
    logger.info({ flag }, 'flag accepted for compatibility with the reference webhook; it has no effect here');
  }
  if (f.manageCertificates) {
    const given = ['tlsCert', 'tlsKey'].filter((k) => cmd.getOptionValueSource(k) === 'cli').map((k) => (k === 'tlsCert' ? '--tls-cert' : '--tls-key'));
    if (given.length > 0) logger.warn({ flags: given }, '--manage-certificates: the certificate comes from the Secret; --tls-cert and --tls-key are ignored');
  }
  if (f.inCluster === true && !f.manageCertificates) {
    logger.info({ tlsCert: f.tlsCert, tlsKey: f.tlsKey }, '--in-cluster=true: API access with the pod\'s ServiceAccount; the serving certificate still comes from --tls-cert/--tls-key (no certificate request)');
  }
  if (f.clientCa) {
    try {
      readFileSync(f.clientCa, 'utf8');
    } catch (err) {
      throw new UsageError(`--client-ca ${f.clientCa}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  let server;
  try {
    server = await startWebhookServer({ ...options, logger, kubeConfig, roleArnComposition });
  } catch (err) {
    destination.flushSync();
    if (err instanceof StartupError) throw new CommandError(err.message);
    throw err;
  }
  // Admissions, not start-up, may grow the young generation (server/heap.ts).
  onFirstAdmission(server.app.server, () => capYoungGeneration());
  const stop = (signal: string): void => {
    logger.info({ signal }, 'shutting down');
    server.shutdown().then(
      () => {
        destination.flushSync();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'shutdown failed');
        destination.flushSync();
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

export function serveCommand(version?: string): Command {
  const cmd = new Command('serve')
    .description('run the admission webhook (HTTPS /mutate, /healthz, /readyz; metrics on a separate port)')
    .option('--port <port>', 'HTTPS port of /mutate, /healthz and /readyz', portFlag, S.port)
    .option('--metrics-port <port>', 'plain-HTTP port of /metrics (and debug handlers)', portFlag, S.metricsPort)
    .option('--bind-address <address>', 'address both ports listen on', '0.0.0.0')
    .option('--tls-cert <file>', 'serving certificate (PEM); reloaded when it changes', S.tlsCert)
    .option('--tls-key <file>', 'serving private key (PEM); reloaded when it changes', S.tlsKey)
    .option('--tls-min-version <version>', 'minimum TLS version: 1.0, 1.1, 1.2 or 1.3', S.tlsMinVersion)
    .option('--tls-cipher-suites <list>', 'comma-separated Go names of TLS 1.2 cipher suites (default: Node\'s)')
    .option('--client-ca <file>', 'require client certificates signed by this CA (PEM)')
    .option('--in-cluster [bool]', 'true: reach the API server with the pod\'s own ServiceAccount (unless --kubeconfig); unset or false: as kubectl does. The certificate comes from --tls-cert/--tls-key either way', boolFlag)
    .option('--namespace <namespace>', `namespace of the pod-identity-webhook ConfigMap (default: the pod's own namespace, else ${S.namespace})`)
    .option('--compose-role-arn [bool]', 'complete a role-arn annotation that is only a role name or path to a full ARN', boolFlag, false)
    .option('--aws-account-id <id>', 'account of --compose-role-arn (default: EC2 instance metadata)')
    .option('--aws-partition <partition>', 'partition of --compose-role-arn (default: aws, or from instance metadata\'s region)', S.awsPartition)
    .option('--watch-config-map [bool]', 'watch the pod-identity-webhook ConfigMap (ConfigMap mode)', boolFlag, false)
    .addOption(durationOption('--resync-period <duration>', 'accepted for compatibility; the cache re-lists only when the watch requires it', S.resyncPeriodSeconds * 1000, timerFlag))
    .addOption(durationOption('--service-account-lookup-grace-period <duration>', 'how long a pod waits for a ServiceAccount missing from the cache', S.serviceAccountLookupGracePeriodMs, timerFlag))
    .option('--enable-debugging-handlers [bool]', 'serve /debug/alpha/cache on the metrics port', boolFlag, false)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default(S.logLevel))
    .addOption(new Option('--log-format <format>', 'json (one object per line) or text (one readable line per event)').choices(LOG_FORMATS).default(S.logFormat))
    .option('--max-request-body-bytes <bytes>', 'larger admission requests get 413', nonNegativeIntFlag, S.bodyLimitBytes)
    .addOption(durationOption('--shutdown-timeout <duration>', 'how long in-flight requests may take after SIGTERM', S.shutdownTimeoutMs, timerFlag))
    .addOption(durationOption('--shutdown-delay <duration>', 'after SIGTERM, keep serving (unready) this long so endpoints update first', 0, timerFlag))
    // Connection limits (README: "Connection limits and shutdown").
    .addOption(durationOption('--request-header-timeout <duration>', 'the TLS handshake and a request\'s headers must arrive within this', S.requestHeaderTimeoutMs, timerFlag))
    .addOption(durationOption('--request-timeout <duration>', 'a whole request, body included, must arrive within this (408 otherwise)', S.requestTimeoutMs, timerFlag))
    .addOption(durationOption('--idle-timeout <duration>', 'close keep-alive connections idle this long', S.idleTimeoutMs, timerFlag))
    .option('--max-connections <n>', 'refuse connections beyond this many (0: no cap)', nonNegativeIntFlag, S.maxConnections)
    .option('--max-requests-per-connection <n>', 'close a keep-alive connection after this many requests (0: no cap)', nonNegativeIntFlag, S.maxRequestsPerConnection)
    .option('--max-inflight-body-bytes <bytes>', 'request bodies over 64 KiB are read only while their sizes together stay under this', nonNegativeIntFlag, S.maxInflightBodyBytes);
  addKubeConnectionFlags(cmd, ' to reach the API server');
  addMutationFlags(cmd);
  for (const option of managedOptions()) cmd.addOption(option);
  for (const option of compatibilityOptions()) cmd.addOption(option);
  if (version) cmd.version(version, '--version', 'print the version');
  return cmd.action((flags: ServeFlags, command: Command) => runServe(flags, command));
}
