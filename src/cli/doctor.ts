// `doctor`: explains what a new pod of a ServiceAccount gets from the webhook
// and, when it gets nothing or cannot assume its role, why.
import type { KubeConnection } from '../kube/client.js';
import { Command, Option } from 'commander';
import { DEFAULT_MUTATION_OPTIONS, type MutationOptions } from '../config.js';
import { type CheckStatus, DEFAULT_WEBHOOK_CONFIG, type DoctorReport, runDoctorChecks } from '../doctor/checks.js';
import { parseTrustPolicy, type TrustPolicy, TrustPolicyError } from '../doctor/trust-policy.js';
import { issuerProblem } from '../oidc/keys.js';
import { reportFailure } from './certs.js';
import {
  addKubeConnectionFlags,
  addMutationFlags,
  durationOption,
  isDnsSubdomain,
  kubeConfigFromFlags,
  type MutationFlagValues,
  mutationOptionsFromFlags,
  namespaceOption,
  outputOption,
  UsageError,
} from './flags.js';
import { KubeConfigError, loadKubeConfig, NoKubeConfigError } from '../kube/client.js';
import { readText, toYaml } from './input.js';
import type { CommandIO } from './mutate.js';

export interface DoctorFlags extends Partial<Omit<MutationFlagValues, 'annotationPrefix'>> {
  namespace: string;
  serviceAccount: string;
  trustPolicy?: string;
  kubeconfig?: string;
  kubeApi?: string;
  context?: string;
  /** Never contact a cluster, even in one. */
  offline?: boolean;
  issuer?: string;
  audience?: string;
  roleArn?: string;
  webhookConfig?: string;
  annotationPrefix?: string;
  output?: DoctorOutput;
  /** Per network call, milliseconds. */
  timeout?: number;
}


const DOCTOR_OUTPUTS = ['text', 'json', 'yaml'] as const;
type DoctorOutput = (typeof DOCTOR_OUTPUTS)[number];

function loadPolicy(path: string): TrustPolicy {
  const text = readText('--trust-policy', path);
  try {
    return parseTrustPolicy(text);
  } catch (err) {
    if (err instanceof TrustPolicyError) throw new UsageError(`--trust-policy ${path}: ${err.message}`);
    throw err;
  }
}

function clusterFrom(flags: DoctorFlags): KubeConnection | undefined {
  // --offline with --kubeconfig, --context or --kube-api is refused by commander (Option.conflicts).
  if (flags.offline) return undefined;
  if (flags.kubeconfig || flags.kubeApi || flags.context) return kubeConfigFromFlags(flags);
  // Found the way kubectl finds it; none at all means the checks run offline.
  try {
    return loadKubeConfig({});
  } catch (err) {
    if (err instanceof NoKubeConfigError) return undefined;
    if (err instanceof KubeConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/** Checks the flags, runs the checks, prints the report; the caller turns `ok` into the exit code. */
export async function runDoctor(flags: DoctorFlags, io: CommandIO): Promise<DoctorReport> {
  // Commander makes both mandatory and checks --namespace as it parses it; called directly, the caller does.
  const { namespace, serviceAccount } = flags;
  if (!isDnsSubdomain(serviceAccount)) {
    throw new UsageError(`--service-account "${serviceAccount}" is not a valid ServiceAccount name`);
  }
  const prefix = flags.annotationPrefix ?? DEFAULT_MUTATION_OPTIONS.annotationPrefix;
  if (prefix.trim() === '' || prefix.includes('/')) throw new UsageError(`--annotation-prefix "${prefix}" must be a non-empty DNS prefix without "/"`);
  const output = flags.output ?? 'text';
  if (flags.issuer !== undefined) {
    const problem = issuerProblem(flags.issuer);
    if (problem) throw new UsageError(`--issuer "${flags.issuer}" ${problem}`);
  }
  if (flags.audience !== undefined && flags.audience.trim() === '') throw new UsageError('--audience must not be empty');
  if (flags.timeout !== undefined && !(flags.timeout > 0)) throw new UsageError('--timeout must be longer than 0');
  const trustPolicy = flags.trustPolicy !== undefined ? loadPolicy(flags.trustPolicy) : undefined;

  const kubeConfig = clusterFrom(flags);
  if (kubeConfig && flags.roleArn !== undefined) {
    throw new UsageError('--role-arn is for offline checks; with a cluster the ServiceAccount\'s annotation is used');
  }
  if (!kubeConfig && flags.issuer === undefined) {
    throw new UsageError(
      'no cluster: give --kubeconfig or --kube-api (none found in KUBECONFIG, in-cluster or ~/.kube/config), or --issuer to check a trust policy offline',
    );
  }

  const report = await runDoctorChecks({
    namespace,
    serviceAccount,
    kubeConfig,
    trustPolicy,
    issuer: flags.issuer,
    roleArn: flags.roleArn,
    audience: flags.audience,
    webhookConfig: flags.webhookConfig ?? DEFAULT_WEBHOOK_CONFIG,
    annotationPrefix: prefix,
    timeoutMs: flags.timeout,
    webhookOptions: (args) => webhookOptions(flags, prefix, args),
  });
  if (output === 'json') io.stdout(JSON.stringify(report, null, 2));
  else if (output === 'yaml') io.stdout(toYaml(report));
  else for (const line of renderText(report)) io.stdout(line);
  return report;
}

/** The mutation flags' attribute names and defaults (those of `serve`). */
function mutationFlagDefaults(): { keys: string[]; defaults: MutationFlagValues } {
  const cmd = addMutationFlags(new Command());
  return { keys: cmd.options.map((o) => o.attributeName()), defaults: cmd.opts<MutationFlagValues>() };
}

/** The mutation flags given in a webhook's args; undefined when they do not parse. */
export function parseWebhookArgs(args: string[]): Partial<MutationFlagValues> | undefined {
  const cmd = addMutationFlags(new Command('serve'))
    .allowUnknownOption()
    .allowExcessArguments()
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  try {
    cmd.parse(args, { from: 'user' });
  } catch {
    return undefined;
  }
  const values = cmd.opts<Record<string, unknown>>();
  return Object.fromEntries(Object.keys(values).filter((k) => cmd.getOptionValueSource(k) === 'cli').map((k) => [k, values[k]]));
}

/**
 * The options a pod gets: the defaults, then the webhook's own flags (its
 * Deployment's args), then what the doctor command line says.
 */
export function webhookOptions(flags: Partial<DoctorFlags>, prefix: string, args: string[] | undefined): MutationOptions {
  const { keys, defaults } = mutationFlagDefaults();
  const given = Object.fromEntries(keys.filter((k) => (flags as Record<string, unknown>)[k] !== undefined).map((k) => [k, (flags as Record<string, unknown>)[k]]));
  const explicit: Partial<MutationFlagValues> = { ...given, ...(flags.audience !== undefined ? { tokenAudience: flags.audience } : {}) };
  if (flags.annotationPrefix !== undefined) explicit.annotationPrefix = prefix;
  const fromWebhook = args ? parseWebhookArgs(args) ?? {} : {};
  try {
    return mutationOptionsFromFlags({ ...defaults, ...fromWebhook, ...explicit }, () => undefined);
  } catch {
    // The webhook's own flags are refused (it would not start with them): go by the command line.
    return mutationOptionsFromFlags({ ...defaults, ...explicit }, () => undefined);
  }
}

const LABELS: Record<CheckStatus, string> = { ok: 'ok', fail: 'FAIL', skip: 'skip', warn: 'warn' };

export function renderText(report: DoctorReport): string[] {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const indent = ' '.repeat(5 + width + 2);
  const lines = [`ServiceAccount ${report.namespace}/${report.serviceAccount} (token subject ${report.subject})`, ''];
  for (const c of report.checks) {
    // Problems carry their code, to search for in the README or match in scripts.
    const code = c.status === 'fail' || c.status === 'warn' ? ` [${c.code}]` : '';
    lines.push(`${LABELS[c.status].padEnd(5)}${c.name.padEnd(width)}  ${c.detail}${code}`);
    for (const d of c.details ?? []) lines.push(`${indent}- ${d}`);
  }
  const count = (s: CheckStatus): number => report.checks.filter((c) => c.status === s).length;
  const failed = count('fail');
  const ran = report.checks.length - count('skip');
  const tail = [count('warn') ? `${count('warn')} warning(s)` : '', count('skip') ? `${count('skip')} skipped` : ''].filter((s) => s !== '').join(', ');
  lines.push('', `${failed === 0 ? `All ${ran} checks that ran passed` : `${failed} of ${ran} checks failed`}${tail ? ` (${tail})` : ''}.`);
  return lines;
}

export function doctorCommand(io: CommandIO): Command {
  const cmd = new Command('doctor')
    .description('explain what a new pod of a ServiceAccount gets from the webhook and whether it can assume its role')
    .addOption(namespaceOption('namespace of the ServiceAccount (required)').makeOptionMandatory())
    .addOption(new Option('--service-account <name>', 'name of the ServiceAccount (required)').makeOptionMandatory())
    .option('--trust-policy <file>', 'the role\'s trust policy (JSON; aws iam get-role output works too)')
    .addOption(new Option('--offline', 'do not contact a cluster, even inside one').conflicts(['kubeconfig', 'context', 'kubeApi']))
    .option('--issuer <url>', 'the service account issuer (default: the API server\'s, from discovery)')
    .option('--audience <aud>', `token audience when the ServiceAccount sets none (the webhook's --token-audience; default ${DEFAULT_MUTATION_OPTIONS.tokenAudience})`)
    .option('--role-arn <arn>', 'offline: the role ARN the ServiceAccount\'s annotation would give')
    .option('--webhook-config <name>', 'name of the MutatingWebhookConfiguration', DEFAULT_WEBHOOK_CONFIG)
    .addOption(durationOption('--timeout <duration>', 'deadline of each network call (default: 10s)'))
    .addOption(outputOption('what to print', DOCTOR_OUTPUTS, 'text'));
  // The webhook's flags: doctor reads them from its Deployment; given here, they win.
  addMutationFlags(cmd);
  cmd.addHelpText('after', `
The webhook's flags (--annotation-prefix to --container-credentials-token-path) are read
from the args of the webhook's Deployment when doctor finds it; the defaults above apply
otherwise, and flags given here override both.`);
  return addKubeConnectionFlags(cmd).action(async (all: DoctorFlags, command: Command) => {
    // Only flags given on the command line override the webhook's own.
    const { keys } = mutationFlagDefaults();
    const flags = Object.fromEntries(Object.entries(all).filter(([k]) => !keys.includes(k) || command.getOptionValueSource(k) === 'cli')) as DoctorFlags;
    try {
      const report = await runDoctor(flags, io);
      if (!report.ok) process.exitCode = 1;
    } catch (err) {
      reportFailure(err, io);
    }
  });
}
