// The pod change itself: given a pod and its identity, the smallest RFC 6902
// patch that adds what is missing. It only ever appends (env vars, mounts,
// volumes, a label) at precise paths, so fields this code does not know about
// are never rewritten or lost, and a pod that has everything gets [].
import { posix } from 'node:path';
import type { AddOperation } from 'fast-json-patch';
import type { V1Container, V1EnvVar, V1Pod, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
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
import type { Identity } from './resolve.js';
import { parseNameList } from './values.js';

export type PatchOperation = AddOperation<unknown>;

export interface PodPatch {
  patch: PatchOperation[];
  warnings: string[];
}

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
  skip: ReadonlySet<string>;
}

/** The pod comes from outside: a field that should be a list but is not counts as empty. */
function list<T>(value: T[] | undefined): T[] {
  return Array.isArray(value) ? value : [];
}

/** An annotation's value, or undefined when it is absent or not a string. */
function stringValue(map: unknown, key: string): string | undefined {
  if (typeof map !== 'object' || map === null) return undefined;
  const v = (map as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : undefined;
}

/** RFC 6901: "~" and "/" in a key are escaped. */
export function pointerToken(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function isWindows(pod: V1Pod): boolean {
  const selector = pod.spec?.nodeSelector ?? {};
  return (
    selector['kubernetes.io/os'] === 'windows' ||
    selector['beta.kubernetes.io/os'] === 'windows' ||
    pod.spec?.os?.name === 'windows'
  );
}

function tokenFilePath(pod: V1Pod, mountPath: string, file: string): string {
  const path = posix.join(mountPath, file);
  // Windows containers see the same mount under C:, with backslashes.
  return isWindows(pod) ? `C:${path.replace(/\//g, '\\')}` : path;
}

/** Appends items to an array at `path`, creating the array when the pod has none. */
function appendOps(existing: unknown, path: string, items: unknown[]): PatchOperation[] {
  if (items.length === 0) return [];
  if (!Array.isArray(existing)) return [{ op: 'add', path, value: items }];
  return items.map((value) => ({ op: 'add', path: `${path}/-`, value }));
}

function envValue(env: readonly V1EnvVar[], name: string): V1EnvVar | undefined {
  return env.find((e) => e?.name === name);
}

function containerOps(container: V1Container, path: string, plan: Plan, warnings: string[]): PatchOperation[] {
  const env = Array.isArray(container.env) ? container.env : [];
  const [idFirst, idSecond] = plan.identityEnv;
  const ownFirst = envValue(env, idFirst.name);
  const ownSecond = envValue(env, idSecond.name);
  const identityDefined = ownFirst !== undefined || ownSecond !== undefined;
  const regionDefined = envValue(env, ENV.region) !== undefined || envValue(env, ENV.defaultRegion) !== undefined;
  const stsDefined = envValue(env, ENV.stsRegionalEndpoints) !== undefined;

  if (ownFirst && ownFirst.value !== undefined && ownFirst.value !== idFirst.value) {
    warnings.push(
      `container "${container.name}" sets ${idFirst.name}="${ownFirst.value}" instead of "${idFirst.value}"; its own value is kept`,
    );
  } else if (!ownFirst && ownSecond) {
    warnings.push(`container "${container.name}" sets ${idSecond.name} but not ${idFirst.name}; neither is injected`);
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
  const mounts: V1VolumeMount[] = Array.isArray(container.volumeMounts) ? container.volumeMounts : [];
  if (!mounts.some((m) => m?.name === plan.volumeName)) {
    const clash = mounts.find((m) => m?.mountPath === plan.mountPath);
    if (clash) {
      // The API server would reject two mounts at one path.
      warnings.push(
        `container "${container.name}" already mounts volume "${clash.name}" at ${plan.mountPath}; the token volume is not mounted there`,
      );
    } else {
      plan.mount ??= { name: plan.volumeName, readOnly: true, mountPath: plan.mountPath };
      ops.push(...appendOps(container.volumeMounts, `${path}/volumeMounts`, [plan.mount]));
    }
  }
  return ops;
}

/** Pod annotations that refine the mutation: token-expiration and skip-containers. */
function podAnnotations(pod: V1Pod, prefix: string, warnings: string[]): { expiration?: number; skip: Set<string> } {
  const annotations = pod.metadata?.annotations;
  const result: { expiration?: number; skip: Set<string> } = { skip: new Set() };
  const expirationKey = `${prefix}/${ANNOTATION.tokenExpiration}`;
  const expiration = stringValue(annotations, expirationKey);
  if (expiration !== undefined) {
    const value = parseTokenExpirationAnnotation(expirationKey, expiration, warnings);
    if (value !== undefined) result.expiration = value;
  }
  const skipKey = `${prefix}/${ANNOTATION.skipContainers}`;
  const skip = stringValue(annotations, skipKey);
  if (skip !== undefined) {
    const names = parseNameList(skip);
    const known = new Set([...list(pod.spec?.initContainers), ...list(pod.spec?.containers)].map((c) => c?.name));
    for (const name of names) {
      if (!known.has(name)) warnings.push(`annotation ${skipKey} names "${name}", which is not a container of this pod`);
      result.skip.add(name);
    }
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
 * The patch for `pod` given its identity. `random` is only used to jitter the
 * default lifetime of container-credentials tokens.
 */
export function buildPodPatch(
  pod: V1Pod,
  identity: Identity,
  options: MutationOptions,
  random: () => number = Math.random,
): PodPatch {
  const warnings: string[] = [];
  const patch: PatchOperation[] = [];
  const spec = pod.spec;
  const fromPod = podAnnotations(pod, options.annotationPrefix, warnings);
  const cc = options.containerCredentials;

  let expiration = fromPod.expiration ?? identity.tokenExpiration;
  let plan: Plan;
  let volume: V1Volume;
  if (identity.mode === 'container-credentials') {
    if (fromPod.expiration === undefined && identity.tokenExpirationIsDefault) expiration = jitteredExpiration(random);
    plan = {
      volumeName: cc.volumeName,
      mountPath: cc.mountPath,
      identityEnv: [
        { name: ENV.fullUri, value: cc.fullUri },
        { name: ENV.authTokenFile, value: tokenFilePath(pod, cc.mountPath, cc.tokenPath) },
      ],
      regionalSts: identity.regionalSts,
      region: options.region,
      skip: fromPod.skip,
    };
    volume = projectedTokenVolume(cc.volumeName, cc.audience, expiration, cc.tokenPath);
    const labels = pod.metadata?.labels;
    if (typeof pod.metadata !== 'object' || pod.metadata === null) {
      patch.push({ op: 'add', path: '/metadata', value: { labels: { [POD_IDENTITY_LABEL]: 'enabled' } } });
    } else if (!labels) {
      patch.push({ op: 'add', path: '/metadata/labels', value: { [POD_IDENTITY_LABEL]: 'enabled' } });
    } else if (stringValue(labels, POD_IDENTITY_LABEL) !== 'enabled') {
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
      skip: fromPod.skip,
    };
    volume = projectedTokenVolume(WEB_IDENTITY_VOLUME_NAME, identity.audience, expiration, WEB_IDENTITY_TOKEN_FILE);
  }

  const existing = list(spec?.volumes).find((v) => v?.name === plan.volumeName);
  if (!existing) {
    patch.push(...appendOps(spec?.volumes, '/spec/volumes', [volume]));
  } else if (!list(existing.projected?.sources).some((s) => s?.serviceAccountToken)) {
    warnings.push(`the pod already has a volume "${plan.volumeName}" that is not a projected service-account token; it is kept as it is`);
  }

  const lists = [
    ['initContainers', spec?.initContainers],
    ['containers', spec?.containers],
  ] as const;
  for (const [field, containers] of lists) {
    list(containers).forEach((container, i) => {
      if (typeof container !== 'object' || container === null || plan.skip.has(container.name)) return;
      patch.push(...containerOps(container, `/spec/${field}/${i}`, plan, warnings));
    });
  }
  return { patch, warnings };
}
