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
  GENERATED_NAME_SUFFIX,
  MAX_GENERATE_NAME_BASE,
  MAX_ROLE_SESSION_NAME_LENGTH,
  type MutationOptions,
  POD_IDENTITY_LABEL,
  type RoleSessionNameMode,
  TOKEN_EXPIRATION_JITTER_FLOOR,
  WEB_IDENTITY_TOKEN_FILE,
  WEB_IDENTITY_VOLUME_NAME,
} from '../config.js';
import { parseRoleSessionName, parseTokenExpirationAnnotation } from '../settings/service-account.js';
import type { ContainerView, EnvVarView, PodView } from './pod.js';
import type { Identity } from './resolve.js';
import { parseSkipContainers } from '../settings/values.js';
import { quote, warningList, type WarningList } from '../settings/warnings.js';

export type PatchOperation = AddOperation<unknown>;

/** What every container of the pod should receive; each value is built once per pod and shared. */
interface Plan {
  volumeName: string;
  mountPath: string;
  mount?: V1VolumeMount;
  /** Added unless the container sets AWS_STS_REGIONAL_ENDPOINTS. */
  stsEnv?: V1EnvVar | undefined;
  /** Added unless the container sets either region variable. */
  regionEnv?: readonly V1EnvVar[] | undefined;
  /** The identity pair: both names count as "already configured". */
  identityEnv: [V1EnvVar, V1EnvVar];
  /** AWS_ROLE_SESSION_NAME, added with the identity pair unless the container sets it. */
  sessionEnv?: V1EnvVar | undefined;
  /** Set once some container got sessionEnv. */
  sessionUsed?: boolean;
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
  // Stryker disable next-line ConditionalExpression: the only empty list is the env of a container that sets an identity variable, so `existing` is there and map() gives [] as well
  if (items.length === 0) return [];
  if (!existing) return [{ op: 'add', path, value: items }];
  return items.map((value) => ({ op: 'add', path: `${path}/-`, value }));
}

function envVar(env: readonly EnvVarView[], name: string): EnvVarView | undefined {
  return env.find((e) => e.name === name);
}

function containerOps(container: ContainerView, plan: Plan, warnings: WarningList): PatchOperation[] {
  const path = `/spec/${container.field}/${container.index}`;
  // Stryker disable next-line ArrayDeclaration: the default is only searched by name; a placeholder element has no name and matches nothing, as the empty list
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
  if (!stsDefined && plan.stsEnv) add.push(plan.stsEnv);
  if (!regionDefined && plan.regionEnv) add.push(...plan.regionEnv);
  if (!identityDefined) {
    add.push(idFirst, idSecond);
    // A container's own session name is kept.
    if (plan.sessionEnv && envVar(env, plan.sessionEnv.name) === undefined) {
      add.push(plan.sessionEnv);
      plan.sessionUsed = true;
    }
  }

  const ops = appendOps(container.env, `${path}/env`, add);
  // Stryker disable next-line ArrayDeclaration: the default is only searched by name and mountPath; a placeholder element has neither and matches nothing, as the empty list
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

interface PodAnnotationKeys {
  prefix: string;
  expirationKey: string;
  skipKey: string;
  includeKey: string;
  sessionKey: string;
}

let lastKeys: PodAnnotationKeys | undefined;

/** The pod annotation names under `prefix`, built once per prefix (it is the same for every pod). */
function podAnnotationKeys(prefix: string): PodAnnotationKeys {
  // Stryker disable next-line ConditionalExpression: a cache decision; rebuilt keys are the same strings
  if (lastKeys?.prefix !== prefix) {
    lastKeys = {
      prefix,
      expirationKey: `${prefix}/${ANNOTATION.tokenExpiration}`,
      skipKey: `${prefix}/${ANNOTATION.skipContainers}`,
      includeKey: `${prefix}/${ANNOTATION.includeContainers}`,
      sessionKey: `${prefix}/${ANNOTATION.roleSessionName}`,
    };
  }
  return lastKeys;
}

/** What the pod's own annotations say about its mutation. */
interface PodSettings {
  expiration?: number;
  skip: ReadonlySet<string>;
  /** include-containers: only these get credentials; undefined when the pod does not say. */
  include?: ReadonlySet<string>;
  roleSessionName?: RoleSessionNameMode;
}

/**
 * A list of container names (skip-containers, include-containers), parsed the
 * same way; names that match none of `names` give one warning, unless
 * `warnUnmatched` is false. undefined when the text is not valid CSV.
 */
function containerNames(
  key: string,
  text: string,
  names: ReadonlySet<string>,
  warnings: WarningList,
  invalid: string,
  warnUnmatched: boolean,
): ReadonlySet<string> | undefined {
  const parsed = parseSkipContainers(text, names);
  if (parsed.error !== undefined) {
    warnings.add(`annotation ${key} is not a valid comma-separated list (${parsed.error}); ${invalid}`);
    return undefined;
  }
  if (warnUnmatched && parsed.unmatched > 0) {
    const shown = parsed.unmatchedExamples.map((n) => quote(n, 32)).join(', ');
    const more = parsed.unmatched > parsed.unmatchedExamples.length ? ', ...' : '';
    warnings.add(`${parsed.unmatched} name(s) in annotation ${key} match no container of this pod: ${shown}${more}`);
  }
  return parsed.skipped;
}

/**
 * Pod annotations that refine the mutation: token-expiration, skip-containers,
 * include-containers and role-session-name. `names` gives the containers the
 * lists are matched against (built only when a list is there); unmatched
 * names are reported only when `warnUnmatched` (at creation, not again for a
 * debug container).
 */
function podAnnotations(pod: PodView, prefix: string, warnings: WarningList, names: () => ReadonlySet<string>, warnUnmatched = true): PodSettings {
  const result: PodSettings = { skip: new Set() };
  const { expirationKey, skipKey, includeKey, sessionKey } = podAnnotationKeys(prefix);
  const expiration = pod.annotations.get(expirationKey);
  if (expiration !== undefined) {
    const found: string[] = [];
    result.expiration = parseTokenExpirationAnnotation(expirationKey, expiration, found);
    for (const w of found) warnings.add(w);
  }
  const skip = pod.annotations.get(skipKey);
  if (skip !== undefined) {
    result.skip = containerNames(skipKey, skip, names(), warnings, 'no container is skipped', warnUnmatched) ?? new Set();
  }
  const include = pod.annotations.get(includeKey);
  if (include !== undefined) {
    // A list that cannot be read includes nothing: credentials are never given by mistake.
    result.include = containerNames(includeKey, include, names(), warnings, 'no container gets credentials', warnUnmatched) ?? new Set();
  }
  const session = pod.annotations.get(sessionKey);
  if (session !== undefined) {
    result.roleSessionName = parseRoleSessionName(sessionKey, session, (w) => warnings.add(w));
  }
  return result;
}

/** Whether the pod's annotations let `container` have credentials. */
function selected(settings: PodSettings, container: ContainerView): boolean {
  return !settings.skip.has(container.name) && (settings.include === undefined || settings.include.has(container.name));
}

/** The longest name the pod can have: its own, or what the API server makes of generateName. */
function longestPodName(pod: PodView): number {
  if (pod.metadataName) return pod.metadataName.length;
  // Stryker disable next-line ConditionalExpression,ArithmeticOperator: a generated name has at most 58 + 5 = 63 characters, under the limit of 64 like 0 or 53, so it never gives a warning (a test pins that an absent generateName is not read)
  if (pod.generateName) return Math.min(pod.generateName.length, MAX_GENERATE_NAME_BASE) + GENERATED_NAME_SUFFIX;
  return 0;
}

/** AWS_ROLE_SESSION_NAME from the downward API: the kubelet fills in the final name, generated ones too. */
function podNameEnv(): V1EnvVar {
  return { name: ENV.roleSessionName, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } };
}

function regionalStsEnv(regionalSts: boolean): V1EnvVar | undefined {
  return regionalSts ? { name: ENV.stsRegionalEndpoints, value: 'regional' } : undefined;
}

function regionEnv(region: string): V1EnvVar[] | undefined {
  return region ? [{ name: ENV.defaultRegion, value: region }, { name: ENV.region, value: region }] : undefined;
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
  const fromPod = podAnnotations(pod, options.annotationPrefix, warnings, () => new Set(pod.containers.map((c) => c.name)));
  const cc = options.containerCredentials;
  const { sessionKey } = podAnnotationKeys(options.annotationPrefix);

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
      stsEnv: regionalStsEnv(identity.regionalSts),
      regionEnv: regionEnv(options.region),
    };
    // The flag covers web identities only; an annotation that asks for it here is a mistake worth a word.
    if (fromPod.roleSessionName || identity.roleSessionName) {
      warnings.add(`annotation ${sessionKey} is ignored: session names apply to web identity (IRSA), and this pod gets container credentials`);
    }
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
      stsEnv: regionalStsEnv(identity.regionalSts),
      regionEnv: regionEnv(options.region),
      // The pod's annotation wins over the ServiceAccount's, which wins over the flag.
      sessionEnv: (fromPod.roleSessionName ?? identity.roleSessionName ?? options.roleSessionName) ? podNameEnv() : undefined,
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
    if (!selected(fromPod, container)) continue;
    for (const op of containerOps(container, plan, warnings)) patch.push(op);
  }
  warnLongSessionName(pod, plan, sessionKey, warnings);
  return patch;
}

function warnLongSessionName(pod: PodView, plan: Plan, sessionKey: string, warnings: WarningList): void {
  if (!plan.sessionUsed) return;
  const length = longestPodName(pod);
  if (length <= MAX_ROLE_SESSION_NAME_LENGTH) return;
  warnings.add(
    `AWS_ROLE_SESSION_NAME is the pod name, ${length} characters long, but STS accepts at most ${MAX_ROLE_SESSION_NAME_LENGTH}: ` +
    `AssumeRoleWithWebIdentity will fail; shorten the name or remove ${sessionKey} (or --role-session-name)`,
  );
}

/** The webhook's token volumes, in the order the modes win at creation, with their identity pairs. */
function identityVolumes(options: MutationOptions): Array<{ mode: Identity['mode']; volume: string; pair: [string, string] }> {
  return [
    { mode: 'container-credentials', volume: options.containerCredentials.volumeName, pair: [ENV.fullUri, ENV.authTokenFile] },
    { mode: 'web-identity', volume: WEB_IDENTITY_VOLUME_NAME, pair: [ENV.roleArn, ENV.tokenFile] },
  ];
}

function literal(env: readonly EnvVarView[], name: string): V1EnvVar | undefined {
  const found = envVar(env, name);
  return found?.value !== undefined ? { name, value: found.value } : undefined;
}

/**
 * The plan a debug container gets: the identity the pod was given at creation,
 * read back from the first container (init or regular) that mounts the token
 * volume and has both identity variables. Its own values are copied, so the
 * debug container sees what that container sees, even if the ServiceAccount
 * has changed since.
 */
function planFromPod(pod: PodView, options: MutationOptions, warnings: WarningList): { plan: Plan; mode: Identity['mode'] } | undefined {
  for (const { mode, volume, pair } of identityVolumes(options)) {
    if (!pod.volumes?.some((v) => v.name === volume && v.serviceAccountToken)) continue;
    for (const c of pod.containers) {
      const mount = c.volumeMounts?.find((m) => m.name === volume);
      // Stryker disable next-line ArrayDeclaration: the default is only searched by name; a placeholder element has no name and matches nothing, as the empty list
      const env = c.env ?? [];
      const first = literal(env, pair[0]);
      const second = literal(env, pair[1]);
      if (!mount || !first || !second) continue;
      const region = [literal(env, ENV.defaultRegion), literal(env, ENV.region)].filter((e): e is V1EnvVar => e !== undefined);
      const session = envVar(env, ENV.roleSessionName);
      return {
        mode,
        plan: {
          volumeName: volume,
          mountPath: mount.mountPath,
          identityEnv: [first, second],
          stsEnv: literal(env, ENV.stsRegionalEndpoints),
          // An empty list adds nothing, as no list.
          regionEnv: region,
          // Only the session name this webhook injects (the pod's name) is carried over.
          sessionEnv: mode === 'web-identity' && session?.fieldPath === 'metadata.name' ? podNameEnv() : undefined,
        },
      };
    }
    warnings.add(`the pod has the token volume ${quote(volume)} but no container that mounts it with ${pair[0]} and ${pair[1]}; new ephemeral containers are left unchanged`);
    return undefined;
  }
  return undefined;
}

/**
 * The patch for an UPDATE of pods/ephemeralcontainers: each ephemeral container
 * that `old` does not have gets the env and the token mount of the identity the
 * pod already has, unless the pod's skip-containers or include-containers
 * annotations leave it out. Never a volume: this subresource only changes
 * ephemeral containers, and a pod without the token volume gets nothing.
 */
export function buildEphemeralPatch(
  pod: PodView,
  old: PodView,
  options: MutationOptions,
  warnings: WarningList,
): { patch: PatchOperation[]; mode: Identity['mode'] | undefined } {
  const before = new Set(old.ephemeralContainers.map((c) => c.name));
  const added = pod.ephemeralContainers.filter((c) => !before.has(c.name));
  if (added.length === 0) return { patch: [], mode: undefined };
  const found = planFromPod(pod, options, warnings);
  if (!found) return { patch: [], mode: undefined };
  const names = (): ReadonlySet<string> => new Set([...pod.containers, ...pod.ephemeralContainers].map((c) => c.name));
  // Problems with the annotations were reported when the pod was created.
  // Stryker disable next-line BooleanLiteral: these warnings go to a list that is thrown away, so whether unmatched names are reported into it cannot be seen
  const settings = podAnnotations(pod, options.annotationPrefix, warningList(), names, false);
  const patch: PatchOperation[] = [];
  for (const container of added) {
    if (!selected(settings, container)) continue;
    for (const op of containerOps(container, found.plan, warnings)) patch.push(op);
  }
  return { patch, mode: found.mode };
}
