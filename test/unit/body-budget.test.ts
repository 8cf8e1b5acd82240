// The body budget: large bodies are granted in arrival order once their sizes
// fit, each into a range of one shared block of memory that no other grant
// overlaps; released, shrunk or cancelled bytes go to the next in line.
import t from 'tap';
import { type BodyGrant, bodyBudget } from '../../src/server/body-budget.js';

const MiB = 1024 * 1024;

/** Reserves `bytes`; the grant, once it comes, is in `.grant`. */
function ask(budget: ReturnType<typeof bodyBudget>, bytes: number): { grant?: BodyGrant; cancel: () => void } {
  const r: { grant?: BodyGrant; cancel: () => void } = { cancel: () => {} };
  r.cancel = budget.reserve(bytes, (g) => (r.grant = g));
  return r;
}

t.test('grants wait until their bytes fit, in arrival order, in ranges that do not overlap', async (t) => {
  const budget = bodyBudget(16 * MiB);
  const a = ask(budget, 6 * MiB);
  const b = ask(budget, 6 * MiB);
  const c = ask(budget, 6 * MiB);
  const small = ask(budget, 100 * 1024);
  t.ok(a.grant && b.grant, 'two fit at once');
  t.notOk(c.grant, 'the third waits');
  t.notOk(small.grant, 'a smaller one behind it waits its turn too');
  t.equal(budget.inUse(), 12 * MiB);
  a.grant!.memory!.fill(1);
  b.grant!.memory!.fill(2);
  t.equal(a.grant!.memory!.length, 6 * MiB, 'each grant\'s memory is as long as its body');
  t.ok(a.grant!.memory!.every((x) => x === 1) && b.grant!.memory!.every((x) => x === 2), 'writing one grant leaves the other untouched');
  a.grant!.release();
  t.ok(c.grant, 'the third is granted once the first is released');
  t.ok(small.grant, 'and the small one after it');
  c.grant!.memory!.fill(3);
  t.ok(b.grant!.memory!.every((x) => x === 2), 'the new grant does not overlap a held one');
  a.grant!.release();
  t.equal(budget.inUse(), 12 * MiB + 100 * 1024, 'a second release changes nothing');
  for (const g of [b, c, small]) g.grant!.release();
  t.equal(budget.inUse(), 0);
  const whole = ask(budget, 16 * MiB);
  t.equal(whole.grant?.memory?.length, 16 * MiB, 'freed ranges join up again: the whole budget fits');
});

t.test('shrink gives the tail back; cancel takes a waiter out of line', async (t) => {
  const budget = bodyBudget(10 * MiB);
  const chunked = ask(budget, 10 * MiB);
  const waiting = ask(budget, 4 * MiB);
  const next = ask(budget, 4 * MiB);
  t.notOk(waiting.grant);
  waiting.cancel();
  chunked.grant!.shrink(5 * MiB);
  t.notOk(waiting.grant, 'a cancelled request is never granted');
  t.ok(next.grant, 'the next one gets the freed tail');
  t.equal(budget.inUse(), 9 * MiB);
});

t.test('a grant released while the worker reads it is freed only when that ends', async (t) => {
  const budget = bodyBudget(8 * MiB);
  const a = ask(budget, 8 * MiB);
  let finish = (): void => {};
  a.grant!.busyUntil(new Promise<void>((resolve) => (finish = resolve)));
  a.grant!.release();
  const b = ask(budget, 1 * MiB);
  await new Promise((r) => setImmediate(r));
  t.notOk(b.grant, 'still held while busy');
  finish();
  await new Promise((r) => setImmediate(r));
  t.ok(b.grant, 'granted once the work is done');
});

t.test('a body larger than the budget is read alone, into memory of its own; 0 means no budget', async (t) => {
  const budget = bodyBudget(4 * MiB);
  const held = ask(budget, 1 * MiB);
  const huge = ask(budget, 6 * MiB);
  t.notOk(huge.grant, 'waits for everything else');
  held.grant!.release();
  t.ok(huge.grant, 'then granted');
  t.equal(huge.grant!.memory, undefined, 'without a share of the budget\'s memory');
  t.equal(budget.inUse(), 4 * MiB, 'it holds the whole budget');
  const unlimited = bodyBudget(0);
  const x = ask(unlimited, 6 * MiB);
  const y = ask(unlimited, 6 * MiB);
  t.ok(x.grant && y.grant, 'with a budget of 0, every body is granted at once');
  t.equal(x.grant!.memory, undefined);
});

t.test('a budget larger than the process can map still grants, with memory of the body\'s own', async (t) => {
  const budget = bodyBudget(2 ** 50);
  const a = ask(budget, 6 * MiB);
  t.ok(a.grant, 'granted');
  t.equal(a.grant!.memory, undefined, 'readBody then allocates the body itself');
  a.grant!.release();
  t.equal(budget.inUse(), 0);
});
