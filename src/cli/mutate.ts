// `mutate`: the engine on files, for dry runs, CI checks and debugging. It
// reads Pods and the pod templates of workloads (Deployment, StatefulSet,
// DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, PodTemplate)
// from one stream - a manifest, `kubectl get -o yaml` output - with the
// ServiceAccounts they run as, and mutates each pod (template) as the webhook
// mutates the pods it admits.
import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import jsonpatch from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { CONFIG_MAP_NAME, type MutationOptions } from '../config.js';
import { type ConfigMapIdentities, parseConfigMapConfig } from '../settings/config-map.js';
import { parseContainerCredentialsConfig } from '../settings/container-credentials.js';
import { parseServiceAccountAnnotations } from '../settings/service-account.js';
import { mutateEphemeral, mutatePod, serviceAccountNameOf } from '../mutation/index.js';
import type { PatchOperation } from '../mutation/patch.js';
import { addMutationFlags, type MutationFlagValues, mutationOptionsFromFlags, namespaceOption, outputOption, UsageError } from './flags.js';
import { type KubeObject, type Located, type ObjectStream, readKubeObject, readObjectStream, readText, renderDocuments } from './input.js';

export const MUTATE_OUTPUTS = ['patch', 'pod', 'json', 'yaml', 'review'] as const;
export type MutateOutput = (typeof MUTATE_OUTPUTS)[number];

export interface MutateFlags extends MutationFlagValues {
  filename?: string;
  pod?: string;
  serviceAccount?: string;
  configMap?: string;
  /** The pod as stored before an UPDATE of pods/ephemeralcontainers; the input is the pod after it. */
  oldPod?: string;
  namespace?: string;
  output: MutateOutput;
}

export interface CommandIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** Where each kind keeps the template of the pods it creates. */
export const POD_TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
  PodTemplate: ['template'],
};

/** A Pod, or a workload's pod template seen as the pod it becomes. */
interface Target {
  located: Located;
  /** "Pod shop/web", "Deployment shop/api". */
  label: string;
  namespace: string;
  pod: V1Pod;
  /** JSON pointer of the pod (template) inside its document. */
  prefix: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function targetOf(stream: ObjectStream, located: Located, defaultNamespace: string): Target | undefined {
  const obj = located.object;
  const kind = obj.kind as string;
  const path = kind === 'Pod' ? [] : POD_TEMPLATE_PATHS[kind];
  if (!path) return undefined;
  const namespace = obj.metadata?.namespace || defaultNamespace;
  const label = `${kind} ${namespace}/${obj.metadata?.name ?? (obj.metadata as { generateName?: string } | undefined)?.generateName ?? '(unnamed)'}`;
  let template: unknown = obj;
  for (const key of path) template = isObject(template) ? template[key] : undefined;
  const where = `${stream.flag} ${stream.path}${located.where}`;
  const spec = isObject(template) ? template['spec'] : undefined;
  if (!isObject(spec) || !Array.isArray(spec['containers'])) {
    throw new UsageError(`${where}: the ${kind} has no ${[...path, 'spec', 'containers'].join('.')} list`);
  }
  const t = template as Record<string, unknown>;
  // The template's metadata and spec are what the pod gets; the engine only reads those.
  const pod: V1Pod = kind === 'Pod'
    ? (obj)
    : ({ apiVersion: 'v1', kind: 'Pod', ...(t['metadata'] !== undefined ? { metadata: t['metadata'] } : {}), spec } as unknown as V1Pod);
  const prefix = located.pointer + path.map((k) => `/${k}`).join('');
  return { located, label, namespace, pod, prefix };
}

function loadServiceAccounts(path: string, defaultNamespace: string, into: Map<string, KubeObject>): string[] {
  const stream = readObjectStream('--service-account', path);
  const names: string[] = [];
  for (const o of stream.objects) {
    if (o.object.kind !== 'ServiceAccount') {
      throw new UsageError(`--service-account ${path}${o.where}: is a ${o.object.kind}, not a ServiceAccount`);
    }
    const key = `${o.object.metadata?.namespace || defaultNamespace}/${o.object.metadata?.name ?? ''}`;
    into.set(key, o.object);
    names.push(key);
  }
  return names;
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

function review(pod: V1Pod, result: { patch: readonly PatchOperation[]; warnings: readonly string[] }): string {
  const response: Record<string, unknown> = { uid: pod.metadata?.uid ?? randomUUID(), allowed: true };
  if (result.patch.length > 0) {
    response['patchType'] = 'JSONPatch';
    response['patch'] = Buffer.from(JSON.stringify(result.patch)).toString('base64');
  }
  if (result.warnings.length > 0) response['warnings'] = result.warnings;
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }, null, 2);
}

function kindsOf(stream: ObjectStream): string {
  return [...new Set(stream.objects.map((o) => o.object.kind))].join(', ');
}

export function runMutate(flags: MutateFlags, io: CommandIO): void {
  if (flags.filename !== undefined && flags.pod !== undefined) throw new UsageError('give the input once: -f <file> or --pod <file>, not both');
  const input = flags.filename ?? flags.pod;
  const inputFlag = flags.filename !== undefined ? '-f' : '--pod';
  if (input === undefined) throw new UsageError('no input: give -f <file> (or --pod <file>) with Pods or workloads, YAML or JSON; - reads standard input');
  const defaultNamespace = flags.namespace ?? 'default';
  const options = mutationOptionsFromFlags(flags, (m) => io.stderr(`warning: ${m}`));

  const stream = readObjectStream(inputFlag, input);
  const targets = stream.objects.map((o) => targetOf(stream, o, defaultNamespace)).filter((t): t is Target => t !== undefined);
  if (targets.length === 0) {
    const only = stream.objects.length === 1 ? stream.objects[0] : undefined;
    throw new UsageError(only
      ? `${inputFlag} ${input}: is a ${only.object.kind}, not a Pod or a workload with a pod template`
      : `${inputFlag} ${input}: holds no Pod or workload with a pod template (found ${kindsOf(stream)})`);
  }

  // ServiceAccounts: from --service-account and from the input itself.
  const serviceAccounts = new Map<string, KubeObject>();
  const given = flags.serviceAccount ? loadServiceAccounts(flags.serviceAccount, defaultNamespace, serviceAccounts) : [];
  for (const o of stream.objects) {
    if (o.object.kind === 'ServiceAccount') serviceAccounts.set(`${o.object.metadata?.namespace || defaultNamespace}/${o.object.metadata?.name ?? ''}`, o.object);
  }
  if (flags.oldPod !== undefined) return mutateEphemeralUpdate(flags, io, stream, targets, options);
  const configMap = flags.configMap ? loadConfigMap(flags.configMap) : undefined;
  const containerCredentials = flags.watchContainerCredentialsConfig ? loadIdentities(flags.watchContainerCredentialsConfig) : undefined;

  const documentPatches: PatchOperation[][] = stream.documents.map(() => []);
  const reviews: string[] = [];
  for (const t of targets) {
    const saName = serviceAccountNameOf(t.pod);
    const key = `${t.namespace}/${saName}`;
    const saObject = serviceAccounts.get(key);
    const serviceAccount = saObject ? parseServiceAccountAnnotations(saObject.metadata?.annotations, options.annotationPrefix) : undefined;
    const result = mutatePod(t.pod, t.namespace, { serviceAccount, configMap, containerCredentials }, options);
    // Without its ServiceAccount a pod gets nothing, and silently printing [] would hide why.
    if (!saObject && result.identity === undefined) {
      const holds = flags.serviceAccount ? ` (--service-account ${flags.serviceAccount} holds ${given.join(', ') || 'none'})` : '';
      io.stderr(
        `warning: ${t.label} runs as ServiceAccount ${key}, which is not in the input${holds}; treated as not found, so it gets nothing. ` +
        `Pass it with --service-account <file> (kubectl get serviceaccount ${saName} -n ${t.namespace} -o yaml) or put it in the same file`,
      );
    }
    const many = targets.length > 1;
    for (const w of result.warnings) io.stderr(`warning: ${many ? `${t.label}: ` : ''}${w}`);
    (documentPatches[t.located.doc] as PatchOperation[]).push(...result.patch.map((op) => ({ ...op, path: t.prefix + op.path })));
    if (flags.output === 'review') reviews.push(review(t.pod, result));
  }

  writeOutput(flags, io, stream, documentPatches, reviews);
}

function writeOutput(flags: MutateFlags, io: CommandIO, stream: ObjectStream, documentPatches: PatchOperation[][], reviews: string[]): void {
  const input = stream.path;
  if (flags.output === 'review') return io.stdout(reviews.join('\n'));
  if (flags.output === 'patch') {
    // One patch per document, each against its document (for a workload: paths under its pod template).
    return io.stdout(documentPatches.map((p) => JSON.stringify(p, null, 2)).join('\n'));
  }
  const mutated = stream.documents.map((doc, i) => {
    try {
      return jsonpatch.applyPatch(doc, documentPatches[i] as PatchOperation[], true, false).newDocument;
    } catch (err) {
      throw new UsageError(`the patch does not apply to ${input}: ${(err as Error).message.split('\n')[0]}`);
    }
  });
  io.stdout(renderDocuments(mutated, flags.output === 'pod' ? stream.format : flags.output));
}

/**
 * --old-pod: an UPDATE of pods/ephemeralcontainers (kubectl debug), as the
 * webhook sees it: the input is the pod with its new ephemeral containers, the
 * old pod the one stored before. No ServiceAccount is needed: the identity is
 * the one the pod already has.
 */
function mutateEphemeralUpdate(flags: MutateFlags, io: CommandIO, stream: ObjectStream, targets: Target[], options: MutationOptions): void {
  const inputFlag = flags.filename !== undefined ? '-f' : '--pod';
  const target = targets[0] as Target;
  if (targets.length !== 1 || target.located.object.kind !== 'Pod') {
    throw new UsageError(`${inputFlag} ${stream.path}: with --old-pod, give exactly one Pod (the pod with its new ephemeral containers)`);
  }
  const old = readKubeObject('--old-pod', flags.oldPod as string, 'Pod');
  let result: { patch: PatchOperation[]; warnings: string[] } = { patch: [], warnings: [] };
  if (!options.mutateEphemeralContainers) {
    io.stderr('warning: --old-pod: the webhook changes updates of pods/ephemeralcontainers only with --mutate-ephemeral-containers; without it nothing changes');
  } else {
    result = mutateEphemeral(target.pod, old, options);
  }
  for (const w of result.warnings) io.stderr(`warning: ${w}`);
  const documentPatches: PatchOperation[][] = stream.documents.map(() => []);
  (documentPatches[target.located.doc] as PatchOperation[]).push(...result.patch.map((op) => ({ ...op, path: target.prefix + op.path })));
  writeOutput(flags, io, stream, documentPatches, flags.output === 'review' ? [review(target.pod, result)] : []);
}

export function mutateCommand(io: CommandIO): Command {
  const cmd = new Command('mutate')
    .description('print the change the webhook makes to pods and the pod templates of workloads (a dry run on files)')
    .option('-f, --filename <file>', 'Pods and workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ...) and their ServiceAccounts: YAML (several documents, or a List from kubectl get -o yaml) or JSON; - reads standard input')
    .option('--pod <file>', 'the same as -f')
    .option('--service-account <file>', 'the pods\' ServiceAccounts, YAML or JSON (one or more)')
    .option('--config-map <file>', `the ${CONFIG_MAP_NAME} ConfigMap (ConfigMap mode)`)
    .option('--old-pod <file>', 'the pod before an update of pods/ephemeralcontainers (kubectl debug); the input is the pod after it. Needs --mutate-ephemeral-containers')
    .addOption(namespaceOption('namespace of objects that set none (default "default")'))
    .addOption(outputOption(
      'patch: JSON patch per document; pod: the mutated objects in the input\'s format; json, yaml: the mutated objects in that format; review: the AdmissionReview per pod',
      MUTATE_OUTPUTS,
      'patch',
    ));
  addMutationFlags(cmd);
  return cmd.action((flags: MutateFlags) => runMutate(flags, io));
}
