// The list splitter hands out exactly the items JSON.parse sees, however the
// text is cut into chunks, and refuses what is not a list.
import fc from 'fast-check';
import t from 'tap';
import { listSplitter } from '../../src/kube/request.js';

function split(text: string, cuts: number[]): { items: unknown[]; envelope: unknown } {
  const items: unknown[] = [];
  const s = listSplitter((item) => items.push(item));
  let from = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)) {
    s.write(text.slice(from, cut));
    from = cut;
  }
  s.write(text.slice(from));
  return { items, envelope: s.end() };
}

const item = fc.record({
  metadata: fc.record({
    name: fc.string(),
    namespace: fc.string({ unit: 'grapheme' }),
    annotations: fc.dictionary(fc.string(), fc.string({ unit: 'binary' })),
  }),
  weird: fc.jsonValue(),
});

t.test('items and envelope equal JSON.parse for any chunking', async (t) => {
  fc.assert(
    fc.property(
      fc.array(item, { maxLength: 8 }),
      fc.record({ resourceVersion: fc.string(), continue: fc.option(fc.string(), { nil: undefined }) }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.boolean(),
      (items, metadata, cuts, itemsFirst) => {
        const text = itemsFirst
          ? JSON.stringify({ items, kind: 'items', apiVersion: 'v1', metadata }, null, cuts.length % 2 ? 1 : undefined)
          : JSON.stringify({ kind: 'ServiceAccountList', apiVersion: 'v1', metadata, items });
        const got = split(text, cuts);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        t.same(got.items, items);
        t.same(got.envelope, { ...parsed, items: [] });
      },
    ),
    { numRuns: 300 },
  );
});

t.test('what is not a list fails, never hangs or hands out half an item', async (t) => {
  const items: unknown[] = [];
  const run = (text: string): unknown => {
    const s = listSplitter((i) => items.push(i));
    s.write(text);
    return s.end();
  };
  t.throws(() => run('{"items":[{"a":1},{"b":'), /ended early/);
  t.throws(() => run('{"items":[{"a":1}]}}'), /not a list/);
  t.throws(() => run('{"items":[{"a":tru}]}'), SyntaxError);
  t.throws(() => run('{"kind":"x"'), /ended early/);
  t.same(run('{"kind":"List","items":null}'), { kind: 'List', items: null });
  t.same(items, [{ a: 1 }, { a: 1 }]);
});
