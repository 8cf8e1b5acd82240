// The one place where an untrusted pod (from an AdmissionReview or a file) is
// read. It becomes the small typed view the engine works on; anything of the
// wrong type makes the whole pod unreadable (the API server only ever sends
// well-typed pods, so such a pod comes from someone probing the webhook).
// Only own properties are read, so keys like "__proto__" or "constructor" are
// plain data here, and no value of the wrong type is ever converted to a string.
import { describeValue, quote } from '../settings/warnings.js';

export interface EnvVarView {
  name: string;
  /** undefined when the variable has no literal value (valueFrom, or none). */
  value: string | undefined;
  /** valueFrom.fieldRef.fieldPath (the downward API), when set. */
  fieldPath?: string | undefined;
}

export interface MountView {
  name: string;
  mountPath: string;
}

export type ContainerField = 'initContainers' | 'containers' | 'ephemeralContainers';

export interface ContainerView {
  field: ContainerField;
  index: number;
  name: string;
  /** undefined when the container has no env list: the patch creates it. */
  env: readonly EnvVarView[] | undefined;
  volumeMounts: readonly MountView[] | undefined;
}

export interface VolumeView {
  name: string;
  /** True when one of its projected sources is a service-account token. */
  serviceAccountToken: boolean;
}

export interface PodView {
  /** metadata.name, else metadata.generateName, else ''; only for logs. */
  name: string;
  /** metadata.name and metadata.generateName as given (a controller's pod has no name yet at admission). */
  metadataName: string | undefined;
  generateName: string | undefined;
  namespace: string | undefined;
  /** '' when unset. */
  serviceAccountName: string;
  /** False when the pod has no metadata object: a label patch must create it. */
  hasMetadata: boolean;
  annotations: ReadonlyMap<string, string>;
  /** undefined when the pod has no labels map. */
  labels: ReadonlyMap<string, string> | undefined;
  nodeSelector: ReadonlyMap<string, string>;
  os: string | undefined;
  /** undefined when the pod has no volumes list. */
  volumes: readonly VolumeView[] | undefined;
  /** Init containers first, then containers; ephemeral containers are not among them. */
  containers: readonly ContainerView[];
  /** spec.ephemeralContainers: mutated only on an UPDATE of pods/ephemeralcontainers. */
  ephemeralContainers: readonly ContainerView[];
}

export type DecodedPod = { pod: PodView; problem?: undefined } | { pod?: undefined; problem: string };

/**
 * A field of the wrong type: where it is and what it is. Nested readers use
 * paths relative to their item and the list they are in adds its own in front
 * (within), so the hot path builds no path strings for a pod that is fine.
 */
class ShapeError extends Error {
  constructor(readonly where: string, readonly problem: string) {
    super(`${where} ${problem}`);
  }

  within(prefix: string): ShapeError {
    return new ShapeError(`${prefix}${this.where}`, this.problem);
  }
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An own property; null counts as absent, as in Kubernetes' own decoding. */
function own(o: Obj, key: string): unknown {
  if (!Object.hasOwn(o, key)) return undefined;
  const v = o[key];
  return v === null ? undefined : v;
}

function fail(path: string, expected: string, value: unknown): never {
  throw new ShapeError(path, `is ${describeValue(value)}, expected ${expected}`);
}

function optObject(o: Obj, key: string, path: string): Obj | undefined {
  const v = own(o, key);
  if (v === undefined) return undefined;
  return isObject(v) ? v : fail(`${path}.${key}`, 'an object', v);
}

function optArray(o: Obj, key: string, path: string): unknown[] | undefined {
  const v = own(o, key);
  if (v === undefined) return undefined;
  return Array.isArray(v) ? (v as unknown[]) : fail(`${path}.${key}`, 'a list', v);
}

function optString(o: Obj, key: string, path: string): string | undefined {
  const v = own(o, key);
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : fail(`${path}.${key}`, 'a string', v);
}

/**
 * Each entry of `list` (at `path`) read by `read` with its index, holes
 * included (a hole is not an object, so it fails); `read`'s paths are
 * relative to its entry.
 */
function entries<T>(list: unknown[], path: string, read: (entry: Obj, index: number) => T): T[] {
  const out: T[] = [];
  for (let i = 0; i < list.length; i++) {
    const v: unknown = list[i];
    if (!isObject(v)) fail(`${path}[${i}]`, 'an object', v);
    try {
      out.push(read(v, i));
    } catch (err) {
      throw err instanceof ShapeError ? err.within(`${path}[${i}]`) : err;
    }
  }
  return out;
}

function stringMap(o: Obj, key: string, path: string): Map<string, string> | undefined {
  const m = optObject(o, key, path);
  if (!m) return undefined;
  const out = new Map<string, string>();
  for (const k of Object.keys(m)) {
    const v = m[k];
    if (typeof v !== 'string') fail(`${path}.${key}[${quote(k, 32)}]`, 'a string', v);
    out.set(k, v);
  }
  return out;
}

function decodeEnvVar(e: Obj): EnvVarView {
  const valueFrom = optObject(e, 'valueFrom', '');
  const fieldRef = valueFrom && optObject(valueFrom, 'fieldRef', '.valueFrom');
  const fieldPath = fieldRef && optString(fieldRef, 'fieldPath', '.valueFrom.fieldRef');
  const view: EnvVarView = { name: optString(e, 'name', '') ?? '', value: optString(e, 'value', '') };
  if (fieldPath !== undefined) view.fieldPath = fieldPath;
  return view;
}

function decodeMount(m: Obj): MountView {
  return { name: optString(m, 'name', '') ?? '', mountPath: optString(m, 'mountPath', '') ?? '' };
}

/** A container; its paths are relative to it (see entries). */
function decodeContainer(c: Obj, index: number, field: ContainerField): ContainerView {
  const envList = optArray(c, 'env', '');
  const env = envList && entries(envList, '.env', decodeEnvVar);
  const mountList = optArray(c, 'volumeMounts', '');
  const volumeMounts = mountList && entries(mountList, '.volumeMounts', decodeMount);
  return { field, index, name: optString(c, 'name', '') ?? '', env, volumeMounts };
}

function containersOf(spec: Obj, field: ContainerField): ContainerView[] {
  const list = optArray(spec, field, 'spec');
  if (!list) return [];
  return entries(list, `spec.${field}`, (c, index) => decodeContainer(c, index, field));
}

function decodeVolume(v: Obj): VolumeView {
  const projected = optObject(v, 'projected', '');
  const sources = projected ? optArray(projected, 'sources', '.projected') : undefined;
  let serviceAccountToken = false;
  if (sources) {
    entries(sources, '.projected.sources', (s) => {
      if (optObject(s, 'serviceAccountToken', '')) serviceAccountToken = true;
    });
  }
  return { name: optString(v, 'name', '') ?? '', serviceAccountToken };
}

const NO_CONTAINERS: readonly ContainerView[] = Object.freeze([]);

function decode(raw: unknown): PodView {
  if (!isObject(raw)) fail('the pod', 'an object', raw);
  const metadata = own(raw, 'metadata');
  if (metadata !== undefined && !isObject(metadata)) fail('metadata', 'an object', metadata);
  const meta: Obj = metadata ?? {};
  const spec = optObject(raw, 'spec', 'pod') ?? {};
  const os = optObject(spec, 'os', 'spec');
  const containers = [...containersOf(spec, 'initContainers'), ...containersOf(spec, 'containers')];
  const ephemeral = containersOf(spec, 'ephemeralContainers');
  const ephemeralContainers = ephemeral.length > 0 ? ephemeral : NO_CONTAINERS;
  const volumes = optArray(spec, 'volumes', 'spec');
  const metadataName = optString(meta, 'name', 'metadata');
  const generateName = optString(meta, 'generateName', 'metadata');
  return {
    name: metadataName || generateName || '',
    metadataName,
    generateName,
    namespace: optString(meta, 'namespace', 'metadata'),
    serviceAccountName: optString(spec, 'serviceAccountName', 'spec') ?? '',
    hasMetadata: metadata !== undefined,
    annotations: stringMap(meta, 'annotations', 'metadata') ?? new Map(),
    labels: stringMap(meta, 'labels', 'metadata'),
    nodeSelector: stringMap(spec, 'nodeSelector', 'spec') ?? new Map(),
    os: os ? optString(os, 'name', 'spec.os') : undefined,
    volumes: volumes && entries(volumes, 'spec.volumes', decodeVolume),
    containers,
    ephemeralContainers,
  };
}

/** The pod's typed view, or why it cannot be read. Never throws. */
export function decodePod(raw: unknown): DecodedPod {
  try {
    return { pod: decode(raw) };
  } catch (err) {
    if (err instanceof ShapeError) return { problem: err.message };
    throw err;
  }
}

/** The ServiceAccount a pod runs as ("default" when unset), read without trusting the pod. */
export function serviceAccountNameOf(raw: unknown): string {
  const spec = isObject(raw) ? own(raw, 'spec') : undefined;
  const name = isObject(spec) ? own(spec, 'serviceAccountName') : undefined;
  return typeof name === 'string' && name !== '' ? name : 'default';
}
