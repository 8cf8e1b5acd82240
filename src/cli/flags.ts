// Flag definitions shared by the commands: upstream's names and defaults,
// parsed with Go's rules (`--flag value`, `--flag=value`, booleans as `--flag`
// or `--flag=true|false`, durations such as `2s`).
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type KubeConnection, type KubeConnectionFlags, KubeConfigError, loadKubeConfig } from '../kube/client.js';
import { DEFAULT_MUTATION_OPTIONS as D, MIN_TOKEN_EXPIRATION, type MutationOptions, ROLE_SESSION_NAME_POD_NAME, type RoleSessionNameMode } from '../config.js';
import { parseGoBool, parseGoInt } from '../settings/values.js';

/** Thrown for bad input the user can fix; the CLI prints its message and exits 2. */
export class UsageError extends Error {}

/** A command failed for a reason outside the command line; one line, exit 1. */
export class CommandError extends Error {}

/**
 * The API server as kubectl finds it: --kubeconfig, KUBECONFIG, in-cluster,
 * ~/.kube/config (then --context and --kube-api); a configuration that cannot
 * be used is a usage error.
 */
export function kubeConfigFromFlags(flags: KubeConnectionFlags): KubeConnection {
  try {
    return loadKubeConfig({ kubeconfig: flags.kubeconfig, kubeApi: flags.kubeApi, context: flags.context, inCluster: flags.inCluster });
  } catch (err) {
    if (err instanceof KubeConfigError) throw new UsageError(err.message);
    throw err;
  }
}

export function boolFlag(text: string): boolean {
  const value = parseGoBool(text);
  if (value === undefined) throw new InvalidArgumentError('expected true or false.');
  return value;
}

export function intFlag(text: string): number {
  const value = parseGoInt(text);
  if (value === undefined) throw new InvalidArgumentError('expected a whole number.');
  return value;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** An RFC 1123 label (namespace and Service names): lower-case letters, digits and "-", at most 63. */
export const isDnsLabel = (text: string): boolean => text.length <= 63 && DNS_LABEL.test(text);

/** An RFC 1123 subdomain (most object names): labels joined by ".", at most 253. */
export const isDnsSubdomain = (text: string): boolean => text.length <= 253 && text.split('.').every(isDnsLabel);

/** A repeatable flag; a comma-separated value counts as several, as with Go's string slices. */
export function listFlag(text: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...text.split(',').map((v) => v.trim()).filter((v) => v !== '')];
}

/** -n / --namespace: a DNS label, as the API server requires. */
export function namespaceFlag(text: string): string {
  if (!isDnsLabel(text)) throw new InvalidArgumentError('not a valid namespace name (lower-case letters, digits and "-", at most 63).');
  return text;
}

/** -n, --namespace <name>: a DNS label, checked as it is parsed; `description` says whose namespace it is. */
export function namespaceOption(description: string, defaultValue?: string): Option {
  const option = new Option('-n, --namespace <name>', description).argParser(namespaceFlag);
  return defaultValue === undefined ? option : option.default(defaultValue);
}

/** -o, --output <format>: one of `formats`, which commander checks and --help and completion list. */
export function outputOption<T extends string>(description: string, formats: readonly T[], defaultValue: T): Option {
  return new Option('-o, --output <format>', description).choices(formats).default(defaultValue);
}

export function nonNegativeIntFlag(text: string): number {
  const value = intFlag(text);
  if (value < 0) throw new InvalidArgumentError('expected a number of 0 or more.');
  return value;
}

/** --kubeconfig, --context and --kube-api, the same on every command that talks to a cluster. */
export function addKubeConnectionFlags(cmd: Command, purpose = ''): Command {
  return cmd
    .option('--kubeconfig <file>', `kubeconfig${purpose} (default: $KUBECONFIG, then in-cluster, then ~/.kube/config)`)
    .option('--context <name>', 'kubeconfig context to use (default: its current-context)')
    .option('--kube-api <url>', 'API server URL, overriding the kubeconfig\'s');
}

/** Help text of every duration flag: what it accepts. */
export const DURATION_HELP = 'Go duration: 500ms, 2s, 1m30s; a bare number is seconds';

/** Milliseconds in Go's duration notation, as --help shows defaults: 100ms, 2s, 1m, 1m30s, 1h. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  let rest = ms;
  let out = '';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  if (rest > 0) out += `${rest / 1000}s`;
  return out;
}

/** A duration option whose --help shows its default in Go notation. */
export function durationOption(flags: string, description: string, defaultMs?: number, parse: (text: string) => number = durationFlag): Option {
  const option = new Option(flags, `${description} (${DURATION_HELP})`).argParser(parse);
  return defaultMs === undefined ? option : option.default(defaultMs, formatGoDuration(defaultMs));
}

/** A Go duration such as 2s, 500ms, 1m30s, or a plain number of seconds; returns milliseconds. */
export function durationFlag(text: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (/^\d+(\.\d+)?$/.test(text)) return durationFlag(`${text}s`);
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new InvalidArgumentError('expected a duration such as 2s, 500ms or 1m.');
  }
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] as string] ?? 0), 0);
}

/** A duration that becomes a timer: Node timers hold at most 2^31-1 ms, and a longer one fires at once. */
export function timerFlag(text: string): number {
  const ms = durationFlag(text);
  if (ms > 2 ** 31 - 1) throw new InvalidArgumentError('expected a duration of at most 24 days.');
  return ms;
}

export interface MutationFlagValues {
  annotationPrefix: string;
  tokenAudience: string;
  tokenMountPath: string;
  tokenExpiration: number;
  awsDefaultRegion: string;
  stsRegionalEndpoint: boolean;
  containerCredentialsFullUri: string;
  containerCredentialsAudience: string;
  containerCredentialsTokenMountPath: string;
  containerCredentialsTokenVolumeName: string;
  containerCredentialsTokenPath: string;
  watchContainerCredentialsConfig?: string;
  roleSessionName?: RoleSessionNameMode | undefined;
  mutateEphemeralContainers?: boolean;
}

/** --role-session-name: `pod-name`, or `none` (and empty) for off, the default. */
export function roleSessionNameFlag(text: string): RoleSessionNameMode | undefined {
  if (text === ROLE_SESSION_NAME_POD_NAME) return ROLE_SESSION_NAME_POD_NAME;
  if (text === 'none' || text === '') return undefined;
  throw new InvalidArgumentError(`expected ${ROLE_SESSION_NAME_POD_NAME} or none.`);
}

export function addMutationFlags(cmd: Command): Command {
  const cc = D.containerCredentials;
  return cmd
    .option('--annotation-prefix <prefix>', 'prefix of the ServiceAccount and pod annotations', D.annotationPrefix)
    .option('--token-audience <audience>', 'default audience of the projected token', D.tokenAudience)
    .option('--token-mount-path <path>', 'where the web identity token is mounted', D.tokenMountPath)
    .option('--token-expiration <seconds>', `default token lifetime (minimum ${MIN_TOKEN_EXPIRATION})`, intFlag, D.tokenExpiration)
    .option('--aws-default-region <region>', 'inject AWS_DEFAULT_REGION and AWS_REGION unless a container sets either', D.region)
    .option('--sts-regional-endpoint [bool]', 'inject AWS_STS_REGIONAL_ENDPOINTS=regional', boolFlag, D.regionalSts)
    .option('--container-credentials-full-uri <uri>', 'AWS_CONTAINER_CREDENTIALS_FULL_URI for container credentials', cc.fullUri)
    .option('--container-credentials-audience <audience>', 'audience of the container-credentials token', cc.audience)
    .option('--container-credentials-token-mount-path <path>', 'where the container-credentials token is mounted', cc.mountPath)
    .option('--container-credentials-token-volume-name <name>', 'name of the container-credentials token volume', cc.volumeName)
    .option('--container-credentials-token-path <file>', 'file name of the container-credentials token', cc.tokenPath)
    .option('--watch-container-credentials-config <file>', 'identities file: ServiceAccounts that get container credentials')
    .option('--role-session-name <mode>', `${ROLE_SESSION_NAME_POD_NAME}: every web-identity container gets AWS_ROLE_SESSION_NAME = its pod's name; none: only pods and ServiceAccounts annotated role-session-name (default: none)`, roleSessionNameFlag)
    .option('--mutate-ephemeral-containers [bool]', 'also give ephemeral (debug) containers added to a pod the identity the pod has (needs the pods/ephemeralcontainers rule in the webhook configuration)', boolFlag, false);
}

/** Flags -> engine options; `warn` hears about values that were adjusted. */
export function mutationOptionsFromFlags(f: MutationFlagValues, warn: (msg: string) => void): MutationOptions {
  let tokenExpiration = f.tokenExpiration;
  if (tokenExpiration < MIN_TOKEN_EXPIRATION) {
    warn(`--token-expiration ${tokenExpiration} is below the minimum of ${MIN_TOKEN_EXPIRATION} seconds; ${MIN_TOKEN_EXPIRATION} is used`);
    tokenExpiration = MIN_TOKEN_EXPIRATION;
  }
  if (f.annotationPrefix.trim() === '' || f.annotationPrefix.includes('/')) {
    throw new UsageError(`--annotation-prefix "${f.annotationPrefix}" must be a non-empty DNS prefix without "/"`);
  }
  return {
    annotationPrefix: f.annotationPrefix,
    tokenAudience: f.tokenAudience,
    tokenMountPath: f.tokenMountPath,
    tokenExpiration,
    region: f.awsDefaultRegion,
    regionalSts: f.stsRegionalEndpoint,
    containerCredentials: {
      fullUri: f.containerCredentialsFullUri,
      audience: f.containerCredentialsAudience,
      mountPath: f.containerCredentialsTokenMountPath,
      volumeName: f.containerCredentialsTokenVolumeName,
      tokenPath: f.containerCredentialsTokenPath,
    },
    roleSessionName: f.roleSessionName,
    mutateEphemeralContainers: f.mutateEphemeralContainers ?? false,
  };
}
