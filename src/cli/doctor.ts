// `doctor`: explains what a new pod of a ServiceAccount gets from the webhook
// and, when it gets nothing or cannot assume its role, why.
import type { KubeConfig } from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import { DEFAULT_MUTATION_OPTIONS } from '../config.js';
import { type CheckStatus, DEFAULT_WEBHOOK_CONFIG, type DoctorReport, runDoctorChecks } from '../doctor/checks.js';
import { parseTrustPolicy, type TrustPolicy, TrustPolicyError } from '../doctor/trust-policy.js';
import { issuerProblem } from '../oidc/keys.js';
import { reportFailure } from './certs.js';
import { addKubeConnectionFlags, durationOption, kubeConfigFromFlags, UsageError } from './flags.js';
import { KubeConfigError, loadKubeConfig, NoKubeConfigError } from '../kube/client.js';
import { readText } from './input.js';
import type { CommandIO } from './mutate.js';

export interface DoctorFlags {
  namespace?: string;
  serviceAccount?: string;
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
  output?: 'text' | 'json';
  /** Per network call, milliseconds. */
  timeout?: number;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function required(flag: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

function loadPolicy(path: string): TrustPolicy {
  const text = readText('--trust-policy', path);
  try {
    return parseTrustPolicy(text);
  } catch (err) {
    if (err instanceof TrustPolicyError) throw new UsageError(`--trust-policy ${path}: ${err.message}`);
    throw err;
  }
}

function clusterFrom(flags: DoctorFlags): KubeConfig | undefined {
  if (flags.offline) {
    if (flags.kubeconfig || flags.kubeApi || flags.context) throw new UsageError('--offline does not go with --kubeconfig, --context or --kube-api');
    return undefined;
  }
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
  const namespace = required('--namespace', flags.namespace);
  const serviceAccount = required('--service-account', flags.serviceAccount);
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) throw new UsageError(`--namespace "${namespace}" is not a valid namespace name`);
  if (serviceAccount.length > 253 || !DNS_SUBDOMAIN.test(serviceAccount)) {
    throw new UsageError(`--service-account "${serviceAccount}" is not a valid ServiceAccount name`);
  }
  const prefix = flags.annotationPrefix ?? DEFAULT_MUTATION_OPTIONS.annotationPrefix;
  if (prefix.trim() === '' || prefix.includes('/')) throw new UsageError(`--annotation-prefix "${prefix}" must be a non-empty DNS prefix without "/"`);
  const output = flags.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`--output "${String(output)}" must be text or json`);
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
  });
  if (output === 'json') io.stdout(JSON.stringify(report, null, 2));
  else for (const line of renderText(report)) io.stdout(line);
  return report;
}

const LABELS: Record<CheckStatus, string> = { ok: 'ok', fail: 'FAIL', skip: 'skip', warn: 'warn' };

export function renderText(report: DoctorReport): string[] {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const indent = ' '.repeat(5 + width + 2);
  const lines = [`ServiceAccount ${report.namespace}/${report.serviceAccount} (token subject ${report.subject})`, ''];
  for (const c of report.checks) {
    lines.push(`${LABELS[c.status].padEnd(5)}${c.name.padEnd(width)}  ${c.detail}`);
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
    .option('--namespace <name>', 'namespace of the ServiceAccount (required)')
    .option('--service-account <name>', 'name of the ServiceAccount (required)')
    .option('--trust-policy <file>', 'the role\'s trust policy (JSON; aws iam get-role output works too)')
    .option('--offline', 'do not contact a cluster, even inside one')
    .option('--issuer <url>', 'the service account issuer (default: the API server\'s, from discovery)')
    .option('--audience <aud>', `token audience when the ServiceAccount sets none (the webhook's --token-audience; default ${DEFAULT_MUTATION_OPTIONS.tokenAudience})`)
    .option('--role-arn <arn>', 'offline: the role ARN the ServiceAccount\'s annotation would give')
    .option('--webhook-config <name>', 'name of the MutatingWebhookConfiguration', DEFAULT_WEBHOOK_CONFIG)
    .option('--annotation-prefix <prefix>', 'prefix of the ServiceAccount annotations', DEFAULT_MUTATION_OPTIONS.annotationPrefix)
    .addOption(durationOption('--timeout <duration>', 'deadline of each network call (default: 10s)'))
    .addOption(new Option('--output <format>', 'what to print').choices(['text', 'json']).default('text'));
  return addKubeConnectionFlags(cmd)
    .action(async (flags: DoctorFlags) => {
      try {
        const report = await runDoctor(flags, io);
        if (!report.ok) process.exitCode = 1;
      } catch (err) {
        reportFailure(err, io);
      }
    });
}
