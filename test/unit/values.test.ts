import t from 'tap';
import { isWellFormedRoleArn, parseGoBool, parseGoInt, parseNameList } from '../../src/mutation/values.js';

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

t.test('parseNameList', async (t) => {
  t.same(parseNameList('a, b,,"c"'), ['a', 'b', 'c']);
  t.same(parseNameList(''), []);
});

t.test('role ARN shape', async (t) => {
  t.ok(isWellFormedRoleArn('arn:aws:iam::111122223333:role/a/b/c-d_e.f@g+h=i,j'));
  t.ok(isWellFormedRoleArn('arn:aws-cn:iam::111122223333:role/x'));
  t.notOk(isWellFormedRoleArn('arn:aws:iam::11112222333:role/x'));
  t.notOk(isWellFormedRoleArn('arn:aws:iam::111122223333:user/x'));
  t.notOk(isWellFormedRoleArn('s3-reader'));
});
