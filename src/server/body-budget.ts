// How many request-body bytes the webhook holds at once, and where. A large
// body is read only once its size (Content-Length, or the body limit when it is
// chunked) fits in the budget; until then its socket is not read, so the bytes
// wait in the kernel and the client, not in the heap. Requests are granted in
// arrival order.
//
// The budget is one block of memory, allocated once, and each grant is a range
// of it: a body is read straight into its range, and the decoder's worker
// reads it from there (the block is shared with it). Megabyte bodies then
// never come from malloc: glibc would serve them, after the first one is
// freed, from its heap, which fragments and does not shrink (tens of MiB of
// RSS kept after an attack).

export interface BodyGrant {
  /**
   * The grant's bytes in the budget's memory, as long as the body's size; undefined
   * for a body larger than the whole budget (it is read alone, into memory of its own).
   */
  readonly memory: Buffer | undefined;
  /** Gives the bytes back (once; later calls do nothing); after `busy` settles, if given. */
  release(): void;
  /** Keeps only `bytes` of the grant, e.g. the body's real size once it is read. */
  shrink(bytes: number): void;
  /** The bytes stay granted until `work` (e.g. the worker reading them) settles, even if released before. */
  busyUntil(work: Promise<unknown>): void;
}

export interface BodyBudget {
  /** Bytes granted and not yet released. */
  inUse(): number;
  /**
   * Calls `granted(grant)` once `bytes` fit (at once if they do now).
   * Returns a cancel for a request that goes away while it waits; it is a
   * no-op once granted.
   */
  reserve(bytes: number, granted: (grant: BodyGrant) => void): () => void;
}

/** The block, or null when it cannot be had (a budget beyond what the process may map): bodies then get memory of their own. */
function allocate(bytes: number): SharedArrayBuffer | null {
  try {
    return new SharedArrayBuffer(bytes);
  } catch {
    return null;
  }
}

interface Range {
  start: number;
  end: number;
}

export function bodyBudget(limitBytes: number): BodyBudget {
  let used = 0;
  let block: SharedArrayBuffer | null | undefined;
  // Free ranges of the block, sorted and never adjacent.
  const free: Range[] = limitBytes > 0 ? [{ start: 0, end: limitBytes }] : [];
  const queue: Array<{ bytes: number; granted: (grant: BodyGrant) => void }> = [];

  const take = (size: number): number | undefined => {
    if (size === 0) return 0; // --max-inflight-body-bytes 0: no budget, every body is read at once
    const i = free.findIndex((r) => r.end - r.start >= size);
    if (i < 0) return undefined;
    const r = free[i] as Range;
    const start = r.start;
    r.start += size;
    if (r.start === r.end) free.splice(i, 1);
    return start;
  };
  const give = (start: number, end: number): void => {
    if (start >= end) return;
    let i = free.findIndex((r) => r.start > start);
    if (i < 0) i = free.length;
    const before = free[i - 1];
    const after = free[i];
    if (before && before.end === start && after && after.start === end) {
      before.end = after.end;
      free.splice(i, 1);
    } else if (before && before.end === start) {
      before.end = end;
    } else if (after && after.start === end) {
      after.start = start;
    } else {
      free.splice(i, 0, { start, end });
    }
  };

  const grant = (bytes: number, start: number, granted: (grant: BodyGrant) => void): void => {
    // A body larger than the whole budget holds all of it, and its own memory.
    const size = Math.min(bytes, limitBytes);
    used += size;
    let held = size;
    let busy: Promise<unknown> | undefined;
    let released = false;
    const giveBack = (): void => {
      used -= held;
      give(start, start + held);
      held = 0;
      pump();
    };
    block ??= allocate(limitBytes);
    granted({
      memory: block && bytes <= limitBytes ? Buffer.from(block, start, bytes) : undefined,
      release() {
        if (released) return;
        released = true;
        if (busy) void busy.finally(giveBack);
        else giveBack();
      },
      shrink(keep) {
        if (keep >= held || released) return;
        used -= held - keep;
        give(start + keep, start + held);
        held = keep;
        pump();
      },
      busyUntil(work) {
        const before = busy;
        busy = before ? Promise.allSettled([before, work]) : work.then(() => undefined, () => undefined);
      },
    });
  };
  const place = (bytes: number): number | undefined => take(Math.min(bytes, limitBytes));
  const pump = (): void => {
    while (queue.length > 0) {
      const next = queue[0] as (typeof queue)[number];
      const start = place(next.bytes);
      if (start === undefined) return;
      queue.shift();
      grant(next.bytes, start, next.granted);
    }
  };
  return {
    inUse: () => used,
    reserve(bytes, granted) {
      if (queue.length === 0) {
        const start = place(bytes);
        if (start !== undefined) {
          grant(bytes, start, granted);
          return () => {};
        }
      }
      const entry = { bytes, granted };
      queue.push(entry);
      return () => {
        const i = queue.indexOf(entry);
        if (i >= 0) queue.splice(i, 1);
        pump();
      };
    },
  };
}
