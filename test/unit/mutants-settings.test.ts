// The settings parsers (values, ServiceAccount annotations, the ConfigMap),
// pinned where mutation testing showed no test held them: each case fails if
// one operator, condition or pattern of the parser is changed. Expectations
// are exact: whole results, whole warning lists, whole error messages.
import t from 'tap';
import { MAX_ROLE_ARN_LENGTH, MIN_TOKEN_EXPIRATION } from '../../src/config.js';
import { lookupConfigMap, parseConfigMapConfig, type ConfigMapEntry } from '../../src/settings/config-map.js';
import {
  clampTokenExpiration,
  NO_SETTINGS,
  parseRoleSessionName,
  parseServiceAccountAnnotations,
  parseTokenExpirationAnnotation,
  type ServiceAccountSettings,
} from '../../src/settings/service-account.js';
import { isWellFormedRoleArn, parseGoBool, parseGoInt, parseSkipContainers } from '../../src/settings/values.js';

const P = 'eks.amazonaws.com';
const ARN = 'arn:aws:iam::111122223333:role/app';

/** The message of what `fn` throws, or 'no error'. */
function thrownBy(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

function errorOf(fn: () => unknown): string {
  return thrownBy(fn)?.message ?? 'no error';
}

/** A skip-containers result with its set as a sorted list, for exact comparison. */
function skip(text: string, containers: string[]): { skipped: string[]; unmatched: number; unmatchedExamples: readonly string[]; error?: string } {
  const r = parseSkipContainers(text, new Set(containers));
  return { ...r, skipped: [...r.skipped].sort() };
}

/** Settings as a plain object, so that strictSame also sees a key set to undefined. */
function sa(annotations: Record<string, unknown>): ServiceAccountSettings {
  return parseServiceAccountAnnotations(annotations as Record<string, string>, P);
}

/** A config entry as parsed, for strictSame (keys set to undefined count). */
function entry(json: string, key = 'a/b'): ConfigMapEntry | undefined {
  return parseConfigMapConfig(json).get(key);
}

// ---------------------------------------------------------------- values.ts

t.test('parseGoBool: only the six spellings each way', async (t) => {
  t.same(['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False', 'yes', 'tRue', ''].map(parseGoBool),
    [true, true, true, true, true, true, false, false, false, false, false, false, undefined, undefined, undefined]);
});

t.test('parseGoInt: leading zeros and signs do not count against the digit limit', async (t) => {
  t.equal(parseGoInt('00000000000000000000042'), 42, 'unsigned, 23 characters');
  t.equal(parseGoInt('+00000000000000000000042'), 42);
  t.equal(parseGoInt('-00000000000000000000042'), -42);
  t.equal(parseGoInt('-0000000000000000009007199254740991'), -9007199254740991);
  t.equal(parseGoInt('1000000000000000'), 1000000000000000, '16 digits');
  t.equal(parseGoInt('9999999999999999'), undefined, '16 digits, past the safe range');
  t.equal(parseGoInt('10000000000000000'), undefined, '17 digits');
  t.ok(Object.is(parseGoInt('-0'), 0), '"-0" is 0, not -0');
  t.ok(Object.is(parseGoInt('-000'), 0), '"-000" is 0, not -0');
  t.same(['x1', '1x', '+', '-', '1-', '٣', '1_000', '0b1', 'Infinity', '\n1', '1\n'].map(parseGoInt), Array(11).fill(undefined),
    'nothing but an optional sign and ASCII digits');
});

t.test('isWellFormedRoleArn: the whole text is one role ARN', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['arn:aws:iam::111122223333:role/app', true],
    ['arn:aws-us-gov:iam::111122223333:role/a/b', true],
    ['arn:aws-iso-b:iam::111122223333:role/x', true],
    ['arn:aws:iam::111122223333:role/A_b-c/d.e@f+g=h,i', true],
    ['arn:aws:iam::111122223333:role/x y', false],
    [' arn:aws:iam::111122223333:role/x', false],
    ['arn:aws:iam::111122223333:role/x ', false],
    ['xarn:aws:iam::111122223333:role/x', false],
    ['arn:aws:iam::111122223333:role/', false],
    ['arn:aws:iam::111122223333:role/x:y', false],
    ['arn:aws:iam::1111222233334:role/x', false],
    ['arn:aws:iam::11112222333a:role/x', false],
    ['arn:aws:iam::111122223333:user/x', false],
    ['arn:aws:sts::111122223333:role/x', false],
    ['arn:AWS:iam::111122223333:role/x', false],
    ['arn:aws_cn:iam::111122223333:role/x', false],
    ['arn:aws:iam:us-east-1:111122223333:role/x', false],
  ];
  t.same(cases.map(([arn]) => [arn, isWellFormedRoleArn(arn)]), cases);
});

t.test('skip-containers: a name is trimmed of exactly what String.prototype.trim removes', async (t) => {
  // Every UTF-16 unit but the four that mean something to CSV, around a name.
  const trimmed: number[] = [];
  for (let c = 0; c <= 0xffff; c++) {
    if (c === 0x0a || c === 0x0d || c === 0x22 || c === 0x2c) continue;
    const ch = String.fromCharCode(c);
    const r = parseSkipContainers(`${ch}app${ch}`, new Set(['app']));
    if (r.skipped.has('app')) trimmed.push(c);
  }
  const expected = [0x09, 0x0b, 0x0c, 0x20, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
    0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff];
  t.same(trimmed, expected);
  t.same(expected.filter((c) => String.fromCharCode(c).trim() !== ''), [], 'all of them are what trim removes');
  t.same(skip('app\r,x', ['app', 'x']), { skipped: ['app', 'x'], unmatched: 0, unmatchedExamples: [] }, 'a lone CR ends a name as whitespace');
  t.same(skip('\u0008app\u000e', ['app']), { skipped: [], unmatched: 1, unmatchedExamples: ['\u0008app\u000e'] }, 'U+0008 and U+000E are kept');
});

t.test('skip-containers: empty and blank names are dropped, not counted', async (t) => {
  const none = { skipped: [], unmatched: 0, unmatchedExamples: [] };
  t.same(skip(',,', ['a']), none);
  t.same(skip(' , ,\t', ['a']), none);
  t.same(skip('a, \nz', ['a']), { ...none, skipped: ['a'] }, 'a blank name right before the line break');
  t.same(skip('a, \r\nz', ['a']), { ...none, skipped: ['a'] });
  t.same(skip('a,\r\nz', ['a']), { ...none, skipped: ['a'] });
  t.same(skip(' ,a', ['a']), { ...none, skipped: ['a'] });
  t.same(skip('"",a', ['a']), { ...none, skipped: ['a'] }, 'an empty quoted name');
  t.same(skip('" \r\n ",a', ['a']), { ...none, skipped: ['a'] }, 'a blank quoted name');
  t.same(skip('a,', ['a']), { ...none, skipped: ['a'] }, 'a trailing comma');
  t.same(skip('a,\n', ['a']), { ...none, skipped: ['a'] });
  t.same(skip('"a",', ['a']), { ...none, skipped: ['a'] }, 'a trailing comma after a quoted name');
  t.same(skip('\n', ['a']), none);
  t.same(skip('\r\n\r\n', ['a']), none);
  t.same(skip('\r', ['a']), none);
  t.same(skip('\n\r', ['a']), none);
  t.same(skip('\n\r\r', ['a']), none);
});

t.test('skip-containers: unmatched names are all counted, the first three distinct ones shown', async (t) => {
  t.same(skip('x,x,y,app,zz,w,v', ['app']), { skipped: ['app'], unmatched: 6, unmatchedExamples: ['x', 'y', 'zz'] });
  t.same(skip('x1,x2,x3,app,x4', ['app']), { skipped: ['app'], unmatched: 4, unmatchedExamples: ['x1', 'x2', 'x3'] },
    'a name is still matched once the examples are full');
  t.same(skip('long-1,long-2,long-3,ab,long-4', ['ab', 'cd']), { skipped: ['ab'], unmatched: 4, unmatchedExamples: ['long-1', 'long-2', 'long-3'] });
  t.same(skip('p,q,r,s,"ab"', ['ab']), { skipped: ['ab'], unmatched: 4, unmatchedExamples: ['p', 'q', 'r'] });
  t.same(skip('ab,ab', ['ab']), { skipped: ['ab'], unmatched: 0, unmatchedExamples: [] });
  t.same(skip('x', []), { skipped: [], unmatched: 1, unmatchedExamples: ['x'] }, 'a pod without containers');
});

t.test('skip-containers: line breaks, CRLF and a final CR as Go encoding/csv reads them', async (t) => {
  t.same(skip('"a"\r', ['a']), { skipped: ['a'], unmatched: 0, unmatchedExamples: [] }, 'a final CR after a quoted name');
  t.same(skip('"a"\r\nb', ['a', 'b']), { skipped: ['a'], unmatched: 0, unmatchedExamples: [] }, 'CRLF ends the record after a quoted name');
  t.same(skip('"a"\nb', ['a', 'b']), { skipped: ['a'], unmatched: 0, unmatchedExamples: [] });
  t.same(skip('\r\n\nb,c\r\nd', ['b', 'c', 'd']), { skipped: ['b', 'c'], unmatched: 0, unmatchedExamples: [] }, 'blank CRLF and LF lines first');
  t.same(skip('"a\r\nb\r\nc"', ['a\nb\nc']), { skipped: ['a\nb\nc'], unmatched: 0, unmatchedExamples: [] }, 'every CRLF in a quoted name');
  t.same(skip('"a\rb"', ['a\rb']), { skipped: ['a\rb'], unmatched: 0, unmatchedExamples: [] }, 'a lone CR stays in a quoted name');
  t.same(skip('" a "', ['a']), { skipped: ['a'], unmatched: 0, unmatchedExamples: [] }, 'a quoted name is trimmed');
  t.same(skip('"a""b",c', ['a"b', 'c']), { skipped: ['a"b', 'c'], unmatched: 0, unmatchedExamples: [] });
  t.same(skip('"a"""', ['a"']), { skipped: ['a"'], unmatched: 0, unmatchedExamples: [] }, 'a doubled quote right before the closing one');
  t.same(skip('",a"', [',a', 'a']), { skipped: [',a'], unmatched: 0, unmatchedExamples: [] }, 'a quoted name that starts with a comma');
  t.same(skip(',a', [',a', 'a']), { skipped: ['a'], unmatched: 0, unmatchedExamples: [] }, 'a comma first: an empty name, then a');
  t.same(skip('a\r\r', ['a']), { skipped: ['a'], unmatched: 0, unmatchedExamples: [] });
  t.same(skip('a,"b"\r\n"c', ['a', 'b']), { skipped: ['a', 'b'], unmatched: 0, unmatchedExamples: [] }, 'the record ends before the unclosed quote');
});

t.test('skip-containers: a CSV error skips nothing and says where', async (t) => {
  const failed = (error: string): object => ({ skipped: [], unmatched: 0, unmatchedExamples: [], error });
  t.same(skip('x,a"b', ['a', 'x']), failed('a quote inside the unquoted name at offset 3'));
  t.same(skip('x,y,a"', ['a', 'x']), failed('a quote inside the unquoted name at offset 5'));
  t.same(skip('"a', ['a']), failed('the quoted name at offset 0 is not closed'));
  t.same(skip('x,"a', ['a', 'x']), failed('the quoted name at offset 2 is not closed'));
  t.same(skip('"a\r', ['a']), failed('the quoted name at offset 0 is not closed'));
  t.same(skip('"a""', ['a']), failed('the quoted name at offset 0 is not closed'));
  t.same(skip('x,"a"b', ['a', 'x']), failed('unexpected text after the quoted name at offset 2'));
  t.same(skip('"a" ,b', ['a', 'b']), failed('unexpected text after the quoted name at offset 0'));
  t.same(skip('"a"\rb', ['a', 'b']), failed('unexpected text after the quoted name at offset 0'));
  t.same(skip('x1,x2,x3,x4,"a"b', ['a']), failed('unexpected text after the quoted name at offset 12'), 'counts are dropped too');
});

// -------------------------------------------------------- service-account.ts

t.test('ServiceAccount: no annotations of ours is the shared frozen NO_SETTINGS', async (t) => {
  t.strictSame(NO_SETTINGS, { warnings: [] });
  t.ok(Object.isFrozen(NO_SETTINGS) && Object.isFrozen(NO_SETTINGS.warnings), 'frozen, warnings too');
  for (const none of [undefined, null, 'eks.amazonaws.com/role-arn', 5, true]) {
    t.equal(parseServiceAccountAnnotations(none as never, P), NO_SETTINGS, `${JSON.stringify(none)}`);
  }
  t.equal(sa({ 'eks.amazonaws.com/other': 'x', 'role-arn': ARN }), NO_SETTINGS);
  const inherited = Object.create({ [`${P}/role-arn`]: ARN }) as Record<string, string>;
  t.equal(sa(inherited), NO_SETTINGS, 'an inherited annotation does not count');
});

t.test('ServiceAccount: each annotation alone makes settings of its own', async (t) => {
  const alone: Array<[string, string, object]> = [
    ['role-arn', ARN, { warnings: [], roleArn: ARN }],
    ['audience', 'aud', { warnings: [], audience: 'aud' }],
    ['sts-regional-endpoints', 'true', { warnings: [], regionalSts: true }],
    ['sts-regional-endpoints', 'false', { warnings: [], regionalSts: false }],
    ['token-expiration', '3600', { warnings: [], tokenExpiration: 3600 }],
    ['role-session-name', 'pod-name', { warnings: [], roleSessionName: 'pod-name' }],
  ];
  for (const [suffix, value, want] of alone) {
    const s = sa({ [`${P}/${suffix}`]: value });
    t.not(s, NO_SETTINGS, `${suffix}=${value} is not NO_SETTINGS`);
    t.strictSame(s, want, `${suffix}=${value}`);
    t.ok(Object.isFrozen(s.warnings), `${suffix}: warnings frozen`);
  }
  t.strictSame(sa({ [`${P}/audience`]: '' }), { warnings: [], audience: '' }, 'an empty audience is kept');
});

t.test('ServiceAccount: ignored annotations leave no key behind, only a warning', async (t) => {
  t.strictSame(sa({ [`${P}/role-arn`]: ' \t ' }), { warnings: [] }, 'a blank role ARN');
  t.strictSame(sa({ [`${P}/sts-regional-endpoints`]: 'yes' }), {
    warnings: [`annotation ${P}/sts-regional-endpoints="yes" is not true or false; it is ignored`],
  });
  t.strictSame(sa({ [`${P}/token-expiration`]: '1h' }), {
    warnings: [`annotation ${P}/token-expiration="1h" is not a whole number of seconds; it is ignored`],
  });
  t.strictSame(sa({ [`${P}/role-session-name`]: 'Pod-Name' }), {
    warnings: [`annotation ${P}/role-session-name="Pod-Name" is not "pod-name"; it is ignored`],
  });
  t.strictSame(sa({ [`${P}/audience`]: 7, [`${P}/role-session-name`]: null }), {
    warnings: [`annotation ${P}/audience is not a string; it is ignored`, `annotation ${P}/role-session-name is not a string; it is ignored`],
  });
  const s = sa({ [`${P}/token-expiration`]: 7 });
  t.strictSame(s, { warnings: [`annotation ${P}/token-expiration is not a string; it is ignored`] });
  t.ok(Object.isFrozen(s.warnings), 'warnings frozen');
});

t.test('ServiceAccount: the role ARN is trimmed, checked and limited in length', async (t) => {
  t.strictSame(sa({ [`${P}/role-arn`]: `  ${ARN}\n` }), { warnings: [], roleArn: ARN });
  t.strictSame(sa({ [`${P}/role-arn`]: 'reader' }), {
    warnings: [`annotation ${P}/role-arn="reader" is not a role ARN of the form arn:<partition>:iam::<12-digit account>:role/<name>`],
    roleArn: 'reader',
  });
  const prefix = 'arn:aws:iam::111122223333:role/';
  const longest = prefix + 'r'.repeat(MAX_ROLE_ARN_LENGTH - prefix.length);
  t.strictSame(sa({ [`${P}/role-arn`]: ` ${longest} ` }), { warnings: [], roleArn: longest }, `${MAX_ROLE_ARN_LENGTH} characters are accepted`);
  const tooLong = `${longest}r`;
  t.strictSame(sa({ [`${P}/role-arn`]: tooLong }), {
    warnings: [`annotation ${P}/role-arn="${tooLong.slice(0, 64)}…" is ${MAX_ROLE_ARN_LENGTH + 1} characters long; STS accepts role ARNs of at most ${MAX_ROLE_ARN_LENGTH}, so it is ignored`],
  });
  t.strictSame(parseServiceAccountAnnotations({ [`${P}/role-arn`]: ' reader ' }, P, { partition: 'aws-cn', accountId: '111122223333' }), {
    warnings: [],
    roleArn: 'arn:aws-cn:iam::111122223333:role/reader',
  }, 'a bare name, trimmed, is composed');
});

t.test('ServiceAccount: every annotation together', async (t) => {
  t.strictSame(sa({
    [`${P}/role-arn`]: ARN,
    [`${P}/audience`]: 'sts.example.com',
    [`${P}/sts-regional-endpoints`]: '0',
    [`${P}/token-expiration`]: '60',
    [`${P}/role-session-name`]: 'pod-name',
  }), {
    warnings: [`annotation ${P}/token-expiration="60" is below the minimum of ${MIN_TOKEN_EXPIRATION} seconds; ${MIN_TOKEN_EXPIRATION} is used`],
    roleArn: ARN,
    audience: 'sts.example.com',
    regionalSts: false,
    tokenExpiration: MIN_TOKEN_EXPIRATION,
    roleSessionName: 'pod-name',
  });
});

t.test('token expiration: whole seconds, raised to the minimum with a warning', async (t) => {
  const parse = (text: string): [number | undefined, string[]] => {
    const warnings: string[] = [];
    return [parseTokenExpirationAnnotation('k', text, warnings), warnings];
  };
  t.same(parse('600'), [600, []]);
  t.same(parse('601'), [601, []]);
  t.same(parse('599'), [600, ['annotation k="599" is below the minimum of 600 seconds; 600 is used']]);
  t.same(parse('-5'), [600, ['annotation k="-5" is below the minimum of 600 seconds; 600 is used']]);
  t.same(parse('86400'), [86400, []]);
  t.same(parse(' 600'), [undefined, ['annotation k=" 600" is not a whole number of seconds; it is ignored']]);
  t.same([599, 600, 601, -1, 0].map(clampTokenExpiration), [600, 600, 601, 600, 600]);
});

t.test('role session name: only pod-name', async (t) => {
  const warnings: string[] = [];
  t.equal(parseRoleSessionName('k', 'pod-name', (w) => warnings.push(w)), 'pod-name');
  t.equal(parseRoleSessionName('k', 'pod-name ', (w) => warnings.push(w)), undefined);
  t.equal(parseRoleSessionName('k', '', (w) => warnings.push(w)), undefined);
  t.same(warnings, ['annotation k="pod-name " is not "pod-name"; it is ignored', 'annotation k="" is not "pod-name"; it is ignored']);
});

// ------------------------------------------------------------- config-map.ts

t.test('ConfigMap: the document must be an object, and each entry too', async (t) => {
  const notObject = 'data.config must be a JSON object keyed "namespace/name"';
  for (const doc of ['null', '[]', '[{"a/b":{}}]', '"a/b"', '5', 'true']) t.equal(errorOf(() => parseConfigMapConfig(doc)), notObject, doc);
  for (const raw of ['null', '[]', '"arn"', '5', 'false']) {
    t.equal(errorOf(() => parseConfigMapConfig(`{"a/b":${raw}}`)), 'data.config["a/b"] must be an object', raw);
  }
  t.strictSame([...parseConfigMapConfig('{}')], [], 'an empty object: no entries');
});

t.test('ConfigMap: keys are "namespace/name", messages name the key as written', async (t) => {
  for (const key of ['', 'app', '/', 'a/', '/b', 'a/b/c', '*']) {
    t.equal(errorOf(() => parseConfigMapConfig(`{${JSON.stringify(key)}:{}}`)), `data.config key "${key}" must be "namespace/name" or "*/name"`, key);
  }
  t.equal(errorOf(() => parseConfigMapConfig('{"a/b":{},"":{}}')), 'data.config key "" must be "namespace/name" or "*/name"');
  t.strictSame([...parseConfigMapConfig('{"*/b":{},"a/b":{"RoleARN":"x"}}')], [['*/b', { roleArn: '' }], ['a/b', { roleArn: 'x' }]]);
});

t.test('ConfigMap: each field must have its JSON type', async (t) => {
  const refused: Array<[string, string]> = [
    ['{"RoleARN":5}', 'RoleARN must be a string'],
    ['{"RoleARN":true}', 'RoleARN must be a string'],
    ['{"RoleARN":{}}', 'RoleARN must be a string'],
    ['{"Audience":[]}', 'Audience must be a string'],
    ['{"UseRegionalSTS":1}', 'UseRegionalSTS must be true or false'],
    ['{"UseRegionalSTS":"false"}', 'UseRegionalSTS must be true or false'],
    ['{"TokenExpiration":"600"}', 'TokenExpiration must be a whole number of seconds'],
    ['{"TokenExpiration":true}', 'TokenExpiration must be a whole number of seconds'],
    ['{"TokenExpiration":600.5}', 'TokenExpiration must be a whole number of seconds'],
    ['{"TokenExpiration":9007199254740992}', 'TokenExpiration must be a whole number of seconds'],
  ];
  for (const [raw, why] of refused) t.equal(errorOf(() => parseConfigMapConfig(`{"a/b":${raw}}`)), `data.config["a/b"].${why}`, raw);
});

t.test('ConfigMap: defaults leave no key behind', async (t) => {
  t.strictSame(entry('{"a/b":{}}'), { roleArn: '' });
  t.strictSame(entry('{"a/b":{"RoleARN":null,"Audience":null,"UseRegionalSTS":null,"TokenExpiration":null}}'), { roleArn: '' }, 'null is unset');
  t.strictSame(entry('{"a/b":{"Audience":"","TokenExpiration":0}}'), { roleArn: '' }, 'empty audience and 0 mean the default');
  t.strictSame(entry(`{"a/b":{"RoleARN":" ${ARN}\\t","Audience":"aud","UseRegionalSTS":true,"TokenExpiration":7200}}`),
    { roleArn: ARN, audience: 'aud', regionalSts: true, tokenExpiration: 7200 });
  t.strictSame(entry('{"a/b":{"UseRegionalSTS":false,"TokenExpiration":-3}}'), { roleArn: '', regionalSts: false, tokenExpiration: MIN_TOKEN_EXPIRATION });
  t.strictSame(entry('{"a/b":{"Other":5,"RoleArn2":"x"}}'), { roleArn: '' }, 'unknown keys are ignored');
});

t.test('ConfigMap: the role ARN is limited to what STS accepts, after trimming', async (t) => {
  const prefix = 'arn:aws:iam::111122223333:role/';
  const longest = prefix + 'r'.repeat(MAX_ROLE_ARN_LENGTH - prefix.length);
  t.strictSame(entry(`{"a/b":{"RoleARN":"  ${longest}  "}}`), { roleArn: longest });
  t.equal(errorOf(() => parseConfigMapConfig(`{"a/b":{"RoleARN":"${longest}r"}}`)),
    `data.config["a/b"].RoleARN is ${MAX_ROLE_ARN_LENGTH + 1} characters long; STS accepts role ARNs of at most ${MAX_ROLE_ARN_LENGTH}`);
});

t.test('ConfigMap: field names match ignoring case, as Go decodes them', async (t) => {
  t.strictSame(entry('{"a/b":{"rolearn":"l","AUDIENCE":"u","useregionalsts":true,"TOKENEXPIRATION":900}}'),
    { roleArn: 'l', audience: 'u', regionalSts: true, tokenExpiration: 900 });
  t.strictSame(entry('{"a/b":{"U\u017feRegional\u017fT\u017f":true,"To\u212aenExpiration":700,"rolearn\u017f":"x"}}'),
    { roleArn: '', regionalSts: true, tokenExpiration: 700 }, 'long s and Kelvin sign fold onto s and k');
});

t.test('ConfigMap: duplicate keys are all seen, in document order, the last one wins', async (t) => {
  t.strictSame(entry('{"a/b":{"Audience":"p","audience":"q","Audience":"s"}}'), { roleArn: '', audience: 's' });
  t.strictSame(entry('{"a/b":{"RoleARN":"x\\nyz","Audience":"p","audience":"q","Audience":"s"}}'), { roleArn: 'x\nyz', audience: 's' },
    'after a value with an escape');
  t.strictSame(entry('{"a/b":{"RoleARN":"x\\"y\\\\","Audience":"p","audience":"q","Audience":"s"}}'), { roleArn: 'x"y\\', audience: 's' },
    'after a value with an escaped quote and backslash');
  t.strictSame(entry('{"a/b":{"RoleARN":"arn:aws:iam::111122223333:role/x","Audience":"p","audience":"q","Audience":"s"}}'),
    { roleArn: 'arn:aws:iam::111122223333:role/x', audience: 's' }, 'after a value with colons');
  t.strictSame(entry('{"a/b" : {"Audience" :"p", "audience"\n:\t"q","Audience"  :  "s"}}'), { roleArn: '', audience: 's' },
    'whitespace around the colons');
  t.strictSame(entry('{"a/b":{"RoleARN":"v","::":1,":":2,"":3}}'), { roleArn: 'v' }, 'keys made of colons, and the empty key');
  t.strictSame(entry('{"a/b":{"RoleARN":"v\\u0000","Audience":"a\\u0000b"}}'), { roleArn: 'v\u0000', audience: 'a\u0000b' }, 'NUL in values');
  t.strictSame([...parseConfigMapConfig('{"a/b":{"RoleARN":"1"},"c/d":{},"a/b":{"Audience":"2"}}')],
    [['a/b', { roleArn: '', audience: '2' }], ['c/d', { roleArn: '' }]], 'a duplicate namespace/name: the last entry, at the first place');
});

t.test('ConfigMap: invalid JSON is reported at its place in the text as written', async (t) => {
  for (const text of ['{"a/b":{},}', '{"a/b":{"RoleARN":"x"} "c/d":{}}', '{"a/b":{"RoleARN":"x",}}', '{"a/b":{}}x']) {
    let want = '';
    try {
      JSON.parse(text);
    } catch (err) {
      want = `data.config is not valid JSON: ${(err as Error).message}`;
    }
    t.equal(errorOf(() => parseConfigMapConfig(text)), want, text);
  }
  const thrown = thrownBy(() => parseConfigMapConfig('['));
  t.equal(thrown?.cause?.constructor, SyntaxError, 'the JSON error is the cause');
});

t.test('ConfigMap: blank text is no entries', async (t) => {
  for (const blank of [undefined, '', ' ', '\n\t ']) t.strictSame([...parseConfigMapConfig(blank)], [], JSON.stringify(blank));
});

t.test('ConfigMap lookup: exact namespace first, then any namespace, else nothing', async (t) => {
  const map = parseConfigMapConfig('{"shop/app":{"RoleARN":"exact"},"*/app":{"RoleARN":"any"},"shop/web":{"RoleARN":"web"}}');
  t.strictSame(lookupConfigMap(map, 'shop', 'app'), { roleArn: 'exact' });
  t.strictSame(lookupConfigMap(map, 'other', 'app'), { roleArn: 'any' });
  t.strictSame(lookupConfigMap(map, 'shop', 'web'), { roleArn: 'web' });
  t.equal(lookupConfigMap(map, 'other', 'web'), undefined);
  t.equal(lookupConfigMap(new Map([['*/app', { roleArn: 'only' }]]), 'shop', 'app')?.roleArn, 'only');
  t.equal(lookupConfigMap(undefined, 'shop', 'app'), undefined);
  t.equal(lookupConfigMap(new Map(), 'shop', 'app'), undefined);
});
