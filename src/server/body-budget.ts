// How many request-body bytes the webhook holds at once. A large body is read
// only once its size (Content-Length, or the body limit when it is chunked) fits
// in the budget; until then its socket is not read, so the bytes wait in the
// kernel and the client, not in the heap. Requests are granted in arrival order.

export interface BodyGrant {
  /** Gives the bytes back (once; later calls do nothing). */
  release(): void;
  /** Keeps only `bytes` of the grant, e.g. the body's real size once it is read. */
  shrink(bytes: number): void;
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

export function bodyBudget(limitBytes: number): BodyBudget {
  let used = 0;
  const queue: Array<{ bytes: number; granted: (grant: BodyGrant) => void }> = [];
  const grant = (bytes: number, granted: (grant: BodyGrant) => void): void => {
    used += bytes;
    let held = bytes;
    granted({
      release() {
        used -= held;
        held = 0;
        pump();
      },
      shrink(keep) {
        if (keep >= held) return;
        used -= held - keep;
        held = keep;
        pump();
      },
    });
  };
  const pump = (): void => {
    while (queue.length > 0 && used + (queue[0] as { bytes: number }).bytes <= limitBytes) {
      const next = queue.shift() as (typeof queue)[number];
      grant(next.bytes, next.granted);
    }
  };
  return {
    inUse: () => used,
    reserve(bytes, granted) {
      // A body larger than the whole budget still gets read, alone.
      const size = Math.min(bytes, limitBytes);
      if (queue.length === 0 && used + size <= limitBytes) {
        grant(size, granted);
        return () => {};
      }
      const entry = { bytes: size, granted };
      queue.push(entry);
      return () => {
        const i = queue.indexOf(entry);
        if (i >= 0) queue.splice(i, 1);
        pump();
      };
    },
  };
}
