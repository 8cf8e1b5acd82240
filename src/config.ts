// Every annotation name, label and default of the webhook lives here, so the
// engine, the CLI, the server and the docs cannot drift apart.

/** Annotation suffixes; the prefix is `--annotation-prefix` (default eks.amazonaws.com). */
export const ANNOTATION = {
  roleArn: 'role-arn',
  audience: 'audience',
  stsRegionalEndpoints: 'sts-regional-endpoints',
  tokenExpiration: 'token-expiration',
  skipContainers: 'skip-containers',
  /** Pod annotation (opt-in, not in the reference): only these containers get credentials. */
  includeContainers: 'include-containers',
  /** ServiceAccount or pod annotation (opt-in, not in the reference): `pod-name`. */
  roleSessionName: 'role-session-name',
} as const;

/**
 * How AWS_ROLE_SESSION_NAME is set (web identity only): `pod-name` injects the
 * pod's name through the downward API. The only value the annotation accepts.
 */
export const ROLE_SESSION_NAME_POD_NAME = 'pod-name';
export type RoleSessionNameMode = typeof ROLE_SESSION_NAME_POD_NAME;
/** STS accepts session names of at most this many characters. */
export const MAX_ROLE_SESSION_NAME_LENGTH = 64;
/**
 * STS refuses a RoleArn longer than this, so a longer value can never work;
 * it is ignored rather than copied into every container's environment.
 */
export const MAX_ROLE_ARN_LENGTH = 2048;
/** The API server cuts generateName to this many characters and appends 5 random ones. */
export const MAX_GENERATE_NAME_BASE = 58;
export const GENERATED_NAME_SUFFIX = 5;

/** Label added to pods mutated for container credentials (EKS Pod Identity). */
export const POD_IDENTITY_LABEL = 'eks.amazonaws.com/pod-identity';
/** Name of the ConfigMap that maps ServiceAccounts to roles in ConfigMap mode. */
export const CONFIG_MAP_NAME = 'pod-identity-webhook';

export const WEB_IDENTITY_VOLUME_NAME = 'aws-iam-token';
export const WEB_IDENTITY_TOKEN_FILE = 'token';

export const MIN_TOKEN_EXPIRATION = 600;
export const DEFAULT_TOKEN_EXPIRATION = 86400;
/** Container-credentials tokens with the default lifetime are spread over [floor, default]. */
export const TOKEN_EXPIRATION_JITTER_FLOOR = 79200;

export const ENV = {
  roleArn: 'AWS_ROLE_ARN',
  tokenFile: 'AWS_WEB_IDENTITY_TOKEN_FILE',
  fullUri: 'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  authTokenFile: 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  region: 'AWS_REGION',
  defaultRegion: 'AWS_DEFAULT_REGION',
  stsRegionalEndpoints: 'AWS_STS_REGIONAL_ENDPOINTS',
  roleSessionName: 'AWS_ROLE_SESSION_NAME',
} as const;

export interface ContainerCredentialsOptions {
  fullUri: string;
  audience: string;
  mountPath: string;
  volumeName: string;
  tokenPath: string;
}

/** What the mutation engine needs from the flags. */
export interface MutationOptions {
  annotationPrefix: string;
  tokenAudience: string;
  tokenMountPath: string;
  tokenExpiration: number;
  /** `--aws-default-region`; empty means "do not inject a region". */
  region: string;
  /** `--sts-regional-endpoint`. */
  regionalSts: boolean;
  containerCredentials: ContainerCredentialsOptions;
  /** `--role-session-name`: for every web-identity pod; unset (the default) leaves it to annotations. */
  roleSessionName?: RoleSessionNameMode | undefined;
  /** `--mutate-ephemeral-containers`: also handle UPDATE of pods/ephemeralcontainers (default off). */
  mutateEphemeralContainers?: boolean | undefined;
}

export const DEFAULT_MUTATION_OPTIONS: Readonly<MutationOptions> = Object.freeze({
  annotationPrefix: 'eks.amazonaws.com',
  tokenAudience: 'sts.amazonaws.com',
  tokenMountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount',
  tokenExpiration: DEFAULT_TOKEN_EXPIRATION,
  region: '',
  regionalSts: false,
  containerCredentials: Object.freeze({
    fullUri: 'http://169.254.170.23/v1/credentials',
    audience: 'pods.eks.amazonaws.com',
    mountPath: '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount',
    volumeName: 'eks-pod-identity-token',
    tokenPath: 'eks-pod-identity-token',
  }),
});

/** Defaults of `serve`. */
export const SERVER_DEFAULTS = Object.freeze({
  port: 8443,
  metricsPort: 9999,
  tlsCert: '/etc/webhook/certs/tls.crt',
  tlsKey: '/etc/webhook/certs/tls.key',
  tlsMinVersion: '1.2',
  namespace: 'default',
  resyncPeriodSeconds: 60,
  serviceAccountLookupGracePeriodMs: 2000,
  bodyLimitBytes: 6 * 1024 * 1024,
  shutdownTimeoutMs: 10_000,
  // Connection limits: well under the API server's webhook timeout (10 s by
  // default), and longer idle than its client's 90 s, so that the client, not the
  // webhook, closes idle keep-alive connections (no race with a request on them).
  requestHeaderTimeoutMs: 3_000,
  requestTimeoutMs: 5_000,
  idleTimeoutMs: 120_000,
  maxConnections: 1000,
  maxRequestsPerConnection: 0,
  // One maximum-size body (bodyLimitBytes) or five of the largest pods etcd
  // stores (1.5 MiB) at once; smaller bodies do not count (server/app.ts).
  maxInflightBodyBytes: 8 * 1024 * 1024,
  logLevel: 'info',
  logFormat: 'json',
  /** --compose-role-arn's partition when neither a flag nor instance metadata gives one. */
  awsPartition: 'aws',
  /** Page size of the initial ServiceAccount list. */
  listPageSize: 500,
  /** Server-side watch timeout; the reflector re-watches after it. */
  watchTimeoutSeconds: 300,
  /** A watch that delivers nothing (not even a bookmark) for this long is restarted. */
  watchSilenceMs: 90_000,
  /** At most this many direct ServiceAccount GETs run at once on cache misses. */
  lookupConcurrency: 10,
});

/** Defaults of `certs`. */
export const CERT_DEFAULTS = Object.freeze({
  service: 'pod-identity-webhook',
  namespace: 'pod-identity-webhook',
  outDir: 'certs',
  keyType: 'ec',
  days: 365,
  renewBeforeDays: 30,
});

/** Defaults of `serve --manage-certificates` (the Secret name is --tls-secret's). */
export const MANAGED_CERT_DEFAULTS = Object.freeze({
  /** --tls-secret, as the reference names it. */
  secretName: 'pod-identity-webhook',
  /** --service-name: the certificate's DNS names. */
  serviceName: 'pod-identity-webhook',
  leaseName: 'pod-identity-webhook',
  webhookConfigurationName: 'pod-identity-webhook',
  caLifetimeMs: 43_800 * 3_600_000,
  certificateLifetimeMs: 8_760 * 3_600_000,
  /** Renew when this fraction of a lifetime has passed. */
  renewFraction: 2 / 3,
  /**
   * Wait between writing a new CA bundle and serving a certificate of that CA,
   * and again before the old CA leaves the bundle: the API server's webhook
   * informer and every replica's Secret watch pick changes up within seconds.
   */
  caOverlapMs: 2 * 60_000,
  /** Lease: held this long without renewal, renewed this often. */
  leaseDurationSeconds: 15,
  leaseRenewMs: 5_000,
});
