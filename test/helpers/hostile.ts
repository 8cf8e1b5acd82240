// Generators of hostile AdmissionReviews, and the checks every answer to one
// must pass. Shared by the engine's property test and the HTTP fuzz test.
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { MAX_WARNING_LENGTH, MAX_WARNINGS_LENGTH } from '../../src/mutation/index.js';

export const ROLE = 'arn:aws:iam::111122223333:role/s3-reader';

/** An array nested `depth` levels deep, built without recursion; fast-check prints it briefly. */
export function deepArray(depth: number): unknown[] {
  let v: unknown[] = [];
  for (let i = 1; i < depth; i++) v = [v];
  Object.defineProperty(v, fc.toStringMethod, { value: () => `<list nested ${depth} deep>` });
  return v;
}

/** Objects whose string conversion throws: only JavaScript callers can send them. */
export const throwing = fc.constantFrom('toString', 'toJSON', 'both').map((which) => {
  const boom = (): never => {
    throw new Error(`hostile ${which}`);
  };
  if (which === 'toString') return { toString: boom, valueOf: boom };
  if (which === 'toJSON') return { toJSON: boom };
  return { toString: boom, valueOf: boom, toJSON: boom, [Symbol.toPrimitive]: boom };
});

/** The JSON spellings of the same traps, and own "__proto__"/"constructor" keys. */
export const jsonTraps = fc.constantFrom(
  '{"toString":1}', '{"toJSON":1}', '{"valueOf":{}}', '{"__proto__":{"name":"app","polluted":"yes"}}',
  '{"constructor":{"prototype":{"polluted":"yes"}}}', '{"__proto__":[]}', '{"hasOwnProperty":1}', '["shop"]', '[[["app"]]]',
).map((text) => JSON.parse(text) as unknown);

/** Stands for bytes that are not UTF-8 where a test sends raw bytes (see invalidUtf8). */
export const BAD_UTF8_MARKER = '\u0001bad-utf8\u0001';

/** Stands for a list nested this deep where a test sends JSON text (JSON.stringify cannot nest that deep). */
const DEEP_MARKER = (depth: number): string => `\u0001deep:${depth}\u0001`;

/**
 * JSON text -> the bytes sent: each bad-UTF-8 marker becomes bytes that are
 * not valid UTF-8, each deep marker (a JSON string) a list nested that deep.
 */
export function toPayload(json: string): Buffer {
  const text = json.replace(/"\\u0001deep:(\d+)\\u0001"/g, (_, n: string) => '['.repeat(Number(n)) + ']'.repeat(Number(n)));
  const parts = text.split(JSON.stringify(BAD_UTF8_MARKER).slice(1, -1));
  const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]);
  return Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [Buffer.from(p)] : [bad, Buffer.from(p)])));
}

/** Strings with lone surrogates, control characters and non-BMP text. */
export const oddString = fc.oneof(
  fc.constantFrom(BAD_UTF8_MARKER, '\ud800', 'a\udc00b', '\udfff\ud800', '\u0000', '\u2028', '😀', 'app\ud83d', '"', '\\', 'a,b', '"a,b",c', 'a"b', '__proto__', 'constructor'),
  fc.string({ unit: 'binary', maxLength: 12 }),
);

const wrongScalar = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 8 }), oddString);

/** Anything of the wrong kind, now and then large or deep. */
export const hostile: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: wrongScalar },
  { weight: 3, arbitrary: fc.anything({ maxDepth: 2, maxKeys: 3 }) },
  { weight: 2, arbitrary: jsonTraps },
  { weight: 2, arbitrary: throwing },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 10_000 }).map(deepArray) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 200_000 }).map((n) => 'x'.repeat(n)) },
);

/** JSON-only hostile values: what can cross HTTP. */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: wrongScalar },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 2, arbitrary: jsonTraps },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 10_000 }).map(DEEP_MARKER) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 200_000 }).map((n) => 'x'.repeat(n)) },
);

/** Skip-containers lists of many names, some quoted with commas, some naming a real container; built once. */
const HUGE_NAME_LISTS = [1_000, 30_000, 300_000].flatMap((n) => {
  const names = Array.from({ length: n }, (_, i) => (i % 7 === 0 ? `"n,${i}"` : `n${i}`)).join(',');
  return [names, `${names},side`];
});
const hugeNameList = fc.constantFrom(...HUGE_NAME_LISTS);

/**
 * Reviews of three kinds, in equal parts: well-typed ones, ones where a value
 * here and there is hostile, and ones where hostile values are everywhere.
 */
export function reviewArbitrary(bad: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.oneof(reviews(bad, 0), reviews(bad, 1), reviews(bad, 5));
}

/** `badness` in 0..5: the weight of a hostile value against 30 for a good one. */
function reviews(bad: fc.Arbitrary<unknown>, badness: number): fc.Arbitrary<unknown> {
  /** Mostly the right shape, sometimes anything at all. */
  const mostly = <T>(good: fc.Arbitrary<T>, weight = 30): fc.Arbitrary<unknown> =>
    badness === 0 ? good : fc.oneof({ weight, arbitrary: good }, { weight: badness, arbitrary: bad });
  const name = mostly(fc.constantFrom('app', 'side', 'init', '', '__proto__'));
  const envName = fc.constantFrom('AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_REGION', 'AWS_STS_REGIONAL_ENDPOINTS',
    'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'X', '__proto__', 'constructor');
  const env = mostly(fc.array(mostly(fc.record({ name: mostly(envName), value: mostly(fc.oneof(fc.constant(ROLE), oddString)) }, { requiredKeys: ['name'] })), { maxLength: 3 }));
  const mount = mostly(fc.record({
    name: mostly(fc.constantFrom('aws-iam-token', 'eks-pod-identity-token', 'data')),
    mountPath: mostly(fc.constantFrom('/var/run/secrets/eks.amazonaws.com/serviceaccount', '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount', '/data')),
  }, { requiredKeys: [] }));
  const container = mostly(fc.record({ name, env, volumeMounts: mostly(fc.array(mount, { maxLength: 2 })), image: bad }, { requiredKeys: [] }));
  const containers = mostly(fc.array(container, { maxLength: 3 }));
  const skip = fc.oneof({ weight: 20, arbitrary: fc.oneof(oddString, fc.constantFrom('side', 'app, side', '"side,x",app', 'a\nside', '"side', 'side"x', '\n\nside')) },
    { weight: 1, arbitrary: hugeNameList });
  const annotations = mostly(fc.dictionary(
    fc.constantFrom('eks.amazonaws.com/skip-containers', 'eks.amazonaws.com/token-expiration', '__proto__', 'constructor', 'x'),
    mostly(fc.oneof(skip, fc.constantFrom('3600', '86400', '1', 'soon', '99999999999999999999'))),
  ));
  const sourceToken = fc.record({ serviceAccountToken: mostly(fc.constant({ audience: 'x', path: 'token' })) }, { requiredKeys: [] });
  const volume = mostly(fc.record({
    name: mostly(fc.constantFrom('aws-iam-token', 'eks-pod-identity-token', 'data')),
    projected: mostly(fc.record({ sources: mostly(fc.array(mostly(sourceToken), { maxLength: 2 })) }, { requiredKeys: [] })),
  }, { requiredKeys: [] }));
  const pod = fc.record({
    metadata: mostly(fc.record({
      name: mostly(fc.string({ maxLength: 8 })),
      namespace: mostly(fc.constantFrom('default', 'shop')),
      annotations,
      labels: mostly(fc.dictionary(fc.constantFrom('eks.amazonaws.com/pod-identity', 'app', '__proto__'), mostly(fc.constantFrom('enabled', 'x')))),
    }, { requiredKeys: [] })),
    spec: mostly(fc.record({
      serviceAccountName: mostly(fc.constantFrom('app', 'cc', 'none', 'bad')),
      containers,
      initContainers: containers,
      volumes: mostly(fc.array(volume, { maxLength: 2 })),
      nodeSelector: mostly(fc.dictionary(fc.constantFrom('kubernetes.io/os', 'beta.kubernetes.io/os', '__proto__'), mostly(fc.constantFrom('windows', 'linux')))),
      os: mostly(fc.record({ name: mostly(fc.constantFrom('windows', 'linux')) })),
    }, { requiredKeys: ['containers'] }), 100),
  }, { requiredKeys: ['spec'] });
  const request = fc.record({
    uid: mostly(fc.oneof(fc.constant('uid-1'), oddString.filter((s) => s !== '')), 100),
    kind: mostly(fc.constant({ group: '', version: 'v1', kind: 'Pod' }), 100),
    resource: mostly(fc.constant({ group: '', version: 'v1', resource: 'pods' })),
    namespace: mostly(fc.constantFrom('default', 'shop', '')),
    operation: mostly(fc.constant('CREATE'), 100),
    object: mostly(pod, 100),
  }, { requiredKeys: ['uid', 'object'] });
  return fc.record({
    apiVersion: mostly(fc.constantFrom('admission.k8s.io/v1', 'admission.k8s.io/v1beta1'), 200),
    kind: mostly(fc.constant('AdmissionReview'), 200),
    request: mostly(request, 200),
  });
}

/** The one existing value a patch may replace: the pod-identity label is set to "enabled". */
const POD_IDENTITY_LABEL_PATH = '/metadata/labels/eks.amazonaws.com~1pod-identity';

function own(o: unknown, key: string): unknown {
  return typeof o === 'object' && o !== null && Object.hasOwn(o, key) ? (o as Record<string, unknown>)[key] : undefined;
}

/** The parent of a JSON pointer's target, resolved over own properties only. */
function parentOf(doc: unknown, path: string): { parent: unknown; key: string } | string {
  const tokens = path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    cur = Array.isArray(cur) ? (cur as unknown[])[Number(t)] : own(cur, t);
    if (typeof cur !== 'object' || cur === null) return `${path}: parent missing`;
  }
  return { parent: cur, key: tokens.at(-1)! };
}

/**
 * A copy of `value` down to `depth` levels (deeper values are shared), enough
 * for a patch to be applied without touching the generated value: fast-check
 * must get back what it generated to shrink a failure.
 */
function copyTop(value: unknown, depth = 8): unknown {
  if (depth === 0 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => copyTop(v, depth - 1));
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    Object.defineProperty(out, key, { value: copyTop((value as Record<string, unknown>)[key], depth - 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Patch operations a pod may get at most: its label and its volume, and per container up to six env vars and one mount. */
const POD_OPS = 2;
const OPS_PER_CONTAINER = 7;
/** A patch operation without its ServiceAccount value (role ARN or audience): short whatever the pod says. */
const OP_FRAME_LENGTH = 1024;
/** The answer around its uid, warnings and patch (apiVersion, kind, field names). */
const ANSWER_FRAME_LENGTH = 512;

/** How many containers the sent pod lists; anything that is not a list counts as none. */
function containerCount(pod: unknown): number {
  const spec = own(pod, 'spec');
  const length = (v: unknown): number => (Array.isArray(v) ? v.length : 0);
  return length(own(spec, 'containers')) + length(own(spec, 'initContainers'));
}

/**
 * What is wrong with the answer to `review` (the object sent), or undefined.
 * The patch must only append to existing lists or add fields that are absent
 * (or null), and must apply with fast-json-patch's validation to the pod sent.
 * The answer's size is bounded by the pod's structure, never by its bytes: a
 * few operations per container, each no longer than the longest value the
 * ServiceAccounts give (`settingLength`) allows, and warnings within the caps.
 */
export function answerProblem(review: unknown, answer: string, sentPod: unknown, settingLength: number): string | undefined {
  let body: { apiVersion?: unknown; kind?: unknown; response?: { uid?: unknown; allowed?: unknown; patch?: unknown; patchType?: unknown; warnings?: unknown } };
  try {
    body = JSON.parse(answer) as typeof body;
  } catch {
    return 'answer is not JSON';
  }
  const request = own(review, 'request');
  if (body.kind !== 'AdmissionReview' || body.apiVersion !== own(review, 'apiVersion')) return 'answer is not an AdmissionReview of the same version';
  if (body.response?.uid !== own(request, 'uid')) return 'uid not echoed';
  if (body.response?.allowed !== true) return 'not allowed';
  const warnings = body.response.warnings ?? [];
  if (!Array.isArray(warnings) || !warnings.every((w) => typeof w === 'string')) return 'warnings not a list of strings';
  if (warnings.some((w: string) => w.length > MAX_WARNING_LENGTH)) return 'a warning is longer than 256 characters';
  if (warnings.reduce((n: number, w: string) => n + w.length, 0) > MAX_WARNINGS_LENGTH) return 'warnings longer than 4096 characters';
  // Escaped, a warning character takes at most six ("\\u0000").
  const patchLength = typeof body.response.patch === 'string' ? body.response.patch.length : 0;
  const unbounded = answer.length - patchLength - JSON.stringify(own(request, 'uid')).length - 6 * MAX_WARNINGS_LENGTH;
  if (unbounded > ANSWER_FRAME_LENGTH) return `answer is ${answer.length} characters: more than its uid, warnings and patch explain`;
  if (body.response.patch === undefined) return undefined;
  if (body.response.patchType !== 'JSONPatch' || typeof body.response.patch !== 'string') return 'bad patch type';
  const patch = JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8')) as Array<{ op: string; path: string; value: unknown }>;
  const maxOps = POD_OPS + OPS_PER_CONTAINER * containerCount(sentPod);
  if (patch.length > maxOps) return `${patch.length} patch operations for a pod that allows at most ${maxOps}`;
  for (const op of patch) {
    if (JSON.stringify(op).length > OP_FRAME_LENGTH + settingLength) return `${op.path}: an operation of ${JSON.stringify(op).length} characters`;
    if (op.op !== 'add') return `op ${op.op}`;
    const at = parentOf(sentPod, op.path);
    if (typeof at === 'string') return at;
    if (Array.isArray(at.parent)) {
      if (at.key !== '-') return `${op.path}: inserts into a list instead of appending`;
    } else if (own(at.parent, at.key) !== undefined && own(at.parent, at.key) !== null && op.path !== POD_IDENTITY_LABEL_PATH) {
      return `${op.path}: overwrites an existing field`;
    } else if (at.key === '-') {
      return `${op.path}: appends to something that is not a list`;
    }
  }
  try {
    jsonpatch.applyPatch(copyTop(sentPod), patch as jsonpatch.Operation[], true, true);
  } catch (err) {
    return `patch does not apply: ${(err as Error).message}`;
  }
  return undefined;
}
