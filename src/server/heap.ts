// The main thread's young generation: held at V8's initial 1 MiB semi-spaces
// while serve starts, then, from the first admission on, allowed to grow to
// YOUNG_GENERATION_CAP and held there. Left alone, V8 doubles the semi-spaces
// up to 16 MiB each under churn (a storm of hostile connections, each leaving
// sockets and parsers alive for a few scavenges) and keeps them: ~30 MiB of
// RSS for nothing an admission needs. Held at 1 MiB, an admission (~50 KiB of
// garbage) costs a scavenge every ~16 requests; 2 MiB halves that (GC time per
// admission ~10 -> ~6 us) for 2 MiB of RSS, which a webhook that never
// admitted anything does not pay. (Node 24's V8 grows it up to 64 MiB on its
// own, and for a while during collections whatever the growth factor: there the
// hold bounds it less tightly.)
//
// --max-semi-space-size would do it, but only as a node flag at startup. The
// growth factor is read at each resize, so it can be set from here: 1 holds,
// V8's default of 2 lets it double. V8 resets it to 2 whenever an isolate is
// created (a worker thread starts), so it is set again once each worker is
// online.
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** The size one semi-space of the main thread's young generation may grow to. */
export const YOUNG_GENERATION_CAP = 2 * 1024 * 1024;

let holding = false;

/** From now on the young generation does not grow (serve calls it before loading the server). */
export function holdYoungGeneration(): void {
  holding = true;
  setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * The size of one semi-space of this thread's young generation, in bytes: half
 * of V8's new space, which holds two once both are committed (right after
 * start only one is, and this reads half the real size).
 */
export function semiSpaceBytes(): number {
  return (getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / 2;
}

/**
 * V8's growth factor: its default of 2 below the cap, 1 at it. V8 doubles the
 * semi-spaces, so three quarters of the cap tells the last step below it
 * (half the cap) from the cap itself.
 */
function steer(cap: number): void {
  const atCap = semiSpaceBytes() >= (cap * 3) / 4;
  if (atCap === holding) return;
  holding = atCap;
  setFlagsFromString(`--semi-space-growth-factor=${atCap ? 1 : 2}`);
}

/**
 * From now on the young generation may grow to `cap` bytes per semi-space, and
 * no further (serve calls it at its first admission): checked after each
 * collection, so that it may grow again after V8 shrinks it when idle.
 */
export function capYoungGeneration(cap = YOUNG_GENERATION_CAP): void {
  steer(cap);
  new PerformanceObserver(() => steer(cap)).observe({ entryTypes: ['gc'] });
}

/** After a worker thread is online: holds the young generation again, if it is at its cap. */
export function reholdYoungGeneration(): void {
  if (holding) setFlagsFromString('--semi-space-growth-factor=1');
}

let gc: (() => void) | undefined;

/** A full, blocking collection of this thread's heap (gc() without --expose-gc on the command line). */
export function fullCollection(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

/** Lists of at least this many objects are followed by a full collection. */
export const LARGE_LIST_ITEMS = 1000;

/**
 * A full collection. After a list of 100,000 ServiceAccounts the heap holds
 * tens of MiB of their parsed JSON as garbage, and V8 would keep that heap
 * (and the process's RSS) at its peak until some later collection; collected
 * at once, RSS drops by ~10 MiB. It pauses the event loop for a few tens of
 * milliseconds, so it runs after a large list only: once at start, and again
 * on a relist. (An incremental collection would not pause, but an idle
 * process never finishes one.)
 */
export function collectAfterLargeList(): void {
  fullCollection();
}
