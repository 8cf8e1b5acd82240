// `serve`: the admission webhook the API server calls.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import pino from 'pino';
import { SERVER_DEFAULTS as S } from '../config.js';
import { StartupError, startWebhookServer, type WebhookServerOptions } from '../server/serve.js';
import { cipherList, tlsMinVersion } from '../tls/serving.js';
import {
  addMutationFlags,
  boolFlag,
  CommandError,
  timerFlag,
  intFlag,
  kubeConfigFromFlags,
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
  namespace: string;
  watchConfigMap: boolean;
  resyncPeriod: number;
  serviceAccountLookupGracePeriod: number;
  enableDebuggingHandlers: boolean;
  logLevel: string;
  maxRequestBodyBytes: number;
  shutdownTimeout: number;
  shutdownDelay: number;
  requestHeaderTimeout: number;
  requestTimeout: number;
  idleTimeout: number;
  maxConnections: number;
  maxRequestsPerConnection: number;
  maxInflightBodyBytes: number;
}

function portFlag(text: string): number {
  const n = intFlag(text);
  if (n < 0 || n > 65535) throw new UsageError(`port ${text} is out of range 0-65535`);
  return n;
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
    mutation: mutationOptionsFromFlags(f, warn),
    namespace: f.namespace,
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

async function runServe(f: ServeFlags): Promise<void> {
  // Buffered: a write per admission line costs a syscall and a thread-pool hop on
  // the hot path. Lines go out in 4 KiB batches, at least every second, and
  // before exit.
  const destination = pino.destination({ sync: false, minLength: 4096, periodicFlush: 1000 });
  const logger = pino({ level: f.logLevel, base: { service: 'pod-identity-webhook' } }, destination);
  const options = serveOptionsFromFlags(f, (m) => logger.warn(m));
  const kubeConfig = kubeConfigFromFlags(f);
  if (f.clientCa) {
    try {
      readFileSync(f.clientCa, 'utf8');
    } catch (err) {
      throw new UsageError(`--client-ca ${f.clientCa}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  let server;
  try {
    server = await startWebhookServer({ ...options, logger, kubeConfig });
  } catch (err) {
    destination.flushSync();
    if (err instanceof StartupError) throw new CommandError(err.message);
    throw err;
  }
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

export function serveCommand(): Command {
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
    .option('--kubeconfig <file>', 'kubeconfig to reach the API server (default: in-cluster)')
    .option('--kube-api <url>', 'URL of the API server (overrides the kubeconfig\'s)')
    .option('--namespace <namespace>', 'namespace of the pod-identity-webhook ConfigMap', S.namespace)
    .option('--watch-config-map [bool]', 'watch the pod-identity-webhook ConfigMap (ConfigMap mode)', boolFlag, false)
    .option('--resync-period <duration>', 'accepted for compatibility; the cache re-lists only when the watch requires it', timerFlag, S.resyncPeriodSeconds * 1000)
    .option('--service-account-lookup-grace-period <duration>', 'how long a pod waits for a ServiceAccount missing from the cache', timerFlag, S.serviceAccountLookupGracePeriodMs)
    .option('--enable-debugging-handlers [bool]', 'serve /debug/alpha/cache on the metrics port', boolFlag, false)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default(S.logLevel))
    .option('--max-request-body-bytes <bytes>', 'larger admission requests get 413', nonNegativeIntFlag, S.bodyLimitBytes)
    .option('--shutdown-timeout <duration>', 'how long in-flight requests may take after SIGTERM', timerFlag, S.shutdownTimeoutMs)
    .option('--shutdown-delay <duration>', 'after SIGTERM, keep serving (unready) this long so endpoints update first', timerFlag, 0)
    // Connection limits (README: "Connection limits and shutdown").
    .option('--request-header-timeout <duration>', 'the TLS handshake and a request\'s headers must arrive within this', timerFlag, S.requestHeaderTimeoutMs)
    .option('--request-timeout <duration>', 'a whole request, body included, must arrive within this (408 otherwise)', timerFlag, S.requestTimeoutMs)
    .option('--idle-timeout <duration>', 'close keep-alive connections idle this long', timerFlag, S.idleTimeoutMs)
    .option('--max-connections <n>', 'refuse connections beyond this many (0: no cap)', nonNegativeIntFlag, S.maxConnections)
    .option('--max-requests-per-connection <n>', 'close a keep-alive connection after this many requests (0: no cap)', nonNegativeIntFlag, S.maxRequestsPerConnection)
    .option('--max-inflight-body-bytes <bytes>', 'request bodies over 64 KiB are read only while their sizes together stay under this', nonNegativeIntFlag, S.maxInflightBodyBytes);
  addMutationFlags(cmd);
  return cmd.action((flags: ServeFlags) => runServe(flags));
}
