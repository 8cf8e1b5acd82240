// The pod change itself: given a pod's typed view and its identity, the
// smallest RFC 6902 patch that adds what is missing. It only ever appends (env
// vars, mounts, volumes, a label) at precise paths, so fields this code does not
// know about are never rewritten or lost, and a pod that has everything gets [].
import { posix } from 'node:path';
import type { AddOperation } from 'fast-json-patch';
import type { V1EnvVar, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import {
  ANNOTATION,
  DEFAULT_TOKEN_EXPIRATION,
  ENV,
  type MutationOptions,
  POD_IDENTITY_LABEL,
  TOKEN_EXPIRATION_JITTER_FLOOR,
  WEB_IDENTITY_TOKEN_FILE,
  WEB_IDENTITY_VOLUME_NAME,
} from '../config.js';
import { parseTokenExpirationAnnotation } from '../identity/service-account.js';
import type { ContainerView, EnvVarView, PodView } from './pod.js';
import type { Identity } from './resolve.js';
import { parseSkipContainers } from './values.js';
import { quote, type WarningList } from './warnings.js';

export type PatchOperation = AddOperation<unknown>;

/** What every container of the pod should receive. */
interface Plan {
  volumeName: string;
  mountPath: string;
  /** Built once per pod and shared by every container's ops. */
  mount?: V1VolumeMount;
  stsEnv?: V1EnvVar;
  regionEnv?: [V1EnvVar, V1EnvVar];
  /** The identity pair: both names count as "already configured". */
  identityEnv: [V1EnvVar, V1EnvVar];
  regionalSts: boolean;
  region: string;
}

/** RFC 6901: "~" and "/" in a key are escaped. */
export function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function isWindows(pod: PodView): boolean {
  return (
    pod.nodeSelector.get('kubernetes.io/os') === 'windows' ||
    pod.nodeSelector.get('beta.kubernetes.io/os') === 'windows' ||
    pod.os === 'windows'
  );
}

function tokenFilePath(pod: PodView, mountPath: string, file: string): string {
  const path = posix.join(mountPath, file);
  // Windows containers see the same mount under C:, with backslashes.
  return isWindows(pod) ? `C:${path.replace(/\//g, '\\')}` : path;
}

/** Appends items to an array at `path`, creating the array when the pod has none. */
function appendOps(existing: readonly unknown[] | undefined, path: string, items: unknown[]): PatchOperation[] {
  if (items.length === 0) return [];
  if (!existing) return [{ op: 'add', path, value: items }];
  return items.map((value) => ({ op: 'add', path: `${path}/-`, value }));
}

function envVar(env: readonly EnvVarView[], name: string): EnvVarView | undefined {
  return env.find((e) => e.name === name);
}

function containerOps(container: ContainerView, plan: Plan, warnings: WarningList): PatchOperation[] {
  const path = `/spec/${container.field}/${container.index}`;
  const env = container.env ?? [];
  const who = `container ${quote(container.name)}`;
  const [idFirst, idSecond] = plan.identityEnv;
  const ownFirst = envVar(env, idFirst.name);
  const ownSecond = envVar(env, idSecond.name);
  const identityDefined = ownFirst !== undefined || ownSecond !== undefined;
  const regionDefined = envVar(env, ENV.region) !== undefined || envVar(env, ENV.defaultRegion) !== undefined;
  const stsDefined = envVar(env, ENV.stsRegionalEndpoints) !== undefined;

  if (ownFirst && ownFirst.value !== undefined && ownFirst.value !== idFirst.value) {
    warnings.add(`${who} sets ${idFirst.name}=${quote(ownFirst.value)} instead of ${quote(idFirst.value ?? '')}; its own value is kept`);
  } else if (!ownFirst && ownSecond) {
    warnings.add(`${who} sets ${idSecond.name} but not ${idFirst.name}; neither is injected`);
  }
  // A container that configured all three itself is left exactly as it is.
  if (identityDefined && regionDefined && stsDefined) return [];

  const add: V1EnvVar[] = [];
  if (!stsDefined && plan.regionalSts) add.push((plan.stsEnv ??= { name: ENV.stsRegionalEndpoints, value: 'regional' }));
  if (!regionDefined && plan.region) {
    add.push(...(plan.regionEnv ??= [{ name: ENV.defaultRegion, value: plan.region }, { name: ENV.region, value: plan.region }]));
  }
  if (!identityDefined) add.push(idFirst, idSecond);

  const ops = appendOps(container.env, `${path}/env`, add);
  const mounts = container.volumeMounts ?? [];
  if (!mounts.some((m) => m.name === plan.volumeName)) {
    const clash = mounts.find((m) => m.mountPath === plan.mountPath);
    if (clash) {
      // The API server would reject two mounts at one path.
      warnings.add(`${who} already mounts volume ${quote(clash.name)} at ${plan.mountPath}; the token volume is not mounted there`);
    } else {
      plan.mount ??= { name: plan.volumeName, readOnly: true, mountPath: plan.mountPath };
      ops.push(...appendOps(container.volumeMounts, `${path}/volumeMounts`, [plan.mount]));
    }
  }
  return ops;
}

/** Pod annotations that refine the mutation: token-expiration and skip-containers. */
function podAnnotations(pod: PodView, prefix: string, warnings: WarningList): { expiration?: number; skip: ReadonlySet<string> } {
  const result: { expiration?: number; skip: ReadonlySet<string> } = { skip: new Set() };
  const expirationKey = `${prefix}/${ANNOTATION.tokenExpiration}`;
  const expiration = pod.annotations.get(expirationKey);
  if (expiration !== undefined) {
    const found: string[] = [];
    const value = parseTokenExpirationAnnotation(expirationKey, expiration, found);
    found.forEach(warnings.add);
    if (value !== undefined) result.expiration = value;
  }
  const skipKey = `${prefix}/${ANNOTATION.skipContainers}`;
  const skip = pod.annotations.get(skipKey);
  if (skip !== undefined) {
    const names = new Set(pod.containers.map((c) => c.name));
    const parsed = parseSkipContainers(skip, names);
    if (parsed.error !== undefined) {
      warnings.add(`annotation ${skipKey} is not a valid comma-separated list (${parsed.error}); no container is skipped`);
    } else if (parsed.unmatched > 0) {
      const shown = parsed.unmatchedExamples.map((n) => quote(n, 32)).join(', ');
      const more = parsed.unmatched > parsed.unmatchedExamples.length ? ', ...' : '';
      warnings.add(`${parsed.unmatched} name(s) in annotation ${skipKey} match no container of this pod: ${shown}${more}`);
    }
    result.skip = parsed.skipped;
  }
  return result;
}

function jitteredExpiration(random: () => number): number {
  const span = DEFAULT_TOKEN_EXPIRATION - TOKEN_EXPIRATION_JITTER_FLOOR;
  return TOKEN_EXPIRATION_JITTER_FLOOR + Math.min(span, Math.floor(random() * (span + 1)));
}

function projectedTokenVolume(name: string, audience: string, expirationSeconds: number, path: string): V1Volume {
  return { name, projected: { sources: [{ serviceAccountToken: { audience, expirationSeconds, path } }] } };
}

/**
 * The patch for `pod` given its identity; warnings go to `warnings`. `random`
 * is only used to spread the lifetime of container-credentials tokens.
 */
export function buildPodPatch(
  pod: PodView,
  identity: Identity,
  options: MutationOptions,
  warnings: WarningList,
  random: () => number = Math.random,
): PatchOperation[] {
  const patch: PatchOperation[] = [];
  const fromPod = podAnnotations(pod, options.annotationPrefix, warnings);
  const cc = options.containerCredentials;

  let expiration = fromPod.expiration ?? identity.tokenExpiration;
  let plan: Plan;
  let volume: V1Volume;
  if (identity.mode === 'container-credentials') {
    // As the reference webhook: a day-long token, wherever that day came from,
    // is spread over [22h, 24h] so that a fleet's pods do not all refresh at once.
    if (expiration === DEFAULT_TOKEN_EXPIRATION) expiration = jitteredExpiration(random);
    plan = {
      volumeName: cc.volumeName,
      mountPath: cc.mountPath,
      identityEnv: [
        { name: ENV.fullUri, value: cc.fullUri },
        { name: ENV.authTokenFile, value: tokenFilePath(pod, cc.mountPath, cc.tokenPath) },
      ],
      regionalSts: identity.regionalSts,
      region: options.region,
    };
    volume = projectedTokenVolume(cc.volumeName, cc.audience, expiration, cc.tokenPath);
    if (!pod.hasMetadata) {
      patch.push({ op: 'add', path: '/metadata', value: { labels: { [POD_IDENTITY_LABEL]: 'enabled' } } });
    } else if (!pod.labels) {
      patch.push({ op: 'add', path: '/metadata/labels', value: { [POD_IDENTITY_LABEL]: 'enabled' } });
    } else if (pod.labels.get(POD_IDENTITY_LABEL) !== 'enabled') {
      patch.push({ op: 'add', path: `/metadata/labels/${pointerToken(POD_IDENTITY_LABEL)}`, value: 'enabled' });
    }
  } else {
    plan = {
      volumeName: WEB_IDENTITY_VOLUME_NAME,
      mountPath: options.tokenMountPath,
      identityEnv: [
        { name: ENV.roleArn, value: identity.roleArn },
        { name: ENV.tokenFile, value: tokenFilePath(pod, options.tokenMountPath, WEB_IDENTITY_TOKEN_FILE) },
      ],
      regionalSts: identity.regionalSts,
      region: options.region,
    };
    volume = projectedTokenVolume(WEB_IDENTITY_VOLUME_NAME, identity.audience, expiration, WEB_IDENTITY_TOKEN_FILE);
  }

  const existing = pod.volumes?.find((v) => v.name === plan.volumeName);
  if (!existing) {
    patch.push(...appendOps(pod.volumes, '/spec/volumes', [volume]));
  } else if (!existing.serviceAccountToken) {
    warnings.add(`the pod already has a volume ${quote(plan.volumeName)} that is not a projected service-account token; it is kept as it is`);
  }

  for (const container of pod.containers) {
    if (fromPod.skip.has(container.name)) continue;
    for (const op of containerOps(container, plan, warnings)) patch.push(op);
  }
  return patch;
}
