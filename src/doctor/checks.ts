// `doctor`'s checks: from the ServiceAccount through the webhook to the
// role's trust policy, each one sentence, so that "my pod has no AWS
// credentials" becomes the one thing to fix. Cluster reads are optional:
// without a cluster the trust-policy part still runs on --issuer.
import type { KubeConnection } from '../kube/client.js';
import type { V1MutatingWebhook, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { isIP } from 'node:net';
import jsonpatch from 'fast-json-patch';
import { ANNOTATION, DEFAULT_MUTATION_OPTIONS, type MutationOptions } from '../config.js';
import { parseServiceAccountAnnotations, type ServiceAccountSettings } from '../settings/service-account.js';
import { mutatePod } from '../mutation/index.js';
import { issuerProblem } from '../oidc/keys.js';
import { formatDate } from '../tls/certificates.js';
import { answerError, kubeGet, KubeTimeoutError } from './kube.js';
import {
  evaluateTrustPolicy,
  federatedPrincipals,
  parseProviderArn,
  providerPath,
  type PolicyCheck,
  type TrustPolicy,
} from './trust-policy.js';
import { type ServiceRef, type ServiceState, serviceState, type WebhookDeployment, webhookDeployment } from './service.js';
import { decodeCaBundle, describeCertificate, probeServing, probeWebhookUrl, selectorMatches, webhookMatchesPodCreate } from './webhook.js';

/** warn: worth knowing, but not a failure (the exit code ignores it). */
export type CheckStatus = 'ok' | 'fail' | 'skip' | 'warn';

/**
 * What a check found, stable for scripts (`--output json`): the check's name
 * and the outcome. Documented in the README; a new outcome gets a new code.
 */
export const DOCTOR_CODES = [
  'service-account-found', 'service-account-missing', 'service-account-unreadable', 'service-account-offline', 'service-account-offline-role-arn',
  'role-arn-set', 'role-arn-missing', 'role-arn-malformed', 'role-arn-not-checked',
  'audience-annotated', 'audience-default', 'audience-empty',
  'annotations-ignored',
  'webhook-not-checked',
  'webhook-config-found', 'webhook-config-missing', 'webhook-config-unreadable',
  'webhook-rules-match', 'webhook-rules-no-pod-create', 'webhook-rules-namespace-excluded', 'webhook-rules-object-selector',
  'ca-bundle-valid', 'ca-bundle-missing', 'ca-bundle-unreadable', 'ca-bundle-expired', 'ca-bundle-not-ca',
  'webhook-answers-ok', 'webhook-answers-forbidden', 'webhook-answers-error', 'webhook-answers-timeout', 'webhook-answers-unreachable',
  'webhook-answers-tls', 'webhook-answers-no-client-config',
  'service-missing', 'service-no-port', 'service-no-endpoints',
  'webhook-tls-verified', 'webhook-tls-unverified', 'webhook-tls-no-endpoint', 'webhook-tls-unreachable',
  'webhook-flags-found', 'webhook-flags-not-found',
  'issuer-given', 'issuer-discovered', 'issuer-invalid', 'issuer-private', 'issuer-undiscoverable',
  'trust-policy-allows', 'trust-policy-denies', 'trust-policy-no-allow', 'trust-policy-not-given', 'trust-policy-not-checked',
  'accounts-match', 'accounts-differ', 'accounts-no-provider', 'accounts-not-checked',
  'pod-gets-credentials', 'pod-gets-nothing', 'pod-service-account-missing', 'pod-not-worked-out',
] as const;

export type DoctorCode = (typeof DOCTOR_CODES)[number];

export interface DoctorCheck {
  name: string;
  /** What was found; scripts go by this, never by the sentence. */
  code: DoctorCode;
  status: CheckStatus;
  /** One sentence. */
  detail: string;
  /** Supporting lines: the trust policy's steps, what the pod gets, warnings. */
  details?: string[];
  /** The trust policy evaluator's steps, for --output json. */
  policy?: PolicyCheck[];
}

export interface PodCredentials {
  env: Array<{ name: string; value: string }>;
  volumes: string[];
  warnings: string[];
}

export interface DoctorReport {
  ok: boolean;
  namespace: string;
  serviceAccount: string;
  subject: string;
  checks: DoctorCheck[];
  /** What a new pod of the ServiceAccount gets; undefined when it could not be worked out. */
  pod?: PodCredentials;
  /** The webhook's flags the pod was worked out with, when its Deployment was found. */
  webhookFlags?: { source: string; args: string[] };
}

export interface DoctorOptions {
  namespace: string;
  serviceAccount: string;
  /** Undefined: offline, only what the flags say is checked. */
  kubeConfig?: KubeConnection | undefined;
  trustPolicy?: TrustPolicy | undefined;
  /** Overrides the API server's issuer (and is the only source offline). */
  issuer?: string | undefined;
  /** Offline stand-in for the role-arn annotation. */
  roleArn?: string | undefined;
  /** Audience when the ServiceAccount sets none (the webhook's --token-audience). */
  audience?: string | undefined;
  webhookConfig: string;
  annotationPrefix: string;
  /** Deadline of each network call. */
  timeoutMs?: number;
  /**
   * The webhook's mutation options from its flags: the args of its Deployment
   * when found (undefined otherwise), with what the doctor command line gives.
   * Without it: the defaults with annotationPrefix and audience.
   */
  webhookOptions?: (args: string[] | undefined) => MutationOptions;
}

/** Where the webhook runs, read before the checks: its flags decide what a pod gets. */
export interface WebhookLocation {
  service?: ServiceRef;
  state?: ServiceState;
  deployment?: WebhookDeployment;
}

export const DEFAULT_WEBHOOK_CONFIG = 'pod-identity-webhook';
const DEFAULT_TIMEOUT_MS = 10_000;

function roleAccount(roleArn: string | undefined): string | undefined {
  return roleArn ? /^arn:[^:]+:iam::(\d{12}):role\//.exec(roleArn)?.[1] : undefined;
}

/** Why STS cannot fetch this issuer's documents, when its host is plainly not public. */
export function privateIssuerProblem(issuer: string): string | undefined {
  let host: string;
  try {
    host = new URL(issuer).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
  const ip = isIP(host) !== 0;
  const internal = ip
    ? /^(10|127)\.|^192\.168\.|^172\.(1[6-9]|2\d|3[01])\.|^169\.254\.|^(::1$|f[cd]|fe80:)/i.test(host)
    : host === 'localhost' || !host.includes('.') || /\.(svc|local|internal|localdomain)$/.test(host) || host.includes('.svc.');
  if (!internal) return undefined;
  return (
    `${host} is not a public name: STS fetches ${providerPath(issuer)}/.well-known/openid-configuration from the internet, ` +
    'so it cannot verify these tokens (publish the documents with the `oidc` command and set kube-apiserver\'s --service-account-issuer to that URL)'
  );
}

function minimalPod(namespace: string, serviceAccount: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, generateName: `${serviceAccount}-` },
    spec: { serviceAccountName: serviceAccount, containers: [{ name: 'app', image: 'app' }] },
  };
}

/** Env vars and volumes the engine adds to a new pod of this ServiceAccount. */
export function podCredentials(
  namespace: string,
  serviceAccount: string,
  settings: ServiceAccountSettings | undefined,
  options: MutationOptions,
): PodCredentials {
  const pod = minimalPod(namespace, serviceAccount);
  const result = mutatePod(pod, namespace, { serviceAccount: settings }, options);
  const mutated = jsonpatch.applyPatch(structuredClone(pod), result.patch, true, false).newDocument;
  const container = mutated.spec?.containers[0];
  const env = (container?.env ?? []).map((e) => ({ name: e.name, value: e.value ?? '' }));
  const mounts = new Map((container?.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
  const volumes = (mutated.spec?.volumes ?? []).map((v) => {
    const token = v.projected?.sources?.find((s) => s.serviceAccountToken)?.serviceAccountToken;
    const what = token
      ? `a projected ServiceAccount token (audience ${token.audience ?? '(the API server\'s)'}, expiring after ${token.expirationSeconds ?? 3600} s, file ${token.path})`
      : 'a volume';
    const at = mounts.get(v.name);
    return `${v.name}: ${what}${at ? ` mounted at ${at}` : ''}`;
  });
  return { env, volumes, warnings: result.warnings };
}

/** What every check may read: the command's options and what was learned before the checks ran. */
interface DoctorContext {
  o: DoctorOptions;
  kc: KubeConnection | undefined;
  /** `namespace/name` of the ServiceAccount. */
  who: string;
  subject: string;
  timeoutMs: number;
  options: MutationOptions;
  roleKey: string;
  audienceKey: string;
  location: WebhookLocation | undefined;
}

/** What is known of the ServiceAccount after its check. */
interface ServiceAccountFinding {
  check: DoctorCheck;
  settings?: ServiceAccountSettings;
  /** The warnings about the role-arn annotation (the role-arn check reports them; the annotations check the rest). */
  roleArnWarnings: readonly string[];
  /** Its annotations are known (read, or given as --role-arn offline). */
  known: boolean;
  /** The API server said it does not exist. */
  missing: boolean;
}

export async function runDoctorChecks(o: DoctorOptions): Promise<DoctorReport> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const kc = o.kubeConfig;
  // Discovery does not depend on the other reads; start it now so a dead API server costs one timeout, not several.
  const discovery = kc && o.issuer === undefined
    ? servedIssuer(kc, timeoutMs).then((value) => ({ value }), (error: Error) => ({ error }))
    : undefined;
  // The webhook's own flags decide the annotation prefix and what a pod gets: find them first.
  const location = kc ? await locateWebhook(kc, o.webhookConfig, timeoutMs) : undefined;
  const options: MutationOptions = o.webhookOptions
    ? o.webhookOptions(location?.deployment?.args)
    : { ...DEFAULT_MUTATION_OPTIONS, annotationPrefix: o.annotationPrefix, tokenAudience: o.audience ?? DEFAULT_MUTATION_OPTIONS.tokenAudience };
  const ctx: DoctorContext = {
    o,
    kc,
    who: `${o.namespace}/${o.serviceAccount}`,
    subject: `system:serviceaccount:${o.namespace}:${o.serviceAccount}`,
    timeoutMs,
    options,
    roleKey: `${options.annotationPrefix}/${ANNOTATION.roleArn}`,
    audienceKey: `${options.annotationPrefix}/${ANNOTATION.audience}`,
    location,
  };

  const checks: DoctorCheck[] = [];
  const sa = await checkServiceAccount(ctx);
  checks.push(sa.check, checkRoleArn(ctx, sa));
  const audience = sa.settings?.audience ?? options.tokenAudience;
  checks.push(checkAudience(ctx, sa));
  const annotations = checkOtherAnnotations(sa);
  if (annotations) checks.push(annotations);

  // The webhook: configured, called for this pod, trusted, answering.
  let webhookProblem = false;
  if (kc) {
    webhookProblem = await checkWebhook(kc, o, location ?? {}, timeoutMs, (c) => {
      checks.push(c);
      return c;
    });
    checks.push(checkWebhookFlags(location));
  } else {
    checks.push({ name: 'webhook', code: 'webhook-not-checked', status: 'skip', detail: 'no cluster: the webhook configuration and its endpoint were not checked' });
  }

  // The issuer the tokens carry, then the trust policy against it.
  const issuer = await checkIssuer(o.issuer, discovery);
  if (issuer.check) checks.push(issuer.check);
  checks.push(...checkTrust(ctx, issuer.value, audience, sa.settings?.roleArn));

  // What a new pod would get from the engine.
  const pod = checkPod(ctx, sa, webhookProblem);
  checks.push(pod.check);

  const d = location?.deployment;
  return {
    ok: !checks.some((c) => c.status === 'fail'),
    namespace: o.namespace,
    serviceAccount: o.serviceAccount,
    subject: ctx.subject,
    checks,
    ...(pod.credentials ? { pod: pod.credentials } : {}),
    ...(d ? { webhookFlags: { source: d.source, args: d.args } } : {}),
  };
}

/** The ServiceAccount: read it, or take --role-arn offline. */
async function checkServiceAccount(ctx: DoctorContext): Promise<ServiceAccountFinding> {
  const { o, kc, who, roleKey } = ctx;
  const prefix = ctx.options.annotationPrefix;
  if (!kc) {
    if (o.roleArn === undefined) {
      return { known: false, missing: false, roleArnWarnings: [], check: { name: 'service-account', code: 'service-account-offline', status: 'skip', detail: 'no cluster and no --role-arn: the ServiceAccount and its role were not checked' } };
    }
    const settings = parseServiceAccountAnnotations({ [roleKey]: o.roleArn }, prefix);
    return {
      known: true,
      missing: false,
      settings,
      roleArnWarnings: settings.warnings,
      check: { name: 'service-account', code: 'service-account-offline-role-arn', status: 'skip', detail: 'no cluster: the ServiceAccount was not read; --role-arn and --audience stand in for its annotations' },
    };
  }
  const unreadable = (why: string): ServiceAccountFinding => ({ known: false, missing: false, roleArnWarnings: [], check: { name: 'service-account', code: 'service-account-unreadable', status: 'fail', detail: `cannot read ServiceAccount ${who}: ${why}` } });
  try {
    const answer = await kubeGet(kc, `/api/v1/namespaces/${encodeURIComponent(o.namespace)}/serviceaccounts/${encodeURIComponent(o.serviceAccount)}`, ctx.timeoutMs);
    if (answer.status === 404) {
      return { known: false, missing: true, roleArnWarnings: [], check: { name: 'service-account', code: 'service-account-missing', status: 'fail', detail: `ServiceAccount ${who} does not exist; create it and annotate it with ${roleKey}` } };
    }
    if (answer.status !== 200) return unreadable(answerError(answer));
    const annotations = (answer.json as { metadata?: { annotations?: Record<string, string> } }).metadata?.annotations;
    // The role-arn annotation parsed alone: which warnings are about it, without reading their sentences.
    const roleArn = annotations && Object.hasOwn(annotations, roleKey) ? { [roleKey]: annotations[roleKey] as string } : {};
    return {
      known: true,
      missing: false,
      settings: parseServiceAccountAnnotations(annotations, prefix),
      roleArnWarnings: parseServiceAccountAnnotations(roleArn, prefix).warnings,
      check: { name: 'service-account', code: 'service-account-found', status: 'ok', detail: `ServiceAccount ${who} exists` },
    };
  } catch (err) {
    return unreadable((err as Error).message);
  }
}

function checkRoleArn(ctx: DoctorContext, sa: ServiceAccountFinding): DoctorCheck {
  const { kc, roleKey } = ctx;
  const roleArn = sa.settings?.roleArn;
  if (!sa.known) return { name: 'role-arn', code: 'role-arn-not-checked', status: 'skip', detail: 'not checked: the ServiceAccount is unknown' };
  if (!roleArn) {
    return {
      name: 'role-arn',
      code: 'role-arn-missing',
      status: 'fail',
      detail: `the ServiceAccount has no ${roleKey} annotation, so the webhook gives its pods nothing ` +
        '(unless the webhook runs in ConfigMap mode and its ConfigMap names this ServiceAccount; doctor does not read it)',
    };
  }
  const problem = sa.roleArnWarnings[0];
  if (problem) return { name: 'role-arn', code: 'role-arn-malformed', status: 'fail', detail: kc ? problem : problem.replace(/^annotation \S+?=/, '--role-arn ') };
  return { name: 'role-arn', code: 'role-arn-set', status: 'ok', detail: `${kc ? `annotation ${roleKey}` : '--role-arn'} is ${roleArn}` };
}

function checkAudience(ctx: DoctorContext, sa: ServiceAccountFinding): DoctorCheck {
  const { o, kc, audienceKey } = ctx;
  const defaultAudience = ctx.options.tokenAudience;
  const annotated = sa.settings?.audience;
  if (annotated !== undefined) {
    return annotated.trim() === ''
      ? { name: 'audience', code: 'audience-empty', status: 'fail', detail: `annotation ${audienceKey} is empty; tokens need an audience (remove it to get ${defaultAudience})` }
      : { name: 'audience', code: 'audience-annotated', status: 'ok', detail: `tokens are issued for audience ${annotated} (annotation ${audienceKey}); the IAM OIDC provider must list it as a client ID` };
  }
  const fromWebhook = ctx.location?.deployment?.args.some((a) => /^--?token-audience(=|$)/.test(a));
  const from = o.audience !== undefined ? '--audience' : fromWebhook ? 'the webhook\'s --token-audience' : 'the default';
  const why = !kc ? '' : sa.known ? '; the ServiceAccount sets none' : '; the ServiceAccount could not be read';
  return { name: 'audience', code: 'audience-default', status: 'ok', detail: `tokens are issued for audience ${defaultAudience} (${from}${why})` };
}

/** Annotation warnings other than the role ARN's (which the role-arn check reports). */
function checkOtherAnnotations(sa: ServiceAccountFinding): DoctorCheck | undefined {
  const other = (sa.settings?.warnings ?? []).filter((w) => !sa.roleArnWarnings.includes(w));
  if (other.length === 0) return undefined;
  return { name: 'annotations', code: 'annotations-ignored', status: 'warn', detail: `${other.length} annotation(s) of the ServiceAccount are ignored or adjusted`, details: other };
}

function checkWebhookFlags(location: WebhookLocation | undefined): DoctorCheck {
  const d = location?.deployment;
  if (d) return { name: 'webhook-flags', code: 'webhook-flags-found', status: 'ok', detail: `the webhook runs with ${d.args.length > 0 ? d.args.join(' ') : 'no flags (the defaults)'} (${d.source})` };
  return {
    name: 'webhook-flags',
    code: 'webhook-flags-not-found',
    status: 'skip',
    detail: 'the webhook\'s Deployment was not found (a Deployment in the Service\'s namespace whose pods the Service selects), ' +
      'so the pod below assumes the defaults and the flags given to doctor (--sts-regional-endpoint, --aws-default-region, ...)',
  };
}

type Discovery = Promise<{ value: { issuer: string; keys: number } } | { error: Error }>;

/** The issuer the tokens carry: --issuer, or what the API server's discovery document says. */
async function checkIssuer(given: string | undefined, discovery: Discovery | undefined): Promise<{ value?: string; check?: DoctorCheck }> {
  if (given !== undefined) {
    const bad = issuerProblem(given);
    const internal = bad ? undefined : privateIssuerProblem(given);
    return {
      value: given,
      check: bad || internal
        ? { name: 'issuer', code: bad ? 'issuer-invalid' : 'issuer-private', status: 'fail', detail: bad ? `the issuer ${given} (--issuer) ${bad}` : `the issuer ${given} (--issuer) will not work: ${internal}` }
        : { name: 'issuer', code: 'issuer-given', status: 'ok', detail: `the issuer is ${given} (--issuer)` },
    };
  }
  if (!discovery) return {};
  const served = await discovery;
  if (!('value' in served)) {
    return { check: { name: 'issuer', code: 'issuer-undiscoverable', status: 'fail', detail: `cannot learn the issuer: ${served.error.message}; give --issuer to check the trust policy anyway` } };
  }
  const { issuer, keys } = served.value;
  const bad = issuerProblem(issuer);
  const problem = bad ? `it ${bad}, or STS cannot fetch its documents` : privateIssuerProblem(issuer);
  return {
    value: issuer,
    check: problem
      ? { name: 'issuer', code: bad ? 'issuer-invalid' : 'issuer-private', status: 'fail', detail: `the API server's issuer ${issuer} will not work: ${problem}` }
      : { name: 'issuer', code: 'issuer-discovered', status: 'ok', detail: `the API server's issuer is ${issuer} (from its discovery document; it serves ${keys} key(s))` },
  };
}

/** The role's trust policy against the issuer, subject and audience; then whether the provider is in the role's account. */
function checkTrust(ctx: DoctorContext, issuer: string | undefined, audience: string, roleArn: string | undefined): DoctorCheck[] {
  const policy = ctx.o.trustPolicy;
  if (!policy) {
    const role = roleArn?.split('/').pop() ?? 'ROLE';
    return [{
      name: 'trust-policy',
      code: 'trust-policy-not-given',
      status: 'skip',
      detail: `no --trust-policy: the role's trust policy was not checked (aws iam get-role --role-name ${role} --query Role.AssumeRolePolicyDocument > trust.json)`,
    }];
  }
  if (!issuer) return [{ name: 'trust-policy', code: 'trust-policy-not-checked', status: 'skip', detail: 'not checked: the issuer is unknown' }];
  const account = roleAccount(roleArn);
  const result = evaluateTrustPolicy(policy, { issuer, subject: ctx.subject, audience, accountId: account });
  const steps = result.checks.filter((c) => c.name !== 'decision');
  // Decided by a statement (Allow or Deny): how it matched. Otherwise every failed step the reason does not already say.
  const shown = result.statement !== undefined
    ? steps.filter((c) => c.statement === result.statement)
    : steps.filter((c) => !c.ok && c !== result.cause);
  const trust: DoctorCheck = {
    name: 'trust-policy',
    code: result.allowed ? 'trust-policy-allows' : result.statement !== undefined ? 'trust-policy-denies' : 'trust-policy-no-allow',
    status: result.allowed ? 'ok' : 'fail',
    detail: result.reason,
    details: shown.map((c) => `statement ${c.statement}: ${c.detail}`),
    policy: result.checks,
  };
  return [trust, checkAccounts(policy, issuer, account)];
}

function checkAccounts(policy: TrustPolicy, issuer: string, account: string | undefined): DoctorCheck {
  if (!account) return { name: 'accounts', code: 'accounts-not-checked', status: 'skip', detail: 'not checked: no role ARN to compare the provider\'s account with' };
  const providers = federatedPrincipals(policy).map((arn) => ({ arn, parsed: parseProviderArn(arn) }));
  const ours = providers.filter((p) => p.parsed?.path === providerPath(issuer));
  const candidates = ours.length > 0 ? ours : providers.filter((p) => p.parsed);
  if (candidates.length === 0) return { name: 'accounts', code: 'accounts-no-provider', status: 'skip', detail: 'not checked: the trust policy names no IAM OIDC provider' };
  const other = candidates.find((p) => p.parsed?.accountId !== account);
  if (!other) return { name: 'accounts', code: 'accounts-match', status: 'ok', detail: `the role and the OIDC provider are both in account ${account}` };
  return {
    name: 'accounts',
    code: 'accounts-differ',
    status: 'warn',
    detail: `the role is in account ${account} but the trust policy's provider ${other.arn} is in account ${other.parsed?.accountId}; ` +
      'STS only uses a provider of the role\'s own account, so create the provider there',
  };
}

/** What a new pod of the ServiceAccount would get from the engine. */
function checkPod(ctx: DoctorContext, sa: ServiceAccountFinding, webhookProblem: boolean): { check: DoctorCheck; credentials?: PodCredentials } {
  const { o, who } = ctx;
  if (!sa.known) {
    const why = sa.missing ? `ServiceAccount ${who} does not exist` : 'the ServiceAccount is unknown';
    return { check: { name: 'pod', code: sa.missing ? 'pod-service-account-missing' : 'pod-not-worked-out', status: sa.missing ? 'fail' : 'skip', detail: sa.missing ? `nothing: ${why}` : `not worked out: ${why}` } };
  }
  const credentials = podCredentials(o.namespace, o.serviceAccount, sa.settings, ctx.options);
  if (credentials.env.length === 0 && credentials.volumes.length === 0) {
    return { credentials, check: { name: 'pod', code: 'pod-gets-nothing', status: 'fail', detail: `nothing: the ServiceAccount has no ${ctx.roleKey} annotation`, details: credentials.warnings } };
  }
  const caveat = webhookProblem ? ', but only once the webhook problems above are fixed' : '';
  return {
    credentials,
    check: {
      name: 'pod',
      code: 'pod-gets-credentials',
      status: 'ok',
      detail: `a new pod of ${who} gets ${credentials.env.map((e) => e.name).join(', ')} and the token volume${caveat}`,
      details: [
        ...credentials.env.map((e) => `env ${e.name}=${e.value}`),
        ...credentials.volumes.map((v) => `volume ${v}`),
        ...credentials.warnings.map((w) => `warning: ${w}`),
      ],
    },
  };
}

const DISCOVERY_HINTS: Record<number, string> = {
  401: ' (the caller needs the system:service-account-issuer-discovery ClusterRole)',
  403: ' (the caller needs the system:service-account-issuer-discovery ClusterRole)',
  404: ' (is ServiceAccountIssuerDiscovery enabled, and --service-account-issuer set?)',
};

/**
 * The issuer and key count the API server publishes (ServiceAccountIssuerDiscovery).
 * Read like oidc/cluster.ts's fetchServedIssuer, but through kubeGet: the
 * generated clients cannot be aborted, and a hung request would keep the
 * command from exiting.
 */
async function servedIssuer(kc: KubeConnection, timeoutMs: number): Promise<{ issuer: string; keys: number }> {
  const get = async (path: string): Promise<Record<string, unknown>> => {
    const answer = await kubeGet(kc, path, timeoutMs);
    if (answer.status !== 200) throw new Error(`GET ${path}: ${answerError(answer)}${DISCOVERY_HINTS[answer.status] ?? ''}`);
    const doc = answer.json;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`GET ${path}: not a JSON object`);
    return doc as Record<string, unknown>;
  };
  const discovery = await get('/.well-known/openid-configuration');
  const issuer = discovery['issuer'];
  if (typeof issuer !== 'string' || issuer === '') throw new Error('the discovery document has no issuer');
  const keys = (await get('/openid/v1/jwks'))['keys'];
  if (!Array.isArray(keys) || keys.length === 0) throw new Error('GET /openid/v1/jwks: no keys in the answer');
  return { issuer, keys: keys.length };
}

/** The first webhook of the configuration that sees pod CREATE and calls a Service: that Service, its endpoints, its Deployment. */
export async function locateWebhook(kc: KubeConnection, configName: string, timeoutMs: number): Promise<WebhookLocation> {
  try {
    const answer = await kubeGet(kc, `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(configName)}`, timeoutMs);
    if (answer.status !== 200) return {};
    const webhooks = (answer.json as V1MutatingWebhookConfiguration).webhooks ?? [];
    const svc = webhooks.filter(webhookMatchesPodCreate).find((w) => w.clientConfig?.service)?.clientConfig?.service;
    if (!svc?.name || !svc.namespace) return {};
    const service: ServiceRef = { namespace: svc.namespace, name: svc.name, ...(svc.port !== undefined ? { port: svc.port } : {}) };
    const state = await serviceState(kc, service, timeoutMs);
    let deployment: WebhookDeployment | undefined;
    if (state.selector) {
      try {
        deployment = await webhookDeployment(kc, service.namespace, state.selector, timeoutMs);
      } catch {
        deployment = undefined;
      }
    }
    return { service, state, ...(deployment ? { deployment } : {}) };
  } catch {
    return {};
  }
}

/** The webhook checks; returns true when one failed. */
async function checkWebhook(
  kc: KubeConnection,
  o: DoctorOptions,
  location: WebhookLocation,
  timeoutMs: number,
  add: (c: DoctorCheck) => DoctorCheck,
): Promise<boolean> {
  const name = o.webhookConfig;
  let config: V1MutatingWebhookConfiguration;
  try {
    const answer = await kubeGet(kc, `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(name)}`, timeoutMs);
    if (answer.status === 404) {
      add({ name: 'webhook-config', code: 'webhook-config-missing', status: 'fail', detail: `MutatingWebhookConfiguration ${name} does not exist, so no pod is mutated (if it has another name, give --webhook-config NAME)` });
      return true;
    }
    if (answer.status !== 200) {
      add({ name: 'webhook-config', code: 'webhook-config-unreadable', status: 'fail', detail: `cannot read MutatingWebhookConfiguration ${name}: ${answerError(answer)}` });
      return true;
    }
    config = answer.json as V1MutatingWebhookConfiguration;
  } catch (err) {
    add({ name: 'webhook-config', code: 'webhook-config-unreadable', status: 'fail', detail: `cannot read MutatingWebhookConfiguration ${name}: ${(err as Error).message}` });
    return true;
  }
  const webhooks = config.webhooks ?? [];
  add({ name: 'webhook-config', code: 'webhook-config-found', status: 'ok', detail: `MutatingWebhookConfiguration ${name} exists with ${webhooks.length} webhook(s)` });

  const forPods = webhooks.filter(webhookMatchesPodCreate);
  if (forPods.length === 0) {
    add({ name: 'webhook-rules', code: 'webhook-rules-no-pod-create', status: 'fail', detail: `none of the webhooks of ${name} has a rule for CREATE of pods (apiGroups "", apiVersions v1, resources pods)` });
    return true;
  }
  // Does the webhook see pods of this namespace? The API server sets kubernetes.io/metadata.name on every namespace.
  let labels: Record<string, string> = { 'kubernetes.io/metadata.name': o.namespace };
  let labelsNote = '';
  try {
    const answer = await kubeGet(kc, `/api/v1/namespaces/${encodeURIComponent(o.namespace)}`, timeoutMs);
    if (answer.status === 200) labels = (answer.json as { metadata?: { labels?: Record<string, string> } }).metadata?.labels ?? labels;
    else labelsNote = ` (namespace labels unreadable: ${answerError(answer)}; only kubernetes.io/metadata.name was used)`;
  } catch (err) {
    labelsNote = ` (namespace labels unreadable: ${(err as Error).message})`;
  }
  const called = forPods.filter((w) => selectorMatches(w.namespaceSelector, labels) && selectorMatches(w.objectSelector, {}));
  if (called.length === 0) {
    const w = forPods[0] as V1MutatingWebhook;
    const byObject = selectorMatches(w.namespaceSelector, labels);
    const which = byObject ? 'its objectSelector requires pod labels a plain pod does not have' : `its namespaceSelector excludes namespace ${o.namespace}`;
    add({ name: 'webhook-rules', code: byObject ? 'webhook-rules-object-selector' : 'webhook-rules-namespace-excluded', status: 'fail', detail: `webhook ${w.name} is not called for pods of ${o.namespace}: ${which}${labelsNote}` });
    return true;
  }
  const webhook = called[0] as V1MutatingWebhook;
  add({ name: 'webhook-rules', code: 'webhook-rules-match', status: 'ok', detail: `webhook ${webhook.name} is called for pod CREATE in namespace ${o.namespace} (failurePolicy ${webhook.failurePolicy ?? 'Fail'})${labelsNote}` });

  let failed = false;
  const client = webhook.clientConfig ?? {};
  const ca = decodeCaBundle(client.caBundle);
  if (ca.problem) {
    const hint = client.caBundle ? '' : ' (run `pod-identity-webhook certs --patch-webhook ' + name + '` or let cert-manager inject it)';
    add({ name: 'ca-bundle', code: client.caBundle ? 'ca-bundle-unreadable' : 'ca-bundle-missing', status: client.url && !client.caBundle ? 'warn' : 'fail', detail: `webhook ${webhook.name}: ${ca.problem}, so the API server cannot verify it${hint}` });
    failed = !(client.url && !client.caBundle);
  } else {
    const cert = ca.certificate as NonNullable<typeof ca.certificate>;
    const expired = new Date(cert.validTo).getTime() < Date.now();
    add({
      name: 'ca-bundle',
      code: expired ? 'ca-bundle-expired' : !cert.ca ? 'ca-bundle-not-ca' : 'ca-bundle-valid',
      status: expired || !cert.ca ? 'fail' : 'ok',
      detail: expired ? `the caBundle's certificate expired on ${formatDate(new Date(cert.validTo))}`
        : !cert.ca ? `the caBundle holds a certificate that is not a CA (${describeCertificate(cert)})`
          : `the caBundle holds a CA certificate: ${describeCertificate(cert)}`,
    });
    failed = expired || !cert.ca;
  }

  if (client.url) {
    const probe = await probeWebhookUrl(client.url, ca.pem, timeoutMs);
    add({ name: 'webhook-answers', code: probe.ok ? 'webhook-answers-ok' : !probe.reached ? 'webhook-answers-unreachable' : probe.verified ? 'webhook-answers-error' : 'webhook-answers-tls', status: probe.ok ? 'ok' : 'fail', detail: probe.detail });
    return failed || !probe.ok;
  }
  if (!client.service) {
    add({ name: 'webhook-answers', code: 'webhook-answers-no-client-config', status: 'fail', detail: `webhook ${webhook.name} has neither clientConfig.url nor clientConfig.service` });
    return true;
  }
  const svc = client.service;
  const port = svc.port ?? 443;
  const target = `Service ${svc.namespace}/${svc.name} port ${port}`;
  // The Service and its endpoints first: "not found" from the proxy can mean either.
  const sameService = location.service?.namespace === svc.namespace && location.service.name === svc.name && (location.service.port ?? 443) === port;
  const state = sameService && location.state ? location.state : await serviceState(kc, { namespace: svc.namespace, name: svc.name, port }, timeoutMs);
  if (state.outcome === 'missing' || state.outcome === 'no-port' || state.outcome === 'no-endpoints') {
    add({ name: 'webhook-answers', code: `service-${state.outcome}`, status: 'fail', detail: state.detail });
    return true;
  }
  const proxied = `https:${svc.name}:${port}`;
  const path = `/api/v1/namespaces/${encodeURIComponent(svc.namespace)}/services/${proxied}/proxy/healthz`;
  const endpoints = state.outcome === 'ready' ? ` (${state.ready.length} ready endpoint(s))` : ` (${state.detail})`;
  try {
    const answer = await kubeGet(kc, path, timeoutMs);
    if (answer.status >= 200 && answer.status < 300) {
      add({
        name: 'webhook-answers',
        code: 'webhook-answers-ok',
        status: 'ok',
        detail: `the ${target} answered /healthz through the API server's service proxy${endpoints}`,
      });
    } else if (answer.status === 401 || answer.status === 403) {
      add({ name: 'webhook-answers', code: 'webhook-answers-forbidden', status: 'warn', detail: `could not ask the ${target}: ${answerError(answer)} (needs get on services/proxy)${endpoints}` });
    } else {
      add({ name: 'webhook-answers', code: 'webhook-answers-error', status: 'fail', detail: `the ${target} does not answer through the API server's service proxy: ${answerError(answer)}${endpoints}` });
      failed = true;
    }
  } catch (err) {
    const message = (err as Error).message;
    const timedOut = err instanceof KubeTimeoutError;
    add({
      name: 'webhook-answers',
      code: timedOut ? 'webhook-answers-timeout' : 'webhook-answers-unreachable',
      status: 'fail',
      detail: timedOut
        ? `the ${target} did not answer within ${timeoutMs / 1000} s through the API server's service proxy${endpoints}: the webhook is hanging or a network policy drops the traffic`
        : `the ${target} does not answer: ${message}`,
    });
    failed = true;
  }

  // The proxy does not verify the serving certificate; the API server does. Match the caBundle
  // against it directly when an endpoint is reachable from here (inside the cluster, usually).
  const endpoint = state.ready[0];
  if (!endpoint) {
    add({ name: 'webhook-tls', code: 'webhook-tls-no-endpoint', status: 'skip', detail: 'no endpoint to connect to: the caBundle was not matched against the serving certificate' });
  } else if (ca.pem) {
    const name = `${svc.name}.${svc.namespace}.svc`;
    const probe = await probeServing({ host: endpoint.ip, port: endpoint.port, name, caPem: ca.pem, timeoutMs: Math.min(timeoutMs, 5000) });
    if (!probe.reached) {
      add({ name: 'webhook-tls', code: 'webhook-tls-unreachable', status: 'skip', detail: `${probe.detail}; run doctor inside the cluster to match the caBundle against the serving certificate` });
    } else {
      const verified = probe.verified === true;
      add({ name: 'webhook-tls', code: verified ? 'webhook-tls-verified' : 'webhook-tls-unverified', status: verified ? 'ok' : 'fail', detail: verified ? `the serving certificate of endpoint ${endpoint.ip}:${endpoint.port} verifies with the caBundle for ${name}` : probe.detail });
      if (!verified) failed = true;
    }
  }
  return failed;
}
