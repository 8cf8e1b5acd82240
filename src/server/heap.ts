// The main thread's young generation, held at its initial size. Under churn
// (a storm of hostile connections, each leaving sockets and parsers alive for a
// few scavenges) V8 doubles the semi-spaces up to 16 MiB each and keeps them:
// ~30 MiB of RSS for nothing an admission needs, since a review leaves little
// alive. Scavenges get more frequent and stay cheap.
//
// --max-semi-space-size would do it, but only as a node flag at startup. The
// growth factor is read at each resize, so it can be set from here; V8 resets
// it to its minimum of 2 whenever an isolate is created (a worker thread
// starts), so it is applied again once each worker is online.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let held = false;

/** From now on the young generation does not grow (serve calls it before loading the server). */
export function holdYoungGeneration(): void {
  held = true;
  setFlagsFromString('--semi-space-growth-factor=1');
}

/** After a worker thread is online: applies holdYoungGeneration again, if it was applied. */
export function reholdYoungGeneration(): void {
  if (held) setFlagsFromString('--semi-space-growth-factor=1');
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
