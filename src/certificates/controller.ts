// serve --manage-certificates: the I/O around the pure rotation and lease rules.
//
// Every replica watches the Secret and hands its serving certificate to the
// HTTPS listener. One replica, the holder of the Lease, also creates the CA and
// serving certificate, writes them to the Secret, writes the CA bundle into the
// MutatingWebhookConfiguration and rotates both (see rotation.ts for the order).
// Writes carry the resourceVersion they were computed from: a conflict (409)
// means someone else wrote first, and the step is decided again on fresh data.
import { hostname } from 'node:os';
import { randomBytes, X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeConnection } from '../kube/client.js';
import { backoffDelay, createReflector, DEFAULT_BACKOFF } from '../kube/reflector.js';
import { KubeApiError, kubeRequest } from '../kube/request.js';
import { createCA, createServingCertificate, keyMatchesCertificate } from '../tls/certificates.js';
import { type LeaseSpec, leaseDecision, leaseSpecFor, microTime } from './lease.js';
import {
  bundleWritten,
  composeBundle,
  nextStep,
  type RotationStep,
  SECRET_ANNOTATIONS,
  SECRET_KEYS,
  servingNotAfter,
} from './rotation.js';
import { decodeSecret, inspectMaterial, type ManagedMaterial, servingDnsNames } from './secret.js';

export interface ManagedCertificateSettings {
  /** The Secret holding CA and serving certificate (--tls-secret). */
  secretName: string;
  leaseName: string;
  webhookConfigurationName: string;
  serviceName: string;
  /** More names for the serving certificate (a webhook reached by URL). */
  extraDnsNames: string[];
  ipAddresses: string[];
  caLifetimeMs: number;
  certificateLifetimeMs: number;
  renewFraction: number;
  /** Wait for the API server and every replica to pick up a change (rotation.ts). */
  caOverlapMs: number;
  leaseDurationSeconds: number;
  leaseRenewMs: number;
}

export interface ManagedCertificatesOptions extends ManagedCertificateSettings {
  kc: KubeConnection;
  namespace: string;
  logger: Logger;
  /** A new serving certificate arrived in the Secret (its key belongs to it). */
  onServing(cert: string, key: string): void;
  /** Unique among the replicas; defaults to the host (pod) name plus a random suffix. */
  identity?: string;
  /** For metrics: a step the leader carried out; whether this replica holds the Lease (after every attempt). */
  events?: { step?(step: RotationStep['step']): void; leader?(held: boolean): void } | undefined;
}

export interface ManagedCertificates {
  start(): void;
  /** Clears every timer, aborts requests, hands the Lease back when held; resolves when done. */
  stop(): Promise<void>;
  isLeader(): boolean;
  /** Why the certificates are not in place yet (forbidden objects), for /readyz. */
  problems(): string[];
}

/** The Secret as this controller keeps it: everything needed to write it back. */
interface SecretObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; annotations?: Record<string, string>; [k: string]: unknown };
  type?: string;
  data?: Record<string, string>;
  [k: string]: unknown;
}

interface WebhookConfiguration {
  metadata?: { resourceVersion?: string };
  webhooks?: { clientConfig?: { caBundle?: string } }[];
  [k: string]: unknown;
}

interface LeaseObject {
  metadata?: { resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseSpec;
  [k: string]: unknown;
}

/** Node timers hold at most 2^31-1 ms; a longer wait is re-decided when it ends. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** No answer within this long is a failed request (then backoff). */
const REQUEST_IDLE_MS = 30_000;
/** Steps in a row before the leader waits for the next tick (a guard against a loop). */
const MAX_STEPS_PER_PASS = 8;
/** notBefore lies this much in the past for clocks running behind, at most a tenth of the lifetime. */
const MAX_BACKDATE_MS = 5 * 60_000;

const isStatus = (err: unknown, status: number): boolean => err instanceof KubeApiError && err.status === status;

export function defaultIdentity(): string {
  return `${hostname()}_${randomBytes(4).toString('hex')}`;
}

export function createManagedCertificates(o: ManagedCertificatesOptions): ManagedCertificates {
  const identity = o.identity ?? defaultIdentity();
  const log = o.logger.child({ component: 'certificates', identity });
  const ns = encodeURIComponent(o.namespace);
  const secretPath = `/api/v1/namespaces/${ns}/secrets`;
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
  const mwcPath = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(o.webhookConfigurationName)}`;
  const names = { name: o.serviceName, namespace: o.namespace, extraDnsNames: o.extraDnsNames, ipAddresses: o.ipAddresses };
  const policy = { renewFraction: o.renewFraction, graceMs: o.caOverlapMs };
  const abort = new AbortController();
  const signal = abort.signal;
  const request = (r: Parameters<typeof kubeRequest>[1]) => kubeRequest(o.kc, { idleMs: REQUEST_IDLE_MS, signal, ...r });

  let stopped = false;
  /** The latest Secret seen (watch or our own write); undefined when it does not exist. */
  let secret: SecretObject | undefined;
  let secretSeen = false;
  /** The serving pair last handed to the listener. */
  let served: string | undefined;
  /** Until when (ms since the epoch) this replica holds the Lease. */
  let leaderUntil = 0;
  let leaseTimer: NodeJS.Timeout | undefined;
  let reconcileTimer: NodeJS.Timeout | undefined;
  let leaseFailures = 0;
  let reconcileFailures = 0;
  let running: Promise<void> | undefined;
  let again = false;
  /** Clear errors (forbidden, missing objects), each logged once until it is gone. */
  const problems = new Map<string, string>();
  const problem = (key: string, message: string | undefined): void => {
    if (message === undefined) {
      if (problems.delete(key)) log.info({ object: key }, 'resolved');
      return;
    }
    if (problems.get(key) !== message) log.error({ object: key }, message);
    problems.set(key, message);
  };

  const isLeader = (): boolean => Date.now() < leaderUntil;

  /** Every replica: the Secret's serving pair goes to the listener when it changes. */
  const serveFrom = (s: SecretObject | undefined): void => {
    const m = decodeSecret({ data: s?.data ?? {} });
    if (!m.cert || !m.key || `${m.cert}\n${m.key}` === served) return;
    if (!keyMatchesCertificate(m.key, m.cert)) {
      log.warn('the Secret\'s tls.key does not belong to its tls.crt; keeping the current certificate');
      return;
    }
    served = `${m.cert}\n${m.key}`;
    o.onServing(m.cert, m.key);
  };

  const remember = (s: SecretObject | undefined): void => {
    secret = s;
    secretSeen = true;
    serveFrom(s);
  };

  const reflector = createReflector<SecretObject>({
    kc: o.kc,
    path: secretPath,
    fieldSelector: `metadata.name=${o.secretName}`,
    logger: o.logger,
    handlers: {
      listStart() {
        secretSeen = false;
      },
      upsert(s) {
        if (s.metadata?.name !== o.secretName) return;
        remember(s);
        kick();
      },
      remove(s) {
        if (s.metadata?.name !== o.secretName) return;
        remember(undefined);
        kick();
      },
      listEnd() {
        if (!secretSeen) remember(undefined);
        kick();
      },
    },
    events: {
      restart(reason) {
        // The reflector logs the error itself; this names what the webhook needs.
        if (reason === 'error') problem(`Secret ${o.namespace}/${o.secretName}`, `cannot list or watch Secret ${o.namespace}/${o.secretName} (it needs get, list and watch on it, resourceNames [${o.secretName}]; the error is logged above)`);
      },
      listed() {
        problem(`Secret ${o.namespace}/${o.secretName}`, undefined);
      },
    },
  });

  // ------------------------------------------------------------- Lease ---

  const scheduleLease = (ms: number): void => {
    o.events?.leader?.(isLeader());
    if (stopped) return;
    clearTimeout(leaseTimer);
    leaseTimer = setTimeout(() => void leaseTick(), ms);
  };

  const leaseTick = async (): Promise<void> => {
    const key = `Lease ${o.namespace}/${o.leaseName}`;
    const path = `${leasePath}/${encodeURIComponent(o.leaseName)}`;
    const wasLeader = isLeader();
    try {
      let lease: LeaseObject;
      try {
        lease = (await request({ path })).body as LeaseObject;
      } catch (err) {
        if (!isStatus(err, 404)) throw err;
        // The install ships the Lease; create it when it is missing.
        lease = (await request({ method: 'POST', path: leasePath, body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: o.leaseName, namespace: o.namespace }, spec: {} } })).body as LeaseObject;
      }
      const started = Date.now();
      const decision = leaseDecision(new Date(started), lease.spec, identity);
      if (decision === 'follow') {
        if (wasLeader) log.warn({ holder: lease.spec?.holderIdentity }, 'lost the certificate Lease');
        leaderUntil = 0;
      } else {
        const spec = leaseSpecFor(decision, new Date(started), lease.spec, identity, o.leaseDurationSeconds);
        await request({ method: 'PUT', path, body: { ...lease, spec } });
        // Counted from before the write: the other replicas count from the renewTime we wrote.
        leaderUntil = started + o.leaseDurationSeconds * 1000;
        if (decision === 'acquire') log.info({ previousHolder: lease.spec?.holderIdentity ?? null }, 'acquired the certificate Lease: this replica creates and rotates the certificates');
        kick();
      }
      problem(key, undefined);
      leaseFailures = 0;
      scheduleLease(o.leaseRenewMs);
    } catch (err) {
      if (stopped) return;
      if (isStatus(err, 409)) {
        // Another replica wrote the Lease first; it leads.
        leaderUntil = 0;
        scheduleLease(o.leaseRenewMs);
        return;
      }
      if (isStatus(err, 403)) {
        problem(key, `forbidden to use Lease ${o.namespace}/${o.leaseName} (needs get, update and patch on leases, resourceNames [${o.leaseName}], and create when it does not exist): ${(err as Error).message}`);
      } else {
        log.warn({ err: (err as Error).message }, 'cannot renew the certificate Lease');
      }
      leaseFailures++;
      scheduleLease(Math.min(o.leaseRenewMs, backoffDelay(leaseFailures, DEFAULT_BACKOFF)));
    }
  };

  /** Hands the Lease back on shutdown, so another replica takes over without waiting for it to expire. */
  const releaseLease = async (): Promise<void> => {
    if (!isLeader()) return;
    leaderUntil = 0;
    const path = `${leasePath}/${encodeURIComponent(o.leaseName)}`;
    try {
      const lease = (await kubeRequest(o.kc, { path, idleMs: 2000 })).body as LeaseObject;
      if (lease.spec?.holderIdentity !== identity) return;
      const spec: LeaseSpec = { ...lease.spec, leaseDurationSeconds: 1, renewTime: microTime(new Date()) };
      delete spec.holderIdentity;
      await kubeRequest(o.kc, { method: 'PUT', path, body: { ...lease, spec }, idleMs: 2000 });
      log.info('released the certificate Lease');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot release the certificate Lease; another replica takes it when it expires');
    }
  };

  // ---------------------------------------------------------- rotation ---

  /** Runs the leader's pass now, or once more after the running one. */
  function kick(): void {
    if (stopped || !isLeader()) return;
    if (running) {
      again = true;
      return;
    }
    clearTimeout(reconcileTimer);
    reconcileTimer = undefined;
    running = reconcile().finally(() => {
      running = undefined;
      if (again) {
        again = false;
        kick();
      }
    });
  }

  const scheduleReconcile = (ms: number): void => {
    if (stopped) return;
    clearTimeout(reconcileTimer);
    reconcileTimer = setTimeout(kick, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
  };

  const readSecret = async (): Promise<void> => {
    try {
      remember((await request({ path: `${secretPath}/${encodeURIComponent(o.secretName)}` })).body as SecretObject);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
      remember(undefined);
    }
  };

  const writeSecret = async (data: ManagedMaterial, annotations: Record<string, string | undefined>): Promise<void> => {
    const encoded: Record<string, string> = { ...(secret?.data ?? {}) };
    for (const [field, key] of Object.entries(SECRET_KEYS) as [keyof ManagedMaterial, string][]) {
      if (!(field in data)) continue;
      const value = data[field];
      if (value === undefined) delete encoded[key];
      else encoded[key] = Buffer.from(value).toString('base64');
    }
    const merged: Record<string, string> = { ...(secret?.metadata?.annotations ?? {}) };
    for (const [k, v] of Object.entries(annotations)) {
      if (v === undefined) delete merged[k];
      else merged[k] = v;
    }
    const key = `Secret ${o.namespace}/${o.secretName}`;
    try {
      if (secret) {
        const body = { ...secret, apiVersion: 'v1', kind: 'Secret', metadata: { ...secret.metadata, annotations: merged }, data: encoded };
        remember((await request({ method: 'PUT', path: `${secretPath}/${encodeURIComponent(o.secretName)}`, body })).body as SecretObject);
      } else {
        const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name: o.secretName, namespace: o.namespace, annotations: merged }, type: 'Opaque', data: encoded };
        remember((await request({ method: 'POST', path: secretPath, body })).body as SecretObject);
      }
      problem(key, undefined);
    } catch (err) {
      if (isStatus(err, 403)) problem(key, `forbidden to write Secret ${o.namespace}/${o.secretName} (needs update on it, resourceNames [${o.secretName}], and create when it does not exist): ${(err as Error).message}`);
      throw err;
    }
  };

  const writeBundle = async (mwc: WebhookConfiguration, bundle: string): Promise<void> => {
    const caBundle = Buffer.from(bundle).toString('base64');
    const webhooks = (mwc.webhooks ?? []).map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle } }));
    try {
      await request({ method: 'PUT', path: mwcPath, body: { ...mwc, webhooks } });
      problem(`MutatingWebhookConfiguration ${o.webhookConfigurationName}`, undefined);
    } catch (err) {
      if (isStatus(err, 403)) problem(`MutatingWebhookConfiguration ${o.webhookConfigurationName}`, `forbidden to update MutatingWebhookConfiguration ${o.webhookConfigurationName} (needs get and update on it, resourceNames [${o.webhookConfigurationName}]): ${(err as Error).message}`);
      throw err;
    }
  };

  const backdate = (lifetimeMs: number): number => Math.min(MAX_BACKDATE_MS, Math.floor(lifetimeMs / 10));

  const issueServing = async (m: ManagedMaterial, now: Date): Promise<{ cert: string; key: string }> => {
    const caNotAfter = new Date(new X509Certificate(m.caCert as string).validTo);
    const notAfter = servingNotAfter(now, o.certificateLifetimeMs, { notBefore: now, notAfter: caNotAfter });
    return createServingCertificate(
      { cert: m.caCert as string, key: m.caKey as string },
      { keyType: 'ec', dnsNames: servingDnsNames(names), ipAddresses: o.ipAddresses, notAfter, now, backdateMs: backdate(notAfter.getTime() - now.getTime()) },
    );
  };

  const newCa = (now: Date) =>
    createCA({ keyType: 'ec', notAfter: new Date(now.getTime() + o.caLifetimeMs), now, backdateMs: backdate(o.caLifetimeMs) });

  /** Carries out one step; returns false for `wait`. */
  const perform = async (step: RotationStep, m: ManagedMaterial, mwc: WebhookConfiguration, now: Date): Promise<boolean> => {
    const at = now.toISOString();
    switch (step.step) {
      case 'wait':
        scheduleReconcile(step.until.getTime() - Date.now());
        log.debug({ until: step.until.toISOString(), reason: step.reason }, 'certificates: nothing to do until then');
        return false;
      case 'create-ca': {
        const ca = await newCa(now);
        // No CA to overlap with: the old serving certificate (if any) is useless, issue anew next.
        await writeSecret({ caCert: ca.cert, caKey: ca.key, previousCaCert: undefined }, { [SECRET_ANNOTATIONS.caRotatedAt]: undefined, [SECRET_ANNOTATIONS.servingSwitchedAt]: undefined });
        break;
      }
      case 'rotate-ca': {
        const ca = await newCa(now);
        await writeSecret({ caCert: ca.cert, caKey: ca.key, previousCaCert: m.caCert }, { [SECRET_ANNOTATIONS.caRotatedAt]: at, [SECRET_ANNOTATIONS.servingSwitchedAt]: undefined });
        break;
      }
      case 'issue-serving': {
        const pair = await issueServing(m, now);
        const switching = m.previousCaCert !== undefined;
        await writeSecret({ cert: pair.cert, key: pair.key }, switching ? { [SECRET_ANNOTATIONS.servingSwitchedAt]: at } : {});
        break;
      }
      case 'drop-previous-ca':
        await writeSecret({ previousCaCert: undefined }, { [SECRET_ANNOTATIONS.caRotatedAt]: undefined, [SECRET_ANNOTATIONS.servingSwitchedAt]: undefined });
        break;
      case 'write-bundle':
        await writeBundle(mwc, composeBundle(m.caCert as string, m.previousCaCert));
        break;
    }
    log.info({ step: step.step, reason: step.reason }, 'certificate step done');
    o.events?.step?.(step.step);
    return true;
  };

  async function reconcile(): Promise<void> {
    try {
      if (!reflector.hasSynced()) await readSecret();
      for (let i = 0; i < MAX_STEPS_PER_PASS; i++) {
        if (stopped || !isLeader()) return;
        let mwc: WebhookConfiguration;
        try {
          mwc = (await request({ path: mwcPath })).body as WebhookConfiguration;
        } catch (err) {
          const key = `MutatingWebhookConfiguration ${o.webhookConfigurationName}`;
          if (isStatus(err, 404)) problem(key, `MutatingWebhookConfiguration ${o.webhookConfigurationName} does not exist: the CA bundle has nowhere to go, so no serving certificate is issued (--webhook-configuration-name)`);
          if (isStatus(err, 403)) problem(key, `forbidden to read MutatingWebhookConfiguration ${o.webhookConfigurationName} (needs get and update on it, resourceNames [${o.webhookConfigurationName}])`);
          throw err;
        }
        problem(`MutatingWebhookConfiguration ${o.webhookConfigurationName}`, undefined);
        const m = decodeSecret({ data: secret?.data ?? {} });
        const bundle = m.caCert ? composeBundle(m.caCert, m.previousCaCert) : '';
        const state = inspectMaterial(m, secret?.metadata?.annotations, names, bundle !== '' && bundleWritten(mwc.webhooks ?? [], bundle));
        const now = new Date();
        const step = nextStep(now, state, policy);
        if (!(await perform(step, m, mwc, now))) break;
        if (i === MAX_STEPS_PER_PASS - 1) scheduleReconcile(o.leaseRenewMs);
      }
      reconcileFailures = 0;
    } catch (err) {
      if (stopped) return;
      reconcileFailures++;
      if (isStatus(err, 409)) {
        // Written by someone else since we read it: decide again on fresh data.
        log.info({ err: (err as Error).message }, 'certificate write conflict; retrying on fresh data');
        try {
          await readSecret();
        } catch {
          // The retry below reads again.
        }
        scheduleReconcile(reconcileFailures > 3 ? backoffDelay(reconcileFailures - 3, DEFAULT_BACKOFF) : 0);
        return;
      }
      const delay = backoffDelay(reconcileFailures, DEFAULT_BACKOFF);
      log.warn({ err: (err as Error).message, retryInMs: delay }, 'certificate step failed');
      scheduleReconcile(delay);
    }
  }

  return {
    start() {
      log.info({ secret: o.secretName, lease: o.leaseName, webhookConfiguration: o.webhookConfigurationName }, 'managing the serving certificates');
      reflector.start();
      void leaseTick();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(leaseTimer);
      clearTimeout(reconcileTimer);
      abort.abort();
      await Promise.allSettled([reflector.stop(), running]);
      await releaseLease();
      o.events?.leader?.(false);
    },
    isLeader,
    problems: () => [...problems.values()],
  };
}
