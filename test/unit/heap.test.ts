// serve's collection after a large list (server/heap.ts): a full collection
// that has happened when the call returns, without --expose-gc on the command
// line, and again on every call (every relist).
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import { collectAfterLargeList } from '../../src/server/heap.js';

/** An object nobody else holds, big enough to go straight to the old generation, which only a full collection sweeps. */
function garbage(): WeakRef<number[]> {
  return new WeakRef(new Array<number>(1_000_000).fill(0));
}

t.test('an unreachable old-generation object is gone once the call returns', async (t) => {
  for (const round of ['first', 'second']) {
    const ref = garbage();
    // A WeakRef holds its target until the end of the turn that made or read it.
    await nextTurn();
    collectAfterLargeList();
    t.ok(ref.deref() === undefined, `${round} call: collected`);
  }
});
