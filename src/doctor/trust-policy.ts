// Evaluates an IAM role trust policy for one AssumeRoleWithWebIdentity call
// (an IRSA token), the way IAM does for the parts IRSA uses: the Federated
// principal, the action, and string conditions on the provider's sub/aud
// keys. Pure; every step is returned as a sentence so that `doctor` can say
// why a pod is refused instead of just "AccessDenied".

export const WEB_IDENTITY_ACTION = 'sts:AssumeRoleWithWebIdentity';

/** The claims STS takes from the token, plus the role's account. */
export interface WebIdentityRequest {
  /** The token's `iss`, an https:// URL. */
  issuer: string;
  /** The token's `sub`: system:serviceaccount:NS:NAME. */
  subject: string;
  /** The token's audience that matched the provider's client IDs. */
  audience: string;
  /** The role's account: STS only uses the OIDC provider of that account. */
  accountId?: string | undefined;
}

export interface PolicyCheck {
  /** principal, action, condition, decision */
  name: string;
  ok: boolean;
  detail: string;
  /** 1-based statement number, for checks about one statement. */
  statement?: number;
}

export interface TrustPolicyResult {
  allowed: boolean;
  /** One sentence: why allowed or, when not, the most useful reason. */
  reason: string;
  /** The statement that decided (the matching Deny or Allow), 1-based. */
  statement?: number;
  /** Refused with no statement deciding: the failed step of the closest Allow that the reason gives. */
  cause?: PolicyCheck;
  checks: PolicyCheck[];
}

/** The policy cannot be read or is not a valid policy; the message says where. */
export class TrustPolicyError extends Error {}

type Principal = '*' | Record<string, string[]>;

interface Condition {
  operator: string;
  key: string;
  values: string[];
}

export interface Statement {
  /** 1-based, as people count them in the JSON. */
  number: number;
  sid?: string;
  effect: 'Allow' | 'Deny';
  principal?: Principal;
  notPrincipal?: Principal;
  actions?: string[];
  notActions?: string[];
  conditions: Condition[];
}

export interface TrustPolicy {
  statements: Statement[];
}

const PROVIDER_ARN = /^arn:(aws[a-z-]*):iam::(\d{12}):oidc-provider\/(.+)$/;

/** What IAM calls the provider and uses in condition keys: the issuer without https:// and trailing slashes. */
export function providerPath(issuer: string): string {
  return issuer.replace(/^https:\/\//i, '').replace(/\/+$/, '');
}

export function providerArn(issuer: string, accountId: string, partition = 'aws'): string {
  return `arn:${partition}:iam::${accountId}:oidc-provider/${providerPath(issuer)}`;
}

export function parseProviderArn(arn: string): { partition: string; accountId: string; path: string } | undefined {
  const m = PROVIDER_ARN.exec(arn);
  return m ? { partition: m[1] as string, accountId: m[2] as string, path: m[3] as string } : undefined;
}

// ---------------------------------------------------------------- parsing

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringList(where: string, value: unknown): string[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw new TrustPolicyError(`${where} is an empty list`);
  return list.map((v) => {
    // IAM stores numbers and booleans in conditions as their text.
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw new TrustPolicyError(`${where} must be a string or a list of strings`);
  });
}

function parsePrincipal(where: string, value: unknown): Principal {
  if (value === '*') return '*';
  if (!isObject(value)) throw new TrustPolicyError(`${where} must be "*" or an object such as {"Federated": "arn:aws:iam::…:oidc-provider/…"}`);
  const out: Record<string, string[]> = {};
  for (const [type, v] of Object.entries(value)) out[type] = stringList(`${where}.${type}`, v);
  return out;
}

function parseConditions(where: string, value: unknown): Condition[] {
  if (value === undefined) return [];
  if (!isObject(value)) throw new TrustPolicyError(`${where} must be an object of operators, such as {"StringEquals": {…}}`);
  const out: Condition[] = [];
  for (const [operator, block] of Object.entries(value)) {
    if (!isObject(block)) throw new TrustPolicyError(`${where}.${operator} must be an object of condition keys`);
    for (const [key, v] of Object.entries(block)) out.push({ operator, key, values: stringList(`${where}.${operator}["${key}"]`, v) });
  }
  return out;
}

function parseStatement(raw: unknown, number: number): Statement {
  const where = `Statement ${number}`;
  if (!isObject(raw)) throw new TrustPolicyError(`${where} is not an object`);
  const effect = raw['Effect'];
  if (effect !== 'Allow' && effect !== 'Deny') {
    throw new TrustPolicyError(`${where}: Effect must be "Allow" or "Deny", not ${JSON.stringify(effect) ?? 'missing'}`);
  }
  const hasP = raw['Principal'] !== undefined;
  const hasNP = raw['NotPrincipal'] !== undefined;
  if (hasP === hasNP) throw new TrustPolicyError(`${where} needs exactly one of Principal or NotPrincipal`);
  const hasA = raw['Action'] !== undefined;
  const hasNA = raw['NotAction'] !== undefined;
  if (hasA === hasNA) throw new TrustPolicyError(`${where} needs exactly one of Action or NotAction`);
  const st: Statement = { number, effect, conditions: parseConditions(`${where}.Condition`, raw['Condition']) };
  if (typeof raw['Sid'] === 'string' && raw['Sid'] !== '') st.sid = raw['Sid'];
  if (hasP) st.principal = parsePrincipal(`${where}.Principal`, raw['Principal']);
  else st.notPrincipal = parsePrincipal(`${where}.NotPrincipal`, raw['NotPrincipal']);
  if (hasA) st.actions = stringList(`${where}.Action`, raw['Action']);
  else st.notActions = stringList(`${where}.NotAction`, raw['NotAction']);
  return st;
}

function parseJson(text: string): unknown {
  let body = text.trim();
  // The IAM API (and `aws iam get-role --output text`) hands the document out URL-encoded.
  if (/^%7B/i.test(body)) {
    try {
      body = decodeURIComponent(body);
    } catch {
      throw new TrustPolicyError('the trust policy looks URL-encoded but does not decode');
    }
  }
  try {
    return JSON.parse(body);
  } catch (err) {
    throw new TrustPolicyError(`the trust policy is not JSON: ${(err as Error).message}`);
  }
}

/**
 * A trust policy from its JSON text or parsed value. Also accepts what
 * `aws iam get-role` prints ({"Role": {"AssumeRolePolicyDocument": …}}).
 */
export function parseTrustPolicy(input: unknown): TrustPolicy {
  let doc: unknown = typeof input === 'string' ? parseJson(input) : input;
  if (isObject(doc) && isObject(doc['Role'])) doc = doc['Role'];
  if (isObject(doc) && doc['AssumeRolePolicyDocument'] !== undefined) {
    const inner = doc['AssumeRolePolicyDocument'];
    doc = typeof inner === 'string' ? parseJson(inner) : inner;
  }
  if (!isObject(doc)) throw new TrustPolicyError('the trust policy must be a JSON object with a "Statement"');
  const raw = doc['Statement'];
  if (raw === undefined) throw new TrustPolicyError('the trust policy has no "Statement"');
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) throw new TrustPolicyError('the trust policy\'s "Statement" list is empty');
  return { statements: list.map((s, i) => parseStatement(s, i + 1)) };
}

/** Every Federated principal the policy names (for comparing accounts). */
export function federatedPrincipals(policy: TrustPolicy): string[] {
  const out = new Set<string>();
  for (const s of policy.statements) {
    const p = s.principal;
    if (p && p !== '*') for (const v of p['Federated'] ?? []) out.add(v);
  }
  return [...out];
}

// ---------------------------------------------------------------- matching

/** IAM wildcards: `*` any run of characters, `?` exactly one. */
export function wildcardMatch(pattern: string, value: string, ignoreCase = false): boolean {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]');
  return new RegExp(`^${body}$`, ignoreCase ? 'i' : '').test(value);
}

function label(st: Statement): string {
  return `statement ${st.number}${st.sid ? ` ("${st.sid}")` : ''}`;
}

function list(values: string[]): string {
  return values.length === 1 ? (values[0] as string) : `any of [${values.join(', ')}]`;
}

interface Outcome {
  ok: boolean;
  detail: string;
}

/** Does one Federated value name this request's provider? */
function federatedOutcome(value: string, req: WebIdentityRequest): Outcome {
  const path = providerPath(req.issuer);
  const arn = parseProviderArn(value);
  if (!arn) {
    return { ok: false, detail: `the Federated principal ${value} is not an IAM OIDC provider ARN (arn:aws:iam::ACCOUNT:oidc-provider/HOST/PATH)` };
  }
  if (arn.path !== path) {
    let hint = '';
    if (arn.path.toLowerCase() === path.toLowerCase()) hint = ' (they differ only in letter case)';
    else if (arn.path.replace(/\/+$/, '') === path) hint = ' (the provider ARN ends with "/"; the issuer does not)';
    else if (/^https?:\/\//.test(arn.path)) hint = ' (provider ARNs leave out https://)';
    return { ok: false, detail: `the trust policy's Federated principal is ${value} but this cluster's issuer is ${req.issuer}${hint}` };
  }
  if (req.accountId && arn.accountId !== req.accountId) {
    return {
      ok: false,
      detail: `the Federated principal ${value} is in account ${arn.accountId} but the role is in account ${req.accountId}; STS only uses the OIDC provider of the role's own account`,
    };
  }
  return { ok: true, detail: `the Federated principal ${value} is the provider of this cluster's issuer ${req.issuer}` };
}

function principalMatches(p: Principal, req: WebIdentityRequest): Outcome {
  if (p === '*') return { ok: true, detail: 'the principal is "*" (anyone; the conditions decide)' };
  const aws = p['AWS'];
  if (aws?.includes('*')) return { ok: true, detail: 'the principal is {"AWS": "*"} (anyone; the conditions decide)' };
  const federated = p['Federated'];
  if (!federated) {
    const named = Object.entries(p).map(([type, v]) => `${type}: ${v.join(', ')}`).join('; ');
    return { ok: false, detail: `it has no Federated principal (it names ${named}), so it does not apply to web identities` };
  }
  const outcomes = federated.map((v) => federatedOutcome(v, req));
  const hit = outcomes.find((o) => o.ok);
  if (hit) return hit;
  if (outcomes.length === 1) return outcomes[0] as Outcome;
  const expected = `arn:aws:iam::${req.accountId ?? 'ACCOUNT'}:oidc-provider/${providerPath(req.issuer)}`;
  return {
    ok: false,
    detail: `none of the trust policy's Federated principals (${federated.join(', ')}) is ${expected}, the provider of this cluster's issuer ${req.issuer}`,
  };
}

function principalOutcome(st: Statement, req: WebIdentityRequest): Outcome {
  if (st.principal) return principalMatches(st.principal, req);
  const inner = principalMatches(st.notPrincipal as Principal, req);
  return inner.ok
    ? { ok: false, detail: `NotPrincipal excludes this identity: ${inner.detail}` }
    : { ok: true, detail: 'NotPrincipal does not exclude this identity' };
}

function actionOutcome(st: Statement): Outcome {
  const patterns = st.actions ?? st.notActions ?? [];
  // Action names are case-insensitive in IAM.
  const hit = patterns.find((p) => wildcardMatch(p, WEB_IDENTITY_ACTION, true));
  if (st.actions) {
    if (hit === undefined) return { ok: false, detail: `its actions (${patterns.join(', ')}) do not include ${WEB_IDENTITY_ACTION}` };
    return { ok: true, detail: hit === WEB_IDENTITY_ACTION ? `it names ${WEB_IDENTITY_ACTION}` : `its action "${hit}" covers ${WEB_IDENTITY_ACTION}` };
  }
  if (hit !== undefined) return { ok: false, detail: `its NotAction "${hit}" excludes ${WEB_IDENTITY_ACTION}` };
  return { ok: true, detail: `its NotAction (${patterns.join(', ')}) leaves ${WEB_IDENTITY_ACTION} in` };
}

type ConditionKey =
  | { kind: 'value'; values: string[] }
  | { kind: 'absent'; why: string }
  | { kind: 'ignored'; why: string };

function conditionKey(key: string, req: WebIdentityRequest): ConditionKey {
  const path = providerPath(req.issuer);
  const k = key.toLowerCase();
  const p = path.toLowerCase();
  // Condition key names are case-insensitive; values are not.
  if (k === `${p}:sub`) return { kind: 'value', values: [req.subject] };
  if (k === `${p}:aud`) return { kind: 'value', values: [req.audience] };
  if (k === `${p}:amr`) return { kind: 'ignored', why: 'amr is only set for Amazon Cognito identities; not evaluated' };
  if (/^(aws|sts):/.test(k)) {
    return { kind: 'ignored', why: `${key} depends on the request at AWS and is not evaluated here; assumed to hold` };
  }
  const keys = `${path}:sub and ${path}:aud`;
  let hint = '';
  if (k.startsWith('https://')) hint = '; condition keys leave out https://';
  else if (/^[^:]+:(sub|aud)$/.test(k)) hint = `; this cluster's tokens give ${keys}`;
  else if (!k.includes(':')) hint = `; keys are qualified with the provider, e.g. ${path}:${key}`;
  return { kind: 'absent', why: `the request has no key ${key}${hint}` };
}

interface Operator {
  set?: 'ForAnyValue' | 'ForAllValues';
  base: string;
  ifExists: boolean;
  negated: boolean;
  match?: (value: string, pattern: string) => boolean;
}

const BASE_OPERATORS: Record<string, Pick<Operator, 'negated' | 'match'>> = {
  stringequals: { negated: false, match: (v, p) => v === p },
  stringnotequals: { negated: true, match: (v, p) => v === p },
  stringequalsignorecase: { negated: false, match: (v, p) => v.toLowerCase() === p.toLowerCase() },
  stringnotequalsignorecase: { negated: true, match: (v, p) => v.toLowerCase() === p.toLowerCase() },
  stringlike: { negated: false, match: (v, p) => wildcardMatch(p, v) },
  stringnotlike: { negated: true, match: (v, p) => wildcardMatch(p, v) },
  null: { negated: false },
};

function parseOperator(text: string): Operator | undefined {
  const m = /^(?:(ForAnyValue|ForAllValues):)?(.+?)(IfExists)?$/i.exec(text);
  if (!m) return undefined;
  const base = BASE_OPERATORS[(m[2] as string).toLowerCase()];
  if (!base) return undefined;
  const set = m[1] ? (m[1].toLowerCase() === 'foranyvalue' ? 'ForAnyValue' : 'ForAllValues') : undefined;
  return { ...base, ...(set ? { set } : {}), base: m[2] as string, ifExists: m[3] !== undefined };
}

function conditionOutcome(c: Condition, req: WebIdentityRequest): Outcome {
  const head = `condition ${c.operator} ${c.key} = ${list(c.values)}`;
  const op = parseOperator(c.operator);
  const key = conditionKey(c.key, req);
  if (key.kind === 'ignored') return { ok: true, detail: `${head}: ${key.why}` };
  if (!op) return { ok: false, detail: `${head}: the operator ${c.operator} is not supported here; treated as not satisfied` };

  if (op.base.toLowerCase() === 'null') {
    const absent = key.kind === 'absent';
    const ok = c.values.some((v) => v.toLowerCase() === String(absent));
    return { ok, detail: `${head} ${ok ? 'holds' : 'fails'}: the key is ${absent ? 'absent' : 'present'}` };
  }
  if (key.kind === 'absent') {
    // IAM: over no values ForAnyValue is false and ForAllValues true, whatever follows them (IfExists and
    // negation included); otherwise a missing key satisfies IfExists and negated operators, and nothing else.
    const ok = op.set ? op.set === 'ForAllValues' : op.ifExists || op.negated;
    const why = op.set ? `${op.set} over no values` : op.ifExists ? 'IfExists' : op.negated ? 'a negated operator' : '';
    return { ok, detail: ok ? `${head} holds: ${key.why} (${why})` : `${head} fails: ${key.why}${why ? ` (${why})` : ''}` };
  }

  const match = op.match as (v: string, p: string) => boolean;
  const single = (v: string): boolean => {
    const hit = c.values.some((p) => match(v, p));
    return op.negated ? !hit : hit;
  };
  const ok = op.set === 'ForAllValues' ? key.values.every(single) : key.values.some(single);
  const got = key.values.join(', ');
  if (ok) return { ok, detail: op.negated ? `${head} holds for ${got}` : `${head} matches ${got}` };

  let hint = '';
  const base = op.base.toLowerCase();
  if (base === 'stringequals' && c.values.some((p) => /[*?]/.test(p))) hint = ' (StringEquals does not expand * or ?; use StringLike)';
  else if (base === 'stringequals' && c.values.some((p) => key.values.some((v) => v.toLowerCase() === p.toLowerCase()))) {
    hint = ' (values are case-sensitive)';
  }
  return { ok, detail: op.negated ? `${head} excludes ${got}` : `${head} does not match ${got}${hint}` };
}

interface StatementResult {
  st: Statement;
  applies: boolean;
  checks: PolicyCheck[];
  /** How close an Allow came: for picking the most useful failure. */
  score: number;
}

function evaluateStatement(st: Statement, req: WebIdentityRequest): StatementResult {
  const principal = principalOutcome(st, req);
  const action = actionOutcome(st);
  const checks: PolicyCheck[] = [
    { name: 'principal', statement: st.number, ...principal },
    { name: 'action', statement: st.number, ...action },
  ];
  let score = (principal.ok ? 4 : 0) + (action.ok ? 2 : 0);
  let conditionsOk = true;
  // Conditions only matter for statements about this identity and action; elsewhere they are noise.
  if (principal.ok && action.ok) {
    for (const c of st.conditions) {
      const outcome = conditionOutcome(c, req);
      checks.push({ name: 'condition', statement: st.number, ...outcome });
      if (!outcome.ok) conditionsOk = false;
    }
    if (conditionsOk) score += 1;
    if (st.conditions.length === 0) {
      checks.push({ name: 'condition', statement: st.number, ok: true, detail: 'it has no conditions' });
    }
  }
  return { st, applies: principal.ok && action.ok && conditionsOk, checks, score };
}

/** IAM's decision for `sts:AssumeRoleWithWebIdentity`: a matching Deny wins, then any matching Allow. */
export function evaluateTrustPolicy(policy: unknown, req: WebIdentityRequest): TrustPolicyResult {
  const parsed = isObject(policy) && Array.isArray(policy['statements']) ? (policy as unknown as TrustPolicy) : parseTrustPolicy(policy);
  const results = parsed.statements.map((st) => evaluateStatement(st, req));
  const checks = results.flatMap((r) => r.checks);
  const who = `${req.subject} (audience ${req.audience}, issuer ${req.issuer})`;

  const deny = results.find((r) => r.st.effect === 'Deny' && r.applies);
  const allow = results.find((r) => r.st.effect === 'Allow' && r.applies);
  let result: TrustPolicyResult;
  if (deny) {
    result = { allowed: false, statement: deny.st.number, reason: `${label(deny.st)} explicitly denies ${WEB_IDENTITY_ACTION} to ${who}`, checks };
  } else if (allow) {
    result = { allowed: true, statement: allow.st.number, reason: `${label(allow.st)} allows ${WEB_IDENTITY_ACTION} to ${who}`, checks };
  } else {
    const allows = results.filter((r) => r.st.effect === 'Allow');
    const best = allows.reduce<StatementResult | undefined>((b, r) => (b === undefined || r.score > b.score ? r : b), undefined);
    const failed = best?.checks.find((c) => !c.ok);
    const reason = best && failed
      ? `no statement allows ${who}; closest is ${label(best.st)}: ${failed.detail}`
      : `the trust policy has no Allow statement, so nobody may assume the role`;
    result = { allowed: false, reason, checks, ...(failed ? { cause: failed } : {}) };
  }
  result.checks = [...checks, { name: 'decision', ok: result.allowed, detail: result.reason, ...(result.statement ? { statement: result.statement } : {}) }];
  return result;
}
