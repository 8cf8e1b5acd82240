// Starts and stops everything `serve` runs: identity caches, the HTTPS app
// (with certificate reload), the metrics app, and graceful shutdown.
import { readFileSync } from 'node:fs';
import type { X509Certificate } from 'node:crypto';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import Fastify from 'fastify';
import type { Logger } from 'pino';
import type { ManagedCertificates, ManagedCertificateSettings } from '../certificates/controller.js';
import type { KubeConnection } from '../kube/client.js';
import type { MutationOptions } from '../config.js';
import { type FileWatch, watchFiles } from '../files/watch.js';
import type { RoleArnComposition } from '../settings/role-arn.js';
import { type ClientVerdict, peerChain, verifyClientChain } from '../tls/client-auth.js';
import { servingMaterial } from '../tls/serving.js';
import { buildWebhookApp, type ConnectionLimits, DEFAULT_LIMITS, type Readiness, type WebhookApp, WITHOUT_SCHEMAS } from './app.js';
import { type IdentityRuntime, startIdentityRuntime } from './identities.js';
import { createMetrics, type WebhookMetrics } from './metrics.js';

/** The server could not start; one line says why. */
export class StartupError extends Error {}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile?: string | undefined;
  minVersion?: SecureContextOptions['minVersion'];
  ciphers?: string | undefined;
}

export interface WebhookServerOptions {
  port: number;
  metricsPort: number;
  host: string;
  tls: TlsFiles;
  /** --manage-certificates: the serving certificate comes from this Secret, not from tls.certFile/keyFile. */
  managedCertificates?: ManagedCertificateSettings | undefined;
  mutation: MutationOptions;
  namespace: string;
  watchConfigMap: boolean;
  containerCredentialsFile?: string | undefined;
  lookupGracePeriodMs: number;
  /** --compose-role-arn: how bare role names are completed. */
  roleArnComposition?: RoleArnComposition | undefined;
  debuggingHandlers: boolean;
  bodyLimit: number;
  /** Timeouts and caps of the HTTPS server; DEFAULT_LIMITS when not given. */
  limits?: ConnectionLimits | undefined;
  shutdownTimeoutMs: number;
  shutdownDelayMs: number;
  logger: Logger;
  kubeConfig?: KubeConnection | undefined;
  /** Tests may bring their own identities instead of a live cluster. */
  identityRuntime?: IdentityRuntime;
  /** How often files are polled besides fs.watch. */
  filePollMs?: number;
}

export interface WebhookServer {
  app: WebhookApp;
  metricsApp: ReturnType<typeof Fastify>;
  metrics: WebhookMetrics;
  port: number;
  metricsPort: number;
  /** Re-reads the certificate files now (they are also watched). */
  reloadCertificate(): void;
  shutdown(): Promise<void>;
}

function readTls(tls: TlsFiles): string[] {
  const files = [tls.certFile, tls.keyFile, ...(tls.clientCaFile ? [tls.clientCaFile] : [])];
  return files.map((f) => readFileSync(f, 'utf8'));
}

export async function startWebhookServer(o: WebhookServerOptions): Promise<WebhookServer> {
  const { logger } = o;
  const metrics = createMetrics();
  let certificateLoaded = false;
  let clientCas: X509Certificate[] = [];
  // A connection's certificate does not change: verify it once, not per request.
  // Verified here rather than trusting TLSSocket.authorized, which Node reports
  // as true on a resumed TLS session even when the first handshake presented no
  // certificate or an untrusted one.
  const verdicts = new WeakMap<TLSSocket, ClientVerdict>();
  const trustedConnection = (socket: TLSSocket): ClientVerdict => {
    let verdict = verdicts.get(socket);
    if (verdict === undefined) {
      const leaf = socket.getPeerX509Certificate();
      verdict = verifyClientChain(peerChain(leaf), clientCas);
      // Node 24 no longer exposes the intermediates a client sent (issuerCertificate
      // is undefined). OpenSSL has verified that chain against --client-ca in the
      // handshake, with the ssl_client purpose (validity, CA flags, clientAuth on
      // every extended key usage); its verdict holds for a full handshake, not a
      // resumed one.
      if (!verdict.trusted && leaf && !leaf.issuerCertificate && socket.authorized && !socket.isSessionReused()) {
        verdict = { trusted: true };
      }
      verdicts.set(socket, verdict);
    }
    return verdict;
  };
  const limits = o.limits ?? DEFAULT_LIMITS;
  let shuttingDown = false;
  let draining = false;

  const baseTls: SecureContextOptions = { minVersion: o.tls.minVersion ?? 'TLSv1.2' };
  if (o.tls.ciphers) baseTls.ciphers = o.tls.ciphers;
  const loadMaterial = (contents: string[]): SecureContextOptions | undefined => {
    try {
      const m = servingMaterial(contents[0] ?? '', contents[1] ?? '', contents[2]);
      metrics.certificateExpiry.set(m.notAfter.getTime() / 1000);
      metrics.configReloads.inc({ source: 'certificate', result: 'success' });
      logger.info({ subject: m.subject, notAfter: m.notAfter.toISOString() }, 'serving certificate loaded');
      certificateLoaded = true;
      if (m.clientCas) clientCas = m.clientCas;
      return { ...baseTls, ...m.context };
    } catch (err) {
      metrics.configReloads.inc({ source: 'certificate', result: 'error' });
      logger.error({ err: (err as Error).message }, 'serving certificate not loaded; keeping the previous one');
      return undefined;
    }
  };
  const managed = o.managedCertificates;
  if (managed && !o.kubeConfig) throw new StartupError('--manage-certificates needs access to the API server');
  // Managed: the certificate arrives from the Secret; only the client CA is a file.
  const tlsFiles = managed
    ? (o.tls.clientCaFile ? [o.tls.clientCaFile] : [])
    : [o.tls.certFile, o.tls.keyFile, ...(o.tls.clientCaFile ? [o.tls.clientCaFile] : [])];
  let initialTls: string[] | undefined;
  let initialContext: SecureContextOptions | undefined;
  try {
    if (managed) {
      initialTls = tlsFiles.map((f) => readFileSync(f, 'utf8'));
    } else {
      initialTls = readTls(o.tls);
      initialContext = loadMaterial(initialTls);
    }
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'cannot read the serving certificate; not ready until it appears');
  }

  const identities = o.identityRuntime ?? startIdentityRuntime({
    kubeConfig: o.kubeConfig,
    mutation: o.mutation,
    namespace: o.namespace,
    watchConfigMap: o.watchConfigMap,
    containerCredentialsFile: o.containerCredentialsFile,
    lookupGracePeriodMs: o.lookupGracePeriodMs,
    roleArnComposition: o.roleArnComposition,
    logger,
    metrics,
    filePollMs: o.filePollMs,
  });

  let certificates: ManagedCertificates | undefined;
  // One verdict for both ports: the metrics port answers probes too, since the
  // HTTPS port cannot while it has no certificate.
  const readiness = (): Readiness => {
    const reasons = [...identities.notReady()];
    if (!certificateLoaded) reasons.push('no serving certificate loaded');
    if (!certificateLoaded && certificates) reasons.push(...certificates.problems());
    if (shuttingDown) reasons.push('shutting down');
    return { ready: reasons.length === 0, reasons };
  };
  const app = await buildWebhookApp({
    https: {
      ...baseTls,
      ...initialContext,
      // Ask for a client certificate but let the handshake through: the kubelet's
      // probes have none. Every other request is refused without a valid one.
      ...(o.tls.clientCaFile ? { requestCert: true, rejectUnauthorized: false } : {}),
    },
    ...(o.tls.clientCaFile ? { clientAuthorized: (socket: TLSSocket) => trustedConnection(socket) } : {}),
    mutation: o.mutation,
    identities: identities.provider,
    metrics,
    logger,
    bodyLimit: o.bodyLimit,
    limits,
    readiness,
    draining: () => draining,
  });

  const applyTls = (contents: string[]): void => {
    const context = loadMaterial(contents);
    // setSecureContext applies to new handshakes only: requests in flight keep theirs.
    if (!context) return;
    try {
      app.server.setSecureContext(context);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'the new certificate was refused by TLS; keeping the previous one');
    }
  };
  /** Managed: the Secret's pair and the client CA file, combined as the file mode reads them. */
  let managedPair: string[] | undefined;
  let clientCaContents = managed ? initialTls : undefined;
  const tlsWatch: FileWatch = watchFiles(
    tlsFiles,
    initialTls,
    (contents) => {
      if (!managed) return applyTls(contents);
      clientCaContents = contents;
      if (managedPair) applyTls([...managedPair, ...contents]);
    },
    (err) => logger.error({ err: err.message }, 'cannot read the serving certificate'),
    o.filePollMs === undefined ? {} : { pollMs: o.filePollMs },
  );
  if (managed && o.kubeConfig) {
    // Loaded only in this mode: the certificate code costs the file mode nothing.
    const { createManagedCertificates } = await import('../certificates/controller.js');
    certificates = createManagedCertificates({
      ...managed,
      kc: o.kubeConfig,
      namespace: o.namespace,
      logger,
      events: {
        step: (step) => metrics.certificateSteps.inc({ step }),
        leader: (held) => metrics.certificateLeader.set(held ? 1 : 0),
      },
      onServing: (cert, key) => {
        managedPair = [cert, key];
        applyTls([cert, key, ...(clientCaContents ?? [])]);
      },
    });
  }

  const metricsApp = Fastify({ logger: false, forceCloseConnections: true, ...WITHOUT_SCHEMAS });
  metricsApp.get('/metrics', async (_req, reply) => {
    metrics.cacheSize.set(identities.cacheSize());
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  metricsApp.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'));
  metricsApp.get('/readyz', async (_req, reply) => {
    const r = readiness();
    if (r.ready) return reply.type('text/plain').send('ok\n');
    return reply.code(503).type('text/plain').send(`not ready: ${r.reasons.join('; ')}\n`);
  });
  if (o.debuggingHandlers) {
    metricsApp.get('/debug/alpha/cache', () => Promise.resolve(identities.debugSnapshot()));
  }

  try {
    await app.listen({ port: o.port, host: o.host });
    await metricsApp.listen({ port: o.metricsPort, host: o.host });
  } catch (err) {
    // Nothing may keep running after a failed start: stop what was started.
    tlsWatch.close();
    await certificates?.stop();
    await Promise.allSettled([app.close(), metricsApp.close(), identities.stop()]);
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
    const where = e.port !== undefined ? ` ${e.address ?? o.host}:${e.port}` : '';
    const reason =
      e.code === 'EADDRINUSE'
        ? 'address already in use'
        : e.code === 'EACCES'
          ? 'permission denied (a port below 1024 needs root, or the pod sysctl net.ipv4.ip_unprivileged_port_start=0; or listen on --port=8443)'
          : e.message;
    throw new StartupError(`cannot listen on${where}: ${reason}`);
  }
  const port = (app.server.address() as { port: number }).port;
  const metricsPort = (metricsApp.server.address() as { port: number }).port;
  logger.info({ port, metricsPort }, 'webhook listening');
  certificates?.start();

  // Connections that have not sent a request yet, with when they were accepted.
  // At shutdown they are given --request-header-timeout to send one (it is then
  // answered, with Connection: close) instead of being cut off while it arrives.
  const fresh = new Map<TLSSocket, number>();
  app.server.on('secureConnection', (socket: TLSSocket) => {
    fresh.set(socket, performance.now());
    socket.once('close', () => fresh.delete(socket));
  });
  app.server.on('request', (request: { socket: TLSSocket }) => {
    fresh.delete(request.socket);
  });

  let closing: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    closing ??= (async () => {
      // From now on /readyz is 503, and every response closes its connection, so
      // keep-alive clients reconnect, through the Service, to a ready endpoint
      // instead of staying pinned to this one; /mutate answers normally.
      shuttingDown = true;
      draining = true;
      if (o.shutdownDelayMs > 0) await new Promise((r) => setTimeout(r, o.shutdownDelayMs));
      logger.info({ shutdownTimeoutMs: o.shutdownTimeoutMs }, 'closing the listener; finishing in-flight requests');
      const deadline = new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          logger.warn({ timeoutMs: o.shutdownTimeoutMs }, 'in-flight requests did not finish in time; closing');
          app.server.closeAllConnections();
          for (const socket of fresh.keys()) socket.destroy();
          resolve();
        }, o.shutdownTimeoutMs);
        t.unref();
      });
      // The listener closes (Node then closes the idle keep-alive connections).
      // Requests in flight finish and their responses say Connection: close.
      // Connections busy now become idle later, and would hold close() open until
      // the client gives up: keep closing idle ones, and fresh ones that sent no
      // request within --request-header-timeout, until everything is done.
      const sweep = setInterval(() => {
        app.server.closeIdleConnections();
        const now = performance.now();
        for (const [socket, acceptedAt] of fresh) if (now - acceptedAt > limits.headersTimeoutMs) socket.destroy();
      }, 100);
      try {
        await Promise.race([app.close(), deadline]);
      } finally {
        clearInterval(sweep);
      }
      tlsWatch.close();
      await certificates?.stop();
      await metricsApp.close();
      await identities.stop();
      logger.info('stopped');
    })();
    return closing;
  };

  return {
    app,
    metricsApp,
    metrics,
    port,
    metricsPort,
    reloadCertificate: () => tlsWatch.check(),
    shutdown,
  };
}
