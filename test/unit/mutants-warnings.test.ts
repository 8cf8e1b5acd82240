// How warnings are cut, counted and bounded, and how the identities file
// reports what is wrong with it: the edges mutation testing showed no other
// test pinned down. Expectations are exact (whole strings, whole lists).
import t from 'tap';
import { mutateEphemeral } from '../../src/mutation/index.js';
import { parseContainerCredentialsConfig } from '../../src/settings/container-credentials.js';
import { boundWarnings, describeValue, MAX_LEFT_OUT, MAX_WARNING_LENGTH, MAX_WARNINGS, MAX_WARNINGS_LENGTH, quote, warningList } from '../../src/settings/warnings.js';
import { options, pod } from '../helpers/pods.js';

const a = (n: number): string => 'a'.repeat(n);

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('no error was thrown');
}

t.test('quote shows a value of exactly the limit whole, and cuts one unit longer', async (t) => {
  t.equal(quote(a(64)), `"${a(64)}"`);
  t.equal(quote(a(65)), `"${a(64)}…"`);
  t.equal(quote('abcdef', 3), '"abc…"');
  t.equal(quote('abc', 3), '"abc"');
});

t.test('quote never splits a surrogate pair at the cut, whatever the pair', async (t) => {
  // The limit falls between the two halves: the whole pair goes.
  t.equal(quote(`${a(63)}😀b`), `"${a(63)}…"`, 'U+1F600');
  t.equal(quote(`${a(63)}\u{10000}b`), `"${a(63)}…"`, 'U+10000, the lowest high surrogate');
  t.equal(quote(`${a(63)}\u{10FFFF}b`), `"${a(63)}…"`, 'U+10FFFF, the highest high surrogate');
  // The pair ends exactly at the limit: it is kept whole.
  t.equal(quote(`${a(62)}😀b`), `"${a(62)}😀…"`);
  // A character just past the surrogates is one unit like any other.
  t.equal(quote(`${a(63)}\ue000b`), `"${a(63)}\ue000…"`);
});

t.test('describeValue names what a value is', async (t) => {
  t.same(
    [undefined, null, 'x', [1], {}, 7, true].map((v) => describeValue(v)),
    ['missing', 'null', 'the string "x"', 'a list', 'an object', 'a number', 'a boolean'],
  );
});

t.test('a warning list keeps a warning of exactly the API server\'s length whole and cuts a longer one', async (t) => {
  t.equal(MAX_WARNING_LENGTH, 256);
  const w = warningList([a(256), `b${a(256)}`]);
  t.same(w.list(), [a(256), `b${a(254)}…`]);
});

t.test('a warning list starts empty and counts only new warnings once it is full', async (t) => {
  t.same(warningList().list(), []);
  t.equal(MAX_WARNINGS, 16);
  const distinct = Array.from({ length: 16 }, (_, i) => `warning ${i}`);
  const w = warningList(distinct);
  w.add('warning 0');
  w.add('warning 15');
  t.same(w.list(), distinct, 'repeats of kept warnings are not counted as left out');
  w.add('warning 16');
  w.add('warning 17');
  t.same(w.list(), [...distinct, '2 more warning(s) not shown']);
  w.add('warning 16');
  w.add(`warning 17`);
  t.same(w.list(), [...distinct, '2 more warning(s) not shown'], 'repeats of left-out warnings are counted once');
  for (let i = 18; i < 16 + MAX_LEFT_OUT; i++) w.add(`warning ${i}`);
  w.add('warning 17');
  t.same(w.list().at(-1), `${MAX_LEFT_OUT} more warning(s) not shown`, 'counted one by one up to MAX_LEFT_OUT');
  w.add(`warning ${16 + MAX_LEFT_OUT}`);
  t.same(w.list(), [...distinct, `over ${MAX_LEFT_OUT} more warning(s) not shown`], 'past it, the count says "over"');
});

// Warnings that, prefixed, are exactly MAX_WARNING_LENGTH long: sixteen fill MAX_WARNINGS_LENGTH.
const PREFIX = 'p: ';
const full = (n: number): string[] => Array.from({ length: n }, (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(MAX_WARNING_LENGTH - PREFIX.length - 2)}`);

t.test('boundWarnings sends warnings that fill the total limit exactly', async (t) => {
  t.equal(MAX_WARNINGS_LENGTH, 16 * MAX_WARNING_LENGTH);
  const sent = boundWarnings(full(16), PREFIX);
  t.same(sent, full(16).map((w) => PREFIX + w));
  t.equal(sent.join('').length, MAX_WARNINGS_LENGTH);
});

t.test('boundWarnings keeps room for the line that counts the warnings left out', async (t) => {
  // The 16th would still fit, but then the line counting the 17th would not.
  t.same(boundWarnings(full(17), PREFIX), [...full(15).map((w) => PREFIX + w), 'p: 2 more warning(s) not shown']);
  t.same(boundWarnings(full(20), PREFIX), [...full(15).map((w) => PREFIX + w), 'p: 5 more warning(s) not shown']);
  // Short warnings leave room for more.
  const short = Array.from({ length: 40 }, (_, i) => `short ${i}`);
  t.same(boundWarnings(short, PREFIX), short.map((w) => PREFIX + w));
});

t.test('boundWarnings cuts each prefixed warning to the API server\'s length, then drops repeats', async (t) => {
  t.same(boundWarnings([a(253), `${a(254)}b`, `${a(254)}c`, a(253)], PREFIX), [`${PREFIX}${a(253)}`, `${PREFIX}${a(252)}…`]);
});

t.test('the identities file: invalid JSON is refused with the parser\'s message and error as the cause', async (t) => {
  const parserError = errorOf(() => JSON.parse('{"identities":'));
  const err = errorOf(() => parseContainerCredentialsConfig('{"identities":'));
  t.equal(err.message, `not valid JSON: ${parserError.message}`);
  t.ok(err.cause instanceof SyntaxError, 'the cause is the parser\'s SyntaxError');
  t.equal((err.cause as Error).message, parserError.message);
});

t.test('the identities file: an entry that is a string, number or boolean is refused', async (t) => {
  for (const item of ['"shop/api"', '7', 'true']) {
    t.equal(errorOf(() => parseContainerCredentialsConfig(`{"identities":[${item}]}`)).message, 'identities[0] must have non-empty string "namespace" and "serviceAccount"', item);
  }
});

t.test('ephemeral update: an unreadable old object gets no patch, a warning and no mode', async (t) => {
  const updated = pod([{ name: 'app' }], { spec: { ephemeralContainers: [{ name: 'debugger' }] } });
  t.same(mutateEphemeral(updated, { spec: { ephemeralContainers: 'x' } }, options({ mutateEphemeralContainers: true })), {
    patch: [],
    warnings: ['the pod could not be read (old object: spec.ephemeralContainers is the string "x", expected a list); it is admitted unchanged'],
    mode: undefined,
  });
});
