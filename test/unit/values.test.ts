import t from 'tap';
import { isWellFormedRoleArn, parseGoBool, parseGoInt, parseSkipContainers } from '../../src/settings/values.js';

t.test('parseGoBool accepts exactly Go spellings', async (t) => {
  for (const s of ['1', 't', 'T', 'TRUE', 'true', 'True']) t.equal(parseGoBool(s), true, s);
  for (const s of ['0', 'f', 'F', 'FALSE', 'false', 'False']) t.equal(parseGoBool(s), false, s);
  for (const s of ['yes', 'tRUE', '', ' true', 'on']) t.equal(parseGoBool(s), undefined, s);
});

t.test('parseGoInt follows strconv.ParseInt base 10', async (t) => {
  t.equal(parseGoInt('3600'), 3600);
  t.equal(parseGoInt('+5'), 5);
  t.equal(parseGoInt('-5'), -5);
  t.equal(parseGoInt('007'), 7);
  for (const s of ['', '1.5', '1e3', ' 1', '0x10', '9223372036854775808', 'abc']) t.equal(parseGoInt(s), undefined, s);
});

/** The names skipped among `containers`, or the parse error. */
function skipped(text: string, containers = ['a', 'b', 'c', 'a,b', 'a"b', 'b\nc', 'x y']): string[] | string {
  const r = parseSkipContainers(text, new Set(containers));
  return r.error !== undefined ? `error: ${r.error}` : [...r.skipped].sort();
}

t.test('skip-containers is the first record of Go encoding/csv', async (t) => {
  t.same(skipped('a, b,,"c"'), ['a', 'b', 'c'], 'names are trimmed, empty names dropped');
  t.same(skipped(''), []);
  t.same(skipped('a\nb'), ['a'], 'only the first record counts');
  t.same(skipped('a\r\nb'), ['a']);
  t.same(skipped('\n\nb,c'), ['b', 'c'], 'blank lines before the record are skipped');
  t.same(skipped('"a,b",c'), ['a,b', 'c'], 'quoted names may contain commas');
  t.same(skipped('"a""b"'), ['a"b'], '"" is a quote inside a quoted name');
  t.same(skipped('"b\r\nc",a'), ['a', 'b\nc'], 'a quoted name spans lines, CRLF read as LF');
  t.same(skipped(' x y ,c\r'), ['c', 'x y'], 'a trailing CR is dropped');
  t.match(skipped('"a,b'), /^error: .*not closed/, 'an unbalanced quote skips nothing');
  t.match(skipped('a,"b'), /^error:/, 'an error after a good name still skips nothing');
  t.match(skipped('a,b"c'), /^error: a quote inside/, 'a bare quote in an unquoted name is an error');
  t.match(skipped('"a"x,b'), /^error: unexpected text/, 'text after a closing quote is an error');
  t.same(skipped('c,"a"\n"unclosed'), ['a', 'c'], 'errors past the first record do not matter');
});

t.test('skip-containers counts unmatched names and keeps only a few', async (t) => {
  const names = Array.from({ length: 300_000 }, (_, i) => `container-${i}`).join(',');
  const r = parseSkipContainers(`${names},app`, new Set(['app', 'container-7']));
  t.same([...r.skipped].sort(), ['app', 'container-7']);
  t.equal(r.unmatched, 299_999);
  t.same(r.unmatchedExamples, ['container-0', 'container-1', 'container-2']);
});

t.test('role ARN shape', async (t) => {
  t.ok(isWellFormedRoleArn('arn:aws:iam::111122223333:role/a/b/c-d_e.f@g+h=i,j'));
  t.ok(isWellFormedRoleArn('arn:aws-cn:iam::111122223333:role/x'));
  t.notOk(isWellFormedRoleArn('arn:aws:iam::11112222333:role/x'));
  t.notOk(isWellFormedRoleArn('arn:aws:iam::111122223333:user/x'));
  t.notOk(isWellFormedRoleArn('s3-reader'));
});
