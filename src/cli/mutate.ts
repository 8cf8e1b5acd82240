// `mutate`: the engine on files, for dry runs, CI checks and debugging.
import { randomUUID } from 'node:crypto';
import { Command, Option } from 'commander';
import jsonpatch from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { CONFIG_MAP_NAME } from '../config.js';
import { type ConfigMapIdentities, parseConfigMapConfig } from '../identity/config-map.js';
import { parseContainerCredentialsConfig } from '../identity/container-credentials.js';
import { parseServiceAccountAnnotations, type ServiceAccountSettings } from '../identity/service-account.js';
import { mutatePod, type MutationResult, serviceAccountNameOf } from '../mutation/index.js';
import { addMutationFlags, type MutationFlagValues, mutationOptionsFromFlags, UsageError } from './flags.js';
import { type KubeObject, readKubeObject, readText } from './input.js';

interface MutateFlags extends MutationFlagValues {
  pod: string;
  serviceAccount?: string;
  configMap?: string;
  output: 'patch' | 'pod' | 'review';
}

export interface CommandIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

function loadPod(path: string): V1Pod {
  const pod = readKubeObject('--pod', path, 'Pod') as V1Pod;
  const spec = pod.spec as { containers?: unknown } | undefined;
  if (!spec || !Array.isArray(spec.containers)) {
    throw new UsageError(`--pod ${path}: the Pod has no spec.containers list`);
  }
  return pod;
}

function loadServiceAccount(path: string, namespace: string, name: string): KubeObject | undefined {
  const sa = readKubeObject('--service-account', path, 'ServiceAccount');
  const saNamespace = sa.metadata?.namespace || 'default';
  // A ServiceAccount for another pod is, for this pod, a ServiceAccount that does not exist.
  if (sa.metadata?.name !== name || saNamespace !== namespace) return undefined;
  return sa;
}

function loadConfigMap(path: string): ConfigMapIdentities {
  const cm = readKubeObject('--config-map', path, 'ConfigMap');
  const data = cm['data'] as Record<string, unknown> | undefined;
  const config = data?.['config'];
  if (config !== undefined && typeof config !== 'string') {
    throw new UsageError(`--config-map ${path}: data.config must be a string holding JSON`);
  }
  try {
    return parseConfigMapConfig(config);
  } catch (err) {
    throw new UsageError(`--config-map ${path}: ${(err as Error).message}`);
  }
}

function loadIdentities(path: string): Set<string> {
  try {
    return parseContainerCredentialsConfig(readText('--watch-container-credentials-config', path));
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`--watch-container-credentials-config ${path}: ${(err as Error).message}`);
  }
}

function render(format: MutateFlags['output'], pod: V1Pod, result: MutationResult): string {
  if (format === 'patch') return JSON.stringify(result.patch, null, 2);
  if (format === 'pod') {
    try {
      return JSON.stringify(jsonpatch.applyPatch(pod, result.patch, true, false).newDocument, null, 2);
    } catch (err) {
      throw new UsageError(`the patch does not apply to this pod: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const response: Record<string, unknown> = { uid: pod.metadata?.uid ?? randomUUID(), allowed: true };
  if (result.patch.length > 0) {
    response['patchType'] = 'JSONPatch';
    response['patch'] = Buffer.from(JSON.stringify(result.patch)).toString('base64');
  }
  if (result.warnings.length > 0) response['warnings'] = result.warnings;
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }, null, 2);
}

export function runMutate(flags: MutateFlags, io: CommandIO): void {
  const options = mutationOptionsFromFlags(flags, (m) => io.stderr(`warning: ${m}`));
  const pod = loadPod(flags.pod);
  const namespace = pod.metadata?.namespace || 'default';
  const name = serviceAccountNameOf(pod);
  const saObject = flags.serviceAccount ? loadServiceAccount(flags.serviceAccount, namespace, name) : undefined;
  const configMap = flags.configMap ? loadConfigMap(flags.configMap) : undefined;
  const containerCredentials = flags.watchContainerCredentialsConfig
    ? loadIdentities(flags.watchContainerCredentialsConfig)
    : undefined;
  const serviceAccount: ServiceAccountSettings | undefined = saObject
    ? parseServiceAccountAnnotations(saObject.metadata?.annotations, options.annotationPrefix)
    : undefined;

  const result = mutatePod(pod, namespace, { serviceAccount, configMap, containerCredentials }, options);
  if (flags.serviceAccount && saObject === undefined) {
    io.stderr(`warning: the ServiceAccount in ${flags.serviceAccount} is not ${namespace}/${name}, the pod's; treated as not found`);
  }
  for (const w of result.warnings) io.stderr(`warning: ${w}`);
  io.stdout(render(flags.output, pod, result));
}

export function mutateCommand(io: CommandIO): Command {
  const cmd = new Command('mutate')
    .description('print the change the webhook makes to a pod (a dry run on files)')
    .requiredOption('--pod <file>', 'the Pod, YAML or JSON; - reads standard input')
    .option('--service-account <file>', 'the pod\'s ServiceAccount, YAML or JSON')
    .option('--config-map <file>', `the ${CONFIG_MAP_NAME} ConfigMap (ConfigMap mode)`)
    .addOption(new Option('--output <format>', 'what to print').choices(['patch', 'pod', 'review']).default('patch'));
  addMutationFlags(cmd);
  return cmd.action((flags: MutateFlags) => runMutate(flags, io));
}
