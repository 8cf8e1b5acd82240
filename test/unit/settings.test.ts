// The pure parsers of src/settings, edge by edge: what each accepts, what it
// refuses and with which message. Written against the mutants StrykerJS left
// alive (npm run mutation): each case below fails for one of them.
import t from 'tap';
import { MIN_TOKEN_EXPIRATION } from '../../src/config.js';
import { lookupConfigMap, parseConfigMapConfig } from '../../src/settings/config-map.js';
import { parseContainerCredentialsConfig } from '../../src/settings/container-credentials.js';
import { clampTokenExpiration, NO_SETTINGS, parseServiceAccountAnnotations } from '../../src/settings/service-account.js';
import { parseGoInt } from '../../src/settings/values.js';

const ARN = 'arn:aws:iam::111122223333:role/app';
const P = 'eks.amazonaws.com';

t.test('identities file: what is refused, and why', async (t) => {
  const refused: Array<[string, RegExp]> = [
    ['[]', /^expected an object \{"identities": \[\.\.\.\]\}$/],
    ['null', /^expected an object/],
    ['"text"', /^expected an object/],
    ['7', /^expected an object/],
    ['{"identities":{}}', /^"identities" must be an array$/],
    ['{"identities":"shop/api"}', /^"identities" must be an array$/],
    ['{"identities":[null]}', /^identities\[0\] must have non-empty string "namespace" and "serviceAccount"$/],
    ['{"identities":[["shop","api"]]}', /^identities\[0\] must have/],
    ['{"identities":[{"namespace":"shop"}]}', /^identities\[0\] must have/],
    ['{"identities":[{"serviceAccount":"api"}]}', /^identities\[0\] must have/],
    ['{"identities":[{"namespace":"shop","serviceAccount":""}]}', /^identities\[0\] must have/],
    ['{"identities":[{"namespace":"","serviceAccount":"api"}]}', /^identities\[0\] must have/],
    ['{"identities":[{"namespace":"shop","serviceAccount":"api"},{"namespace":1,"serviceAccount":"b"}]}', /^identities\[1\] must have/],
    ['{"identities":[{"namespace":"shop","serviceAccount":7}]}', /^identities\[0\] must have/],
    ['{', /^not valid JSON: /],
  ];
  for (const [text, why] of refused) t.throws(() => parseContainerCredentialsConfig(text), why, text);
  t.same([...parseContainerCredentialsConfig('{}')], [], 'no identities');
  t.same([...parseContainerCredentialsConfig('{"identities":null}')], [], 'null identities');
  t.same([...parseContainerCredentialsConfig('{"identities":[{"namespace":"a","serviceAccount":"b"},{"namespace":"c","serviceAccount":"d"}]}')], ['a/b', 'c/d']);
});

t.test('ConfigMap: what is refused, and why', async (t) => {
  const refused: Array<[string, RegExp]> = [
    ['{', /^data\.config is not valid JSON: /],
    ['{"app":{}}', /^data\.config key "app" must be "namespace\/name" or "\*\/name"$/],
    ['{"a/b/c":{}}', /key "a\/b\/c" must be/],
    ['{"/app":{}}', /key "\/app" must be/],
    ['{"shop/":{}}', /key "shop\/" must be/],
    ['{"shop/app":[]}', /^data\.config\["shop\/app"\] must be an object$/],
    ['{"shop/app":"arn"}', /must be an object/],
    ['{"shop/app":{"Audience":5}}', /^data\.config\["shop\/app"\]\.Audience must be a string$/],
    ['{"shop/app":{"UseRegionalSTS":"true"}}', /^data\.config\["shop\/app"\]\.UseRegionalSTS must be true or false$/],
    ['{"shop/app":{"TokenExpiration":"3600"}}', /^data\.config\["shop\/app"\]\.TokenExpiration must be a whole number of seconds$/],
    ['{"shop/app":{"TokenExpiration":3600.5}}', /TokenExpiration must be a whole number/],
    ['{"shop/app":{"TokenExpiration":1e300}}', /TokenExpiration must be a whole number/],
  ];
  for (const [text, why] of refused) t.throws(() => parseConfigMapConfig(text), why, text);
  const invalid = (() => {
    try {
      parseConfigMapConfig('{');
    } catch (err) {
      return err as Error;
    }
    return undefined;
  })();
  t.ok(invalid?.cause instanceof SyntaxError, 'the JSON error is kept as the cause');
  for (const blank of [undefined, '', '  \n ']) t.equal(parseConfigMapConfig(blank).size, 0, `${JSON.stringify(blank)} is empty`);
  t.same(parseConfigMapConfig('{"shop/app":{}}').get('shop/app'), { roleArn: '' }, 'no RoleARN: empty, nothing else set');
  t.same(parseConfigMapConfig(`{"shop/app":{"RoleARN":"  ${ARN} ","Audience":"","UseRegionalSTS":false,"TokenExpiration":0}}`).get('shop/app'),
    { roleArn: ARN, regionalSts: false }, 'trimmed; an empty Audience and a 0 lifetime mean the default; false is kept');
  t.equal(parseConfigMapConfig('{"shop/app":{"TokenExpiration":60}}').get('shop/app')?.tokenExpiration, MIN_TOKEN_EXPIRATION, 'raised to the minimum');
  t.same(parseConfigMapConfig('{"shop/app":{"Audience":"a","Audience":null}}').get('shop/app'), { roleArn: '', audience: 'a' }, 'null keeps the earlier value');
  t.equal(parseConfigMapConfig('{"shop/app\\u0000":{"RoleARN":"x"}}').get('shop/app\u0000')?.roleArn, 'x', 'a NUL in a key stays in the key');
  t.same([...parseConfigMapConfig('{"shop/app":{"RoleARN":"a"},"*/app":{"RoleARN":"b"}}').keys()], ['shop/app', '*/app']);
});

t.test('ConfigMap lookup: exact key first, then any namespace', async (t) => {
  const map = parseConfigMapConfig('{"shop/app":{"RoleARN":"exact"},"*/app":{"RoleARN":"any"}}');
  t.equal(lookupConfigMap(map, 'shop', 'app')?.roleArn, 'exact');
  t.equal(lookupConfigMap(map, 'other', 'app')?.roleArn, 'any');
  t.equal(lookupConfigMap(map, 'shop', 'web'), undefined);
  t.equal(lookupConfigMap(undefined, 'shop', 'app'), undefined);
  t.equal(lookupConfigMap(new Map(), 'shop', 'app'), undefined);
});

t.test('ServiceAccount annotations: defaults, warnings, edges', async (t) => {
  t.same(NO_SETTINGS, { warnings: [] });
  for (const none of [undefined, null, 'text', 5]) {
    t.equal(parseServiceAccountAnnotations(none as never, P), NO_SETTINGS, `${JSON.stringify(none)}: no settings`);
  }
  t.equal(parseServiceAccountAnnotations({}, P), NO_SETTINGS, 'no annotations of ours');
  t.equal(parseServiceAccountAnnotations({ 'other.example.com/role-arn': ARN }, P), NO_SETTINGS, 'another prefix');
  t.same(parseServiceAccountAnnotations({ [`${P}/role-arn`]: 5 } as never, P), { warnings: [`annotation ${P}/role-arn is not a string; it is ignored`] });
  t.same(parseServiceAccountAnnotations({ [`${P}/audience`]: 'aud' }, P), { warnings: [], audience: 'aud' }, 'audience alone');
  t.same(parseServiceAccountAnnotations({ [`${P}/role-arn`]: '  ' }, P), { warnings: [] }, 'a blank role ARN is no role');
  t.same(parseServiceAccountAnnotations({ [`${P}/role-session-name`]: 'pod-name' }, P), { warnings: [], roleSessionName: 'pod-name' });
  t.same(parseServiceAccountAnnotations({ [`${P}/role-session-name`]: 'x' }, P), { warnings: [`annotation ${P}/role-session-name="x" is not "pod-name"; it is ignored`] });
  t.same(parseServiceAccountAnnotations({ [`${P}/token-expiration`]: '600' }, P), { warnings: [], tokenExpiration: 600 }, 'the minimum itself: no warning');
  t.same(parseServiceAccountAnnotations({ [`${P}/token-expiration`]: '601' }, P), { warnings: [], tokenExpiration: 601 });
  t.same(parseServiceAccountAnnotations({ [`${P}/token-expiration`]: '599' }, P), {
    warnings: [`annotation ${P}/token-expiration="599" is below the minimum of 600 seconds; 600 is used`],
    tokenExpiration: 600,
  });
  t.same(parseServiceAccountAnnotations({ [`${P}/token-expiration`]: 'soon' }, P), {
    warnings: [`annotation ${P}/token-expiration="soon" is not a whole number of seconds; it is ignored`],
  });
  t.equal(clampTokenExpiration(599), 600);
  t.equal(clampTokenExpiration(600), 600);
  t.equal(clampTokenExpiration(601), 601);
});

t.test('parseGoInt: Go syntax, and only what a JS number holds exactly', async (t) => {
  for (const [text, n] of [['0', 0], ['+7', 7], ['-7', -7], ['007', 7], ['9007199254740991', 9007199254740991], ['-9007199254740991', -9007199254740991]] as const) {
    t.equal(parseGoInt(text), n, text);
  }
  for (const text of ['', ' 1', '1 ', '1.0', '1e3', '0x10', '+-1', '9007199254740992', '9223372036854775807', '9223372036854775808', '-9223372036854775809']) {
    t.equal(parseGoInt(text), undefined, JSON.stringify(text));
  }
});
