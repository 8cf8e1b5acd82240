// Reload-on-change for mounted files. Kubernetes updates Secret and ConfigMap
// volumes by swapping a `..data` symlink, which a watch on the file itself
// misses, so the parent directories are watched and the contents compared;
// a slow poll backs up filesystems where fs.watch is unreliable.
import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname } from 'node:path';

export interface FileWatch {
  /** Re-reads now, synchronously: a change callback has run when it returns. */
  check(): void;
  close(): void;
}

export interface WatchOptions {
  debounceMs?: number;
  pollMs?: number;
}

/**
 * Calls `onChange` with the contents of `paths` (same order) whenever any of
 * them changes, and `onError` when one cannot be read. It does not call either
 * at start: callers do their first load themselves.
 */
export function watchFiles(
  paths: readonly string[],
  initial: readonly string[] | undefined,
  onChange: (contents: string[]) => void,
  onError: (err: Error) => void,
  options: WatchOptions = {},
): FileWatch {
  const debounceMs = options.debounceMs ?? 100;
  let last = initial ? digest(initial) : '';
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const check = (): void => {
    if (closed) return;
    let contents: string[];
    try {
      contents = paths.map((p) => readFileSync(p, 'utf8'));
    } catch (err) {
      onError(err as Error);
      return;
    }
    const d = digest(contents);
    if (d === last) return;
    last = d;
    onChange(contents);
  };
  const schedule = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const w = watch(dir, { persistent: false }, schedule);
      w.on('error', () => undefined); // the poll keeps working if the directory goes away
      watchers.push(w);
    } catch {
      // Directory missing for now: the poll will notice when it appears.
    }
  }
  const poll = setInterval(check, options.pollMs ?? 10_000);
  poll.unref();

  return {
    check,
    close() {
      closed = true;
      clearInterval(poll);
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}

function digest(contents: readonly string[]): string {
  const h = createHash('sha256');
  for (const c of contents) h.update(c).update('\0');
  return h.digest('hex');
}
