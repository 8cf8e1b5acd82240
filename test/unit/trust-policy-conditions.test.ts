// IAM's condition semantics as they apply to a web-identity trust policy,
// one row per rule: each row is a statement (or a whole policy) and whether
// STS would let system:serviceaccount:shop:api assume the role with it.
import t from 'tap';
import { evaluateTrustPolicy, type WebIdentityRequest } from '../../src/doctor/trust-policy.js';

const ISSUER = 'https://oidc.example.com/id/ABC';
const P = 'oidc.example.com/id/ABC';
const ACCOUNT = '111122223333';
const PROVIDER = `arn:aws:iam::${ACCOUNT}:oidc-provider/${P}`;
const SUB = 'system:serviceaccount:shop:api';
const AUD = 'sts.amazonaws.com';
const REQUEST: WebIdentityRequest = { issuer: ISSUER, subject: SUB, audience: AUD, accountId: ACCOUNT };
const SUB_KEY = `${P}:sub`;
const AUD_KEY = `${P}:aud`;
/** A key of this provider that web-identity requests from a cluster never carry. */
const ABSENT = `${P}:email`;

type Json = Record<string, unknown>;

function statement(over: Json = {}): Json {
  return { Effect: 'Allow', Principal: { Federated: PROVIDER }, Action: 'sts:AssumeRoleWithWebIdentity', ...over };
}

const allowIf = (condition: Json): Json[] => [statement({ Condition: condition })];

interface Row {
  rule: string;
  statements: Json[];
  allowed: boolean;
}

const rows: Row[] = [
  // StringEquals: exact and case-sensitive; no wildcards.
  { rule: 'StringEquals: equal value', statements: allowIf({ StringEquals: { [SUB_KEY]: SUB } }), allowed: true },
  { rule: 'StringEquals: other value', statements: allowIf({ StringEquals: { [SUB_KEY]: 'system:serviceaccount:shop:web' } }), allowed: false },
  { rule: 'StringEquals: case differs', statements: allowIf({ StringEquals: { [SUB_KEY]: SUB.toUpperCase() } }), allowed: false },
  { rule: 'StringEquals: * is literal', statements: allowIf({ StringEquals: { [SUB_KEY]: 'system:serviceaccount:shop:*' } }), allowed: false },
  { rule: 'StringEquals: ? is literal', statements: allowIf({ StringEquals: { [SUB_KEY]: 'system:serviceaccount:shop:ap?' } }), allowed: false },
  { rule: 'StringEquals: prefix is not a match', statements: allowIf({ StringEquals: { [SUB_KEY]: 'system:serviceaccount:shop' } }), allowed: false },

  // StringLike: * any run (also empty, also ":"), ? exactly one character; case-sensitive; anchored.
  { rule: 'StringLike: * for the name', statements: allowIf({ StringLike: { [SUB_KEY]: 'system:serviceaccount:shop:*' } }), allowed: true },
  { rule: 'StringLike: * spans ":"', statements: allowIf({ StringLike: { [SUB_KEY]: 'system:*:api' } }), allowed: true },
  { rule: 'StringLike: * matches nothing', statements: allowIf({ StringLike: { [SUB_KEY]: `${SUB}*` } }), allowed: true },
  { rule: 'StringLike: lone *', statements: allowIf({ StringLike: { [SUB_KEY]: '*' } }), allowed: true },
  { rule: 'StringLike: ? is one character', statements: allowIf({ StringLike: { [SUB_KEY]: 'system:serviceaccount:shop:a?i' } }), allowed: true },
  { rule: 'StringLike: ? is not zero characters', statements: allowIf({ StringLike: { [SUB_KEY]: 'system:serviceaccount:shop:api?' } }), allowed: false },
  { rule: 'StringLike: ? is not two characters', statements: allowIf({ StringLike: { [SUB_KEY]: 'system:serviceaccount:shop:?' } }), allowed: false },
  { rule: 'StringLike: case-sensitive', statements: allowIf({ StringLike: { [SUB_KEY]: 'system:serviceaccount:SHOP:*' } }), allowed: false },
  { rule: 'StringLike: anchored at the start', statements: allowIf({ StringLike: { [SUB_KEY]: 'serviceaccount:shop:*' } }), allowed: false },
  { rule: 'StringLike: without a wildcard it is equality', statements: allowIf({ StringLike: { [SUB_KEY]: SUB } }), allowed: true },

  // Negated operators: true when no value matches (multiple values: NOR).
  { rule: 'StringNotEquals: other value', statements: allowIf({ StringNotEquals: { [SUB_KEY]: 'system:serviceaccount:kube-system:x' } }), allowed: true },
  { rule: 'StringNotEquals: equal value', statements: allowIf({ StringNotEquals: { [SUB_KEY]: SUB } }), allowed: false },
  { rule: 'StringNotEquals: case differs', statements: allowIf({ StringNotEquals: { [SUB_KEY]: SUB.toUpperCase() } }), allowed: true },
  { rule: 'StringNotEquals: values are NOR (one equal)', statements: allowIf({ StringNotEquals: { [SUB_KEY]: ['system:serviceaccount:a:b', SUB] } }), allowed: false },
  { rule: 'StringNotEquals: values are NOR (none equal)', statements: allowIf({ StringNotEquals: { [SUB_KEY]: ['system:serviceaccount:a:b', 'system:serviceaccount:c:d'] } }), allowed: true },
  { rule: 'StringNotLike: pattern matches', statements: allowIf({ StringNotLike: { [SUB_KEY]: 'system:serviceaccount:shop:*' } }), allowed: false },
  { rule: 'StringNotLike: pattern does not match', statements: allowIf({ StringNotLike: { [SUB_KEY]: 'system:serviceaccount:kube-*:*' } }), allowed: true },
  { rule: 'StringNotLike: values are NOR', statements: allowIf({ StringNotLike: { [SUB_KEY]: ['*:kube-system:*', '*:shop:*'] } }), allowed: false },

  // Case-insensitive operators.
  { rule: 'StringEqualsIgnoreCase: case differs', statements: allowIf({ StringEqualsIgnoreCase: { [SUB_KEY]: SUB.toUpperCase() } }), allowed: true },
  { rule: 'StringEqualsIgnoreCase: other value', statements: allowIf({ StringEqualsIgnoreCase: { [SUB_KEY]: 'SYSTEM:SERVICEACCOUNT:SHOP:WEB' } }), allowed: false },
  { rule: 'StringEqualsIgnoreCase: * is literal', statements: allowIf({ StringEqualsIgnoreCase: { [SUB_KEY]: 'SYSTEM:SERVICEACCOUNT:SHOP:*' } }), allowed: false },
  { rule: 'StringNotEqualsIgnoreCase: case differs', statements: allowIf({ StringNotEqualsIgnoreCase: { [SUB_KEY]: SUB.toUpperCase() } }), allowed: false },

  // Operator and key names are case-insensitive; values are not.
  { rule: 'operator names ignore case', statements: allowIf({ stringequals: { [SUB_KEY]: SUB } }), allowed: true },
  { rule: 'condition key names ignore case', statements: allowIf({ StringEquals: { [SUB_KEY.toUpperCase()]: SUB } }), allowed: true },

  // Combination: values OR, keys AND, operators AND.
  { rule: 'several values for one key: OR', statements: allowIf({ StringEquals: { [SUB_KEY]: ['system:serviceaccount:a:b', SUB] } }), allowed: true },
  { rule: 'several values, none equal', statements: allowIf({ StringEquals: { [SUB_KEY]: ['system:serviceaccount:a:b', 'system:serviceaccount:c:d'] } }), allowed: false },
  { rule: 'several keys in one operator: AND (both hold)', statements: allowIf({ StringEquals: { [SUB_KEY]: SUB, [AUD_KEY]: AUD } }), allowed: true },
  { rule: 'several keys in one operator: AND (one fails)', statements: allowIf({ StringEquals: { [SUB_KEY]: SUB, [AUD_KEY]: 'other' } }), allowed: false },
  { rule: 'several operators: AND (both hold)', statements: allowIf({ StringEquals: { [AUD_KEY]: AUD }, StringLike: { [SUB_KEY]: '*:shop:*' } }), allowed: true },
  { rule: 'several operators: AND (one fails)', statements: allowIf({ StringEquals: { [AUD_KEY]: AUD }, StringLike: { [SUB_KEY]: '*:web:*' } }), allowed: false },
  { rule: 'an empty Condition holds', statements: allowIf({}), allowed: true },

  // ...IfExists: a present key is checked as usual, an absent one holds.
  { rule: 'StringEqualsIfExists: present, equal', statements: allowIf({ StringEqualsIfExists: { [SUB_KEY]: SUB } }), allowed: true },
  { rule: 'StringEqualsIfExists: present, other', statements: allowIf({ StringEqualsIfExists: { [SUB_KEY]: 'x' } }), allowed: false },
  { rule: 'StringEqualsIfExists: absent', statements: allowIf({ StringEqualsIfExists: { [ABSENT]: 'x' } }), allowed: true },
  { rule: 'StringLikeIfExists: absent', statements: allowIf({ StringLikeIfExists: { [ABSENT]: 'x*' } }), allowed: true },
  { rule: 'StringNotLikeIfExists: present, matching', statements: allowIf({ StringNotLikeIfExists: { [SUB_KEY]: '*:shop:*' } }), allowed: false },

  // A key the request does not have: false, except for negated operators.
  { rule: 'absent key: StringEquals fails', statements: allowIf({ StringEquals: { [ABSENT]: 'a@example.com' } }), allowed: false },
  { rule: 'absent key: StringLike * fails', statements: allowIf({ StringLike: { [ABSENT]: '*' } }), allowed: false },
  { rule: 'absent key: StringEqualsIgnoreCase fails', statements: allowIf({ StringEqualsIgnoreCase: { [ABSENT]: 'x' } }), allowed: false },
  { rule: 'absent key: StringNotEquals holds', statements: allowIf({ StringNotEquals: { [ABSENT]: 'x' } }), allowed: true },
  { rule: 'absent key: StringNotLike holds', statements: allowIf({ StringNotLike: { [ABSENT]: '*' } }), allowed: true },
  { rule: 'key of another provider is absent', statements: allowIf({ StringEquals: { 'oidc.example.com/id/OTHER:sub': SUB } }), allowed: false },

  // Set operators over the (single-valued) sub and aud.
  { rule: 'ForAnyValue:StringEquals: present, equal', statements: allowIf({ 'ForAnyValue:StringEquals': { [AUD_KEY]: [AUD, 'x'] } }), allowed: true },
  { rule: 'ForAnyValue:StringEquals: present, other', statements: allowIf({ 'ForAnyValue:StringEquals': { [AUD_KEY]: 'x' } }), allowed: false },
  { rule: 'ForAllValues:StringLike: present, matching', statements: allowIf({ 'ForAllValues:StringLike': { [SUB_KEY]: '*:shop:*' } }), allowed: true },
  { rule: 'ForAllValues:StringLike: present, other', statements: allowIf({ 'ForAllValues:StringLike': { [SUB_KEY]: '*:web:*' } }), allowed: false },
  { rule: 'ForAllValues:StringNotEquals: present, equal', statements: allowIf({ 'ForAllValues:StringNotEquals': { [SUB_KEY]: SUB } }), allowed: false },
  { rule: 'ForAnyValue:StringNotEquals: present, other', statements: allowIf({ 'ForAnyValue:StringNotEquals': { [SUB_KEY]: 'x' } }), allowed: true },
  // Absent key: ForAllValues holds (no value fails), ForAnyValue fails (no value matches), whatever the operator after it.
  { rule: 'absent key: ForAllValues:StringEquals holds', statements: allowIf({ 'ForAllValues:StringEquals': { [ABSENT]: 'x' } }), allowed: true },
  { rule: 'absent key: ForAllValues:StringNotLike holds', statements: allowIf({ 'ForAllValues:StringNotLike': { [ABSENT]: 'x' } }), allowed: true },
  { rule: 'absent key: ForAnyValue:StringEquals fails', statements: allowIf({ 'ForAnyValue:StringEquals': { [ABSENT]: 'x' } }), allowed: false },
  { rule: 'absent key: ForAnyValue:StringNotEquals fails', statements: allowIf({ 'ForAnyValue:StringNotEquals': { [ABSENT]: 'x' } }), allowed: false },
  { rule: 'absent key: ForAnyValue:StringNotLike fails', statements: allowIf({ 'ForAnyValue:StringNotLike': { [ABSENT]: 'x*' } }), allowed: false },
  { rule: 'absent key: ForAnyValue:StringEqualsIfExists fails', statements: allowIf({ 'ForAnyValue:StringEqualsIfExists': { [ABSENT]: 'x' } }), allowed: false },

  // Null: "true" asks for the key to be absent, "false" for it to be present.
  { rule: 'Null true: absent key', statements: allowIf({ Null: { [ABSENT]: 'true' } }), allowed: true },
  { rule: 'Null true: present key', statements: allowIf({ Null: { [SUB_KEY]: 'true' } }), allowed: false },
  { rule: 'Null false: present key', statements: allowIf({ Null: { [SUB_KEY]: 'false' } }), allowed: true },
  { rule: 'Null false: absent key', statements: allowIf({ Null: { [ABSENT]: 'false' } }), allowed: false },
  { rule: 'Null with a JSON boolean', statements: allowIf({ Null: { [ABSENT]: true } }), allowed: true },
  { rule: 'Null beside StringEquals: AND', statements: allowIf({ Null: { [SUB_KEY]: 'false' }, StringEquals: { [AUD_KEY]: 'x' } }), allowed: false },

  // Effect: an applying Deny wins over any Allow, in any order; a Deny that does not apply changes nothing.
  { rule: 'Deny after Allow wins', statements: [statement(), statement({ Effect: 'Deny' })], allowed: false },
  { rule: 'Deny before Allow wins', statements: [statement({ Effect: 'Deny' }), statement()], allowed: false },
  { rule: 'Deny with a condition that holds', statements: [statement(), statement({ Effect: 'Deny', Condition: { StringLike: { [SUB_KEY]: '*:shop:*' } } })], allowed: false },
  { rule: 'Deny with a condition that fails', statements: [statement(), statement({ Effect: 'Deny', Condition: { StringLike: { [SUB_KEY]: '*:kube-system:*' } } })], allowed: true },
  { rule: 'Deny with StringNotEquals on an absent key applies', statements: [statement(), statement({ Effect: 'Deny', Condition: { StringNotEquals: { [ABSENT]: 'x' } } })], allowed: false },
  { rule: 'Deny with IfExists on an absent key applies', statements: [statement(), statement({ Effect: 'Deny', Condition: { StringEqualsIfExists: { [ABSENT]: 'x' } } })], allowed: false },
  { rule: 'Deny of another provider', statements: [statement(), statement({ Effect: 'Deny', Principal: { Federated: `arn:aws:iam::${ACCOUNT}:oidc-provider/other.example.com` } })], allowed: true },
  { rule: 'only a Deny: implicit deny', statements: [statement({ Effect: 'Deny', Condition: { StringEquals: { [SUB_KEY]: 'x' } } })], allowed: false },
  { rule: 'one of several Allows is enough', statements: [statement({ Condition: { StringEquals: { [SUB_KEY]: 'x' } } }), statement()], allowed: true },

  // Principal: Federated names this issuer's provider, in the role's account.
  { rule: 'Federated: the provider ARN', statements: [statement()], allowed: true },
  { rule: 'Federated: among others', statements: [statement({ Principal: { Federated: [`arn:aws:iam::${ACCOUNT}:oidc-provider/x.example.com`, PROVIDER] } })], allowed: true },
  { rule: 'Federated: another path of the same host', statements: [statement({ Principal: { Federated: `arn:aws:iam::${ACCOUNT}:oidc-provider/oidc.example.com/id/OTHER` } })], allowed: false },
  { rule: 'Federated: another account', statements: [statement({ Principal: { Federated: `arn:aws:iam::444455556666:oidc-provider/${P}` } })], allowed: false },
  { rule: 'Federated: a bare host, not an ARN', statements: [statement({ Principal: { Federated: P } })], allowed: false },
  { rule: 'Principal "*"', statements: [statement({ Principal: '*' })], allowed: true },
  { rule: 'Principal Service only', statements: [statement({ Principal: { Service: 'ec2.amazonaws.com' } })], allowed: false },
  { rule: 'Principal AWS account only', statements: [statement({ Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` } })], allowed: false },

  // Action: sts:AssumeRoleWithWebIdentity, or a wildcard that covers it; names ignore case.
  { rule: 'Action sts:AssumeRoleWithWebIdentity', statements: [statement()], allowed: true },
  { rule: 'Action sts:*', statements: [statement({ Action: 'sts:*' })], allowed: true },
  { rule: 'Action *', statements: [statement({ Action: '*' })], allowed: true },
  { rule: 'Action in other case', statements: [statement({ Action: 'sts:assumerolewithwebidentity' })], allowed: true },
  { rule: 'Action sts:AssumeRole', statements: [statement({ Action: 'sts:AssumeRole' })], allowed: false },
  { rule: 'Action sts:AssumeRoleWithSAML', statements: [statement({ Action: 'sts:AssumeRoleWithSAML' })], allowed: false },
  { rule: 'Action iam:*', statements: [statement({ Action: 'iam:*' })], allowed: false },
  { rule: 'Action list with it', statements: [statement({ Action: ['sts:TagSession', 'sts:AssumeRoleWithWebIdentity'] })], allowed: true },
];

for (const row of rows) {
  t.test(row.rule, async (t) => {
    const result = evaluateTrustPolicy(JSON.stringify({ Version: '2012-10-17', Statement: row.statements }), REQUEST);
    t.equal(result.allowed, row.allowed, result.reason);
  });
}

t.test('an absent key under ForAnyValue says why it fails', async (t) => {
  for (const operator of ['ForAnyValue:StringNotEquals', 'ForAnyValue:StringEqualsIfExists']) {
    const result = evaluateTrustPolicy({ Statement: allowIf({ [operator]: { [ABSENT]: 'x' } }) }, REQUEST);
    const check = result.checks.find((c) => c.name === 'condition');
    t.equal(check?.ok, false, operator);
    t.match(check?.detail, /fails: the request has no key .*\(ForAnyValue over no values\)$/, operator);
  }
});
