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

class ShapeError extends Error {}

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
  throw new ShapeError(`${path} is ${describeValue(value)}, expected ${expected}`);
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

function entry(list: unknown[], i: number, path: string): Obj {
  const v: unknown = list[i];
  return isObject(v) ? v : fail(`${path}[${i}]`, 'an object', v);
}

/** Every index, holes included (a hole is not an object, so it fails). */
function each<T>(list: unknown[], fn: (i: number) => T): T[] {
  const out: T[] = [];
  for (let i = 0; i < list.length; i++) out.push(fn(i));
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

function decodeContainer(raw: unknown[], i: number, field: ContainerField): ContainerView {
  const path = `spec.${field}[${i}]`;
  const c = entry(raw, i, `spec.${field}`);
  const envList = optArray(c, 'env', path);
  const env = envList && each(envList, (j): EnvVarView => {
    const e = entry(envList, j, `${path}.env`);
    const at = `${path}.env[${j}]`;
    const valueFrom = optObject(e, 'valueFrom', at);
    const fieldRef = valueFrom && optObject(valueFrom, 'fieldRef', `${at}.valueFrom`);
    const fieldPath = fieldRef && optString(fieldRef, 'fieldPath', `${at}.valueFrom.fieldRef`);
    const view: EnvVarView = { name: optString(e, 'name', at) ?? '', value: optString(e, 'value', at) };
    if (fieldPath !== undefined) view.fieldPath = fieldPath;
    return view;
  });
  const mountList = optArray(c, 'volumeMounts', path);
  const volumeMounts = mountList && each(mountList, (j): MountView => {
    const m = entry(mountList, j, `${path}.volumeMounts`);
    const at = `${path}.volumeMounts[${j}]`;
    return { name: optString(m, 'name', at) ?? '', mountPath: optString(m, 'mountPath', at) ?? '' };
  });
  return { field, index: i, name: optString(c, 'name', path) ?? '', env, volumeMounts };
}

function decodeVolume(raw: unknown[], i: number): VolumeView {
  const path = `spec.volumes[${i}]`;
  const v = entry(raw, i, 'spec.volumes');
  const projected = optObject(v, 'projected', path);
  const sources = projected ? optArray(projected, 'sources', `${path}.projected`) : undefined;
  let serviceAccountToken = false;
  if (sources) {
    each(sources, (j) => {
      const s = entry(sources, j, `${path}.projected.sources`);
      if (optObject(s, 'serviceAccountToken', `${path}.projected.sources[${j}]`)) serviceAccountToken = true;
    });
  }
  return { name: optString(v, 'name', path) ?? '', serviceAccountToken };
}

const NO_CONTAINERS: readonly ContainerView[] = Object.freeze([]);

function decode(raw: unknown): PodView {
  if (!isObject(raw)) fail('the pod', 'an object', raw);
  const metadata = own(raw, 'metadata');
  if (metadata !== undefined && !isObject(metadata)) fail('metadata', 'an object', metadata);
  const meta: Obj = metadata ?? {};
  const spec = optObject(raw, 'spec', 'pod') ?? {};
  const os = optObject(spec, 'os', 'spec');
  const containers: ContainerView[] = [];
  for (const field of ['initContainers', 'containers'] as const) {
    const list = optArray(spec, field, 'spec') ?? [];
    for (let i = 0; i < list.length; i++) containers.push(decodeContainer(list, i, field));
  }
  const ephemeral = optArray(spec, 'ephemeralContainers', 'spec');
  const ephemeralContainers = ephemeral ? each(ephemeral, (i) => decodeContainer(ephemeral, i, 'ephemeralContainers')) : NO_CONTAINERS;
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
    volumes: volumes && each(volumes, (i) => decodeVolume(volumes, i)),
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
