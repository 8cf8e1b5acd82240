import t from 'tap';
import fc from 'fast-check';
import {
  evaluateTrustPolicy,
  federatedPrincipals,
  parseProviderArn,
  parseTrustPolicy,
  providerArn,
  providerPath,
  TrustPolicyError,
  type WebIdentityRequest,
  wildcardMatch,
} from '../../src/doctor/trust-policy.js';

const ISSUER = 'https://oidc.example.com/cluster';
const P = 'oidc.example.com/cluster';
const ACCOUNT = '111122223333';
const PROVIDER = `arn:aws:iam::${ACCOUNT}:oidc-provider/${P}`;
const SUB = 'system:serviceaccount:shop:api';
const REQUEST: WebIdentityRequest = { issuer: ISSUER, subject: SUB, audience: 'sts.amazonaws.com', accountId: ACCOUNT };

type Json = Record<string, unknown>;

/** An IRSA statement as `eksctl` / the EKS docs write it, with overrides. */
function stmt(over: Json = {}): Json {
  return {
    Effect: 'Allow',
    Principal: { Federated: PROVIDER },
    Action: 'sts:AssumeRoleWithWebIdentity',
    Condition: { StringEquals: { [`${P}:sub`]: SUB, [`${P}:aud`]: 'sts.amazonaws.com' } },
    ...over,
  };
}

function policy(...statements: Json[]): string {
  return JSON.stringify({ Version: '2012-10-17', Statement: statements });
}

interface Case {
  name: string;
  policy: string;
  request?: Partial<WebIdentityRequest>;
  allowed: boolean;
  /** Must appear in the reason (and so in doctor's sentence). */
  reason?: string | RegExp;
  /** Must appear in some check's detail. */
  detail?: string | RegExp;
}

const cond = (c: Json): Json => stmt({ Condition: c });

const cases: Case[] = [
  // The shapes a policy comes in.
  { name: 'the canonical IRSA policy', policy: policy(stmt()), allowed: true, reason: 'statement 1 allows sts:AssumeRoleWithWebIdentity to system:serviceaccount:shop:api' },
  { name: 'Statement as an object', policy: JSON.stringify({ Statement: stmt() }), allowed: true },
  { name: 'Federated as a list', policy: policy(stmt({ Principal: { Federated: ['arn:aws:iam::111122223333:oidc-provider/x.example.com', PROVIDER] } })), allowed: true },
  { name: 'Action as a list', policy: policy(stmt({ Action: ['sts:AssumeRole', 'sts:AssumeRoleWithWebIdentity', 'sts:TagSession'] })), allowed: true },
  { name: 'no Condition at all', policy: policy(stmt({ Condition: undefined })), allowed: true, detail: 'it has no conditions' },
  { name: 'Sid is named in the reason', policy: policy(stmt({ Sid: 'ShopApi' })), allowed: true, reason: 'statement 1 ("ShopApi")' },

  // Actions.
  { name: 'action sts:*', policy: policy(stmt({ Action: 'sts:*' })), allowed: true, detail: 'its action "sts:*" covers sts:AssumeRoleWithWebIdentity' },
  { name: 'action *', policy: policy(stmt({ Action: '*' })), allowed: true },
  { name: 'action names are case-insensitive', policy: policy(stmt({ Action: 'STS:assumerolewithwebidentity' })), allowed: true },
  { name: 'action wildcard sts:AssumeRole*', policy: policy(stmt({ Action: 'sts:AssumeRole*' })), allowed: true },
  { name: 'action ? wildcard', policy: policy(stmt({ Action: 'sts:AssumeRoleWithWebIdentit?' })), allowed: true },
  { name: 'sts:AssumeRole is another action', policy: policy(stmt({ Action: 'sts:AssumeRole' })), allowed: false, reason: 'its actions (sts:AssumeRole) do not include sts:AssumeRoleWithWebIdentity' },
  { name: 'NotAction that leaves it in', policy: policy(stmt({ Action: undefined, NotAction: 'iam:*' })), allowed: true },
  { name: 'NotAction that excludes it', policy: policy(stmt({ Action: undefined, NotAction: 'sts:*' })), allowed: false, reason: 'its NotAction "sts:*" excludes' },

  // Principals.
  {
    name: 'a provider for another issuer',
    policy: policy(stmt({ Principal: { Federated: `arn:aws:iam::${ACCOUNT}:oidc-provider/other.example.com` } })),
    allowed: false,
    reason: `the trust policy's Federated principal is arn:aws:iam::111122223333:oidc-provider/other.example.com but this cluster's issuer is https://oidc.example.com/cluster`,
  },
  { name: 'issuer with a trailing slash', policy: policy(stmt()), request: { issuer: `${ISSUER}/` }, allowed: true },
  { name: 'issuer with two trailing slashes', policy: policy(stmt()), request: { issuer: `${ISSUER}//` }, allowed: true },
  { name: 'provider ARN with a trailing slash', policy: policy(stmt({ Principal: { Federated: `${PROVIDER}/` } })), allowed: false, reason: 'ends with "/"' },
  { name: 'provider ARN in other letter case', policy: policy(stmt({ Principal: { Federated: PROVIDER.replace('oidc.example', 'OIDC.Example') } })), allowed: false, reason: 'differ only in letter case' },
  { name: 'provider ARN with https://', policy: policy(stmt({ Principal: { Federated: `arn:aws:iam::${ACCOUNT}:oidc-provider/https://${P}` } })), allowed: false, reason: 'leave out https://' },
  { name: 'not an OIDC provider ARN', policy: policy(stmt({ Principal: { Federated: 'accounts.google.com' } })), allowed: false, reason: 'is not an IAM OIDC provider ARN' },
  {
    name: 'several Federated principals, none ours',
    policy: policy(stmt({ Principal: { Federated: [`arn:aws:iam::${ACCOUNT}:oidc-provider/a.example.com`, `arn:aws:iam::${ACCOUNT}:oidc-provider/b.example.com`] } })),
    allowed: false,
    reason: `none of the trust policy's Federated principals (arn:aws:iam::${ACCOUNT}:oidc-provider/a.example.com, arn:aws:iam::${ACCOUNT}:oidc-provider/b.example.com) is ${PROVIDER}`,
  },
  {
    name: 'the provider of another account',
    policy: policy(stmt({ Principal: { Federated: `arn:aws:iam::444455556666:oidc-provider/${P}` } })),
    allowed: false,
    reason: 'is in account 444455556666 but the role is in account 111122223333',
  },
  {
    name: 'without the role\'s account, any account\'s provider for the issuer matches',
    policy: policy(stmt({ Principal: { Federated: `arn:aws:iam::444455556666:oidc-provider/${P}` } })),
    request: { accountId: undefined },
    allowed: true,
  },
  { name: 'other partitions', policy: policy(stmt({ Principal: { Federated: `arn:aws-cn:iam::${ACCOUNT}:oidc-provider/${P}` } })), allowed: true },
  { name: 'principal "*" (conditions decide)', policy: policy(stmt({ Principal: '*' })), allowed: true },
  { name: 'principal {"AWS": "*"}', policy: policy(stmt({ Principal: { AWS: '*' } })), allowed: true },
  { name: 'principal "*" with a failing condition', policy: policy(stmt({ Principal: '*', Condition: { StringEquals: { [`${P}:sub`]: 'x' } } })), allowed: false },
  { name: 'an AWS principal only', policy: policy(stmt({ Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` } })), allowed: false, reason: 'it has no Federated principal (it names AWS: arn:aws:iam::111122223333:root)' },
  { name: 'NotPrincipal naming someone else', policy: policy(stmt({ Principal: undefined, NotPrincipal: { AWS: `arn:aws:iam::${ACCOUNT}:root` } })), allowed: true },

  // Conditions on sub.
  {
    name: 'sub of another ServiceAccount',
    policy: policy(cond({ StringEquals: { [`${P}:sub`]: 'system:serviceaccount:other:app' } })),
    allowed: false,
    reason: 'condition StringEquals oidc.example.com/cluster:sub = system:serviceaccount:other:app does not match system:serviceaccount:shop:api',
  },
  { name: 'sub as a list (any of)', policy: policy(cond({ StringEquals: { [`${P}:sub`]: ['system:serviceaccount:a:b', SUB] } })), allowed: true },
  {
    name: 'sub list without ours',
    policy: policy(cond({ StringEquals: { [`${P}:sub`]: ['system:serviceaccount:a:b', 'system:serviceaccount:c:d'] } })),
    allowed: false,
    reason: '= any of [system:serviceaccount:a:b, system:serviceaccount:c:d] does not match',
  },
  { name: 'StringLike namespace wildcard', policy: policy(cond({ StringLike: { [`${P}:sub`]: 'system:serviceaccount:shop:*' } })), allowed: true },
  { name: 'StringLike ? wildcard', policy: policy(cond({ StringLike: { [`${P}:sub`]: 'system:serviceaccount:sho?:api' } })), allowed: true },
  { name: 'StringLike * matches the empty string', policy: policy(cond({ StringLike: { [`${P}:sub`]: 'system:serviceaccount:shop:api*' } })), allowed: true },
  { name: 'StringLike is anchored', policy: policy(cond({ StringLike: { [`${P}:sub`]: 'system:serviceaccount:shop:ap' } })), allowed: false },
  { name: 'StringLike for another namespace', policy: policy(cond({ StringLike: { [`${P}:sub`]: 'system:serviceaccount:other:*' } })), allowed: false, reason: 'does not match' },
  { name: 'StringLike dot is literal', policy: policy(cond({ StringLike: { [`${P}:sub`]: 'system.serviceaccount:shop:api' } })), allowed: false },
  { name: 'StringEquals does not expand *', policy: policy(cond({ StringEquals: { [`${P}:sub`]: 'system:serviceaccount:shop:*' } })), allowed: false, reason: 'StringEquals does not expand * or ?; use StringLike' },
  { name: 'values are case-sensitive', policy: policy(cond({ StringEquals: { [`${P}:sub`]: 'system:serviceaccount:Shop:api' } })), allowed: false, reason: '(values are case-sensitive)' },
  { name: 'StringEqualsIgnoreCase', policy: policy(cond({ StringEqualsIgnoreCase: { [`${P}:sub`]: 'SYSTEM:serviceaccount:SHOP:api' } })), allowed: true },
  { name: 'condition keys are case-insensitive', policy: policy(cond({ StringEquals: { 'OIDC.Example.COM/Cluster:SUB': SUB, [`${P}:AUD`]: 'sts.amazonaws.com' } })), allowed: true },
  { name: 'StringNotEquals another subject', policy: policy(cond({ StringNotEquals: { [`${P}:sub`]: 'system:serviceaccount:other:app' } })), allowed: true },
  { name: 'StringNotEquals our subject', policy: policy(cond({ StringNotEquals: { [`${P}:sub`]: SUB } })), allowed: false, reason: 'excludes system:serviceaccount:shop:api' },
  { name: 'StringNotLike another namespace', policy: policy(cond({ StringNotLike: { [`${P}:sub`]: 'system:serviceaccount:kube-system:*' } })), allowed: true },
  { name: 'StringNotLike our namespace', policy: policy(cond({ StringNotLike: { [`${P}:sub`]: ['system:serviceaccount:x:*', 'system:serviceaccount:shop:*'] } })), allowed: false },

  // Conditions on aud.
  { name: 'another audience', policy: policy(stmt()), request: { audience: 'https://kubernetes.default.svc' }, allowed: false, reason: 'oidc.example.com/cluster:aud = sts.amazonaws.com does not match https://kubernetes.default.svc' },
  { name: 'both keys in one block are ANDed', policy: policy(cond({ StringEquals: { [`${P}:sub`]: SUB, [`${P}:aud`]: 'other' } })), allowed: false },
  { name: 'operators are ANDed', policy: policy(cond({ StringEquals: { [`${P}:aud`]: 'sts.amazonaws.com' }, StringLike: { [`${P}:sub`]: 'x:*' } })), allowed: false },
  { name: 'ForAnyValue:StringLike on aud', policy: policy(cond({ 'ForAnyValue:StringLike': { [`${P}:aud`]: 'sts.*' } })), allowed: true },
  { name: 'ForAllValues:StringEquals on aud', policy: policy(cond({ 'ForAllValues:StringEquals': { [`${P}:aud`]: ['sts.amazonaws.com', 'x'] } })), allowed: true },

  // Keys the request does not have.
  {
    name: 'a key of another provider fails StringEquals',
    policy: policy(cond({ StringEquals: { 'other.example.com:sub': SUB } })),
    allowed: false,
    reason: "the request has no key other.example.com:sub; this cluster's tokens give oidc.example.com/cluster:sub and oidc.example.com/cluster:aud",
  },
  { name: 'a key with https:// fails', policy: policy(cond({ StringEquals: { [`https://${P}:sub`]: SUB } })), allowed: false, reason: 'condition keys leave out https://' },
  { name: 'a key without the provider fails', policy: policy(cond({ StringEquals: { sub: SUB } })), allowed: false, reason: 'keys are qualified with the provider' },
  { name: 'a missing key fails StringLike', policy: policy(cond({ StringLike: { [`${P}:email`]: '*' } })), allowed: false },
  { name: 'a missing key passes StringEqualsIfExists', policy: policy(cond({ StringEqualsIfExists: { [`${P}:email`]: 'a@b' } })), allowed: true, detail: '(IfExists)' },
  { name: 'a missing key passes StringNotEquals', policy: policy(cond({ StringNotEquals: { [`${P}:email`]: 'a@b' } })), allowed: true },
  { name: 'a missing key passes ForAllValues', policy: policy(cond({ 'ForAllValues:StringEquals': { [`${P}:groups`]: 'a' } })), allowed: true },
  { name: 'a missing key fails ForAnyValue', policy: policy(cond({ 'ForAnyValue:StringEquals': { [`${P}:groups`]: 'a' } })), allowed: false },
  { name: 'Null true on a missing key', policy: policy(cond({ Null: { [`${P}:email`]: 'true' } })), allowed: true },
  { name: 'Null false on sub', policy: policy(cond({ Null: { [`${P}:sub`]: false } })), allowed: true },
  { name: 'Null true on sub', policy: policy(cond({ Null: { [`${P}:sub`]: 'true' } })), allowed: false },
  { name: 'amr is ignored with a note', policy: policy(cond({ 'ForAnyValue:StringLike': { [`${P}:amr`]: 'authenticated' } })), allowed: true, detail: 'amr is only set for Amazon Cognito identities' },
  { name: 'aws: keys are not evaluated', policy: policy(cond({ IpAddress: { 'aws:SourceIp': '10.0.0.0/8' } })), allowed: true, detail: 'not evaluated here; assumed to hold' },
  { name: 'an unsupported operator on sub', policy: policy(cond({ ArnLike: { [`${P}:sub`]: 'arn:*' } })), allowed: false, reason: 'the operator ArnLike is not supported here' },

  // Deny and statement order.
  { name: 'an explicit Deny wins', policy: policy(stmt(), stmt({ Effect: 'Deny', Sid: 'NoShop', Condition: { StringLike: { [`${P}:sub`]: 'system:serviceaccount:shop:*' } } })), allowed: false, reason: 'statement 2 ("NoShop") explicitly denies' },
  { name: 'a Deny for others does not matter', policy: policy(stmt({ Effect: 'Deny', Condition: { StringLike: { [`${P}:sub`]: 'system:serviceaccount:kube-system:*' } } }), stmt()), allowed: true, reason: 'statement 2 allows' },
  { name: 'a Deny of another action does not matter', policy: policy(stmt({ Effect: 'Deny', Action: 'sts:TagSession' }), stmt()), allowed: true },
  { name: 'only a Deny', policy: policy(stmt({ Effect: 'Deny', Condition: { StringEquals: { [`${P}:sub`]: 'x' } } })), allowed: false, reason: 'no Allow statement' },
  {
    name: 'a service statement and an IRSA statement',
    policy: policy(stmt({ Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole', Condition: undefined }), stmt()),
    allowed: true,
    reason: 'statement 2 allows',
  },
  {
    name: 'the closest statement explains the refusal',
    policy: policy(
      stmt({ Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole', Condition: undefined }),
      cond({ StringEquals: { [`${P}:sub`]: 'system:serviceaccount:shop:web' } }),
    ),
    allowed: false,
    reason: 'closest is statement 2: condition StringEquals oidc.example.com/cluster:sub = system:serviceaccount:shop:web does not match',
  },

  // Documents in other wrappers.
  { name: 'aws iam get-role output', policy: JSON.stringify({ Role: { RoleName: 'api', AssumeRolePolicyDocument: { Statement: [stmt()] } } }), allowed: true },
  { name: 'URL-encoded (the raw IAM API)', policy: encodeURIComponent(policy(stmt())), allowed: true },
  { name: 'URL-encoded inside get-role output', policy: JSON.stringify({ Role: { AssumeRolePolicyDocument: encodeURIComponent(policy(stmt())) } }), allowed: true },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const result = evaluateTrustPolicy(c.policy, { ...REQUEST, ...c.request });
    t.equal(result.allowed, c.allowed, result.reason);
    if (c.reason !== undefined) t.match(result.reason, typeof c.reason === 'string' ? new RegExp(escape(c.reason)) : c.reason);
    if (c.detail !== undefined) {
      const re = typeof c.detail === 'string' ? new RegExp(escape(c.detail)) : c.detail;
      t.ok(result.checks.some((k) => re.test(k.detail)), `some check says ${String(c.detail)}`);
    }
    const decision = result.checks.at(-1);
    t.same({ name: decision?.name, ok: decision?.ok }, { name: 'decision', ok: c.allowed }, 'the last check is the decision');
  });
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

t.test('each step is data: statement, name, ok, detail', async (t) => {
  const result = evaluateTrustPolicy(policy(stmt()), REQUEST);
  t.equal(result.statement, 1);
  t.same(
    result.checks.map((c) => [c.statement, c.name, c.ok]),
    [[1, 'principal', true], [1, 'action', true], [1, 'condition', true], [1, 'condition', true], [1, 'decision', true]],
  );
  t.match(result.checks[0]?.detail, `the Federated principal ${PROVIDER} is the provider of this cluster's issuer ${ISSUER}`);
  t.equal(result.checks[2]?.detail, `condition StringEquals ${P}:sub = ${SUB} matches ${SUB}`);
});

t.test('conditions of statements for other principals are not listed', async (t) => {
  const result = evaluateTrustPolicy(policy(stmt({ Principal: { Service: 'ec2.amazonaws.com' } })), REQUEST);
  t.same(result.checks.map((c) => c.name), ['principal', 'action', 'decision']);
});

t.test('a parsed policy can be evaluated many times', async (t) => {
  const parsed = parseTrustPolicy(policy(stmt()));
  t.equal(evaluateTrustPolicy(parsed, REQUEST).allowed, true);
  t.equal(evaluateTrustPolicy(parsed, { ...REQUEST, subject: 'system:serviceaccount:x:y' }).allowed, false);
  t.same(federatedPrincipals(parsed), [PROVIDER]);
});

t.test('bad policies are refused with a message that says where', async (t) => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{"Statement": [', /^the trust policy is not JSON: /],
    ['not an object', '[1, 2]', /must be a JSON object with a "Statement"/],
    ['no Statement', '{"Version": "2012-10-17"}', /has no "Statement"/],
    ['empty Statement', '{"Statement": []}', /"Statement" list is empty/],
    ['statement not an object', '{"Statement": ["x"]}', /Statement 1 is not an object/],
    ['Effect in lower case', policy(stmt({ Effect: 'allow' })), /Statement 1: Effect must be "Allow" or "Deny", not "allow"/],
    ['no Effect', policy(stmt({ Effect: undefined })), /Effect must be "Allow" or "Deny", not missing/],
    ['no Principal', policy(stmt(), stmt({ Principal: undefined })), /Statement 2 needs exactly one of Principal or NotPrincipal/],
    ['Principal as a string ARN', policy(stmt({ Principal: PROVIDER })), /Statement 1.Principal must be "\*" or an object/],
    ['no Action', policy(stmt({ Action: undefined })), /needs exactly one of Action or NotAction/],
    ['Action a number list', policy(stmt({ Action: [1, {}] })), /Statement 1.Action must be a string or a list of strings/],
    ['Condition a list', policy(stmt({ Condition: [] })), /Statement 1.Condition must be an object of operators/],
    ['condition block a string', policy(stmt({ Condition: { StringEquals: 'x' } })), /Condition.StringEquals must be an object of condition keys/],
    ['condition values empty', policy(stmt({ Condition: { StringEquals: { [`${P}:sub`]: [] } } })), /is an empty list/],
    ['bad URL encoding', '%7B%E0%A4%A', /URL-encoded but does not decode/],
  ];
  for (const [name, input, message] of bad) {
    t.throws(() => parseTrustPolicy(input), message, name);
    let thrown: unknown;
    try {
      evaluateTrustPolicy(input, REQUEST);
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof TrustPolicyError, `${name}: evaluate throws a TrustPolicyError too`);
  }
});

t.test('provider names and ARNs', async (t) => {
  t.equal(providerPath('https://oidc.example.com/cluster/'), 'oidc.example.com/cluster');
  t.equal(providerPath('https://s3.amazonaws.com/bucket'), 's3.amazonaws.com/bucket');
  t.equal(providerArn(ISSUER, ACCOUNT), PROVIDER);
  t.equal(providerArn(ISSUER, ACCOUNT, 'aws-us-gov'), `arn:aws-us-gov:iam::${ACCOUNT}:oidc-provider/${P}`);
  t.same(parseProviderArn(PROVIDER), { partition: 'aws', accountId: ACCOUNT, path: P });
  t.equal(parseProviderArn(`arn:aws:iam::${ACCOUNT}:role/x`), undefined);
});

t.test('wildcards: only * and ? are special', async (t) => {
  t.ok(wildcardMatch('a*c', 'abbbc'));
  t.ok(wildcardMatch('a*c', 'ac'));
  t.ok(wildcardMatch('a?c', 'abc'));
  t.notOk(wildcardMatch('a?c', 'ac'));
  t.notOk(wildcardMatch('a.c', 'abc'), '. is literal');
  t.ok(wildcardMatch('a(b)[c]+$', 'a(b)[c]+$'), 'regex characters are literal');
  t.ok(wildcardMatch('*', 'line\nbreak'), '* spans any character');
  t.notOk(wildcardMatch('ABC', 'abc'));
  t.ok(wildcardMatch('ABC', 'abc', true));
});

t.test('property: the canonical policy for a ServiceAccount admits it and no other', async () => {
  const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/);
  fc.assert(
    fc.property(label, label, label, label, (ns, name, otherNs, otherName) => {
      const mine = `system:serviceaccount:${ns}:${name}`;
      const other = `system:serviceaccount:${otherNs}:${otherName}`;
      const doc = policy(cond({ StringEquals: { [`${P}:sub`]: mine, [`${P}:aud`]: 'sts.amazonaws.com' } }));
      const admitted = (subject: string): boolean => evaluateTrustPolicy(doc, { ...REQUEST, subject }).allowed;
      return admitted(mine) && admitted(other) === (other === mine);
    }),
  );
});
