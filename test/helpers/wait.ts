// Waiting on a condition, not on a clock: retry until it holds. No deadline of
// its own (a loaded machine is slow, not wrong): the test file's timeout bounds
// the wait, and `giveUpIf` ends it as soon as a signal says it cannot succeed
// any more (e.g. the child process it waits for has exited). A long wait says
// so on stderr, with the last error, so a hang is never silent.

export interface WaitOptions {
  /** Pause between attempts (default 100 ms). */
  everyMs?: number;
  /** Checked before each attempt: a reason to stop waiting, or undefined. */
  giveUpIf?: () => string | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Calls `attempt` until it returns a value other than undefined (a throw counts as not yet). */
export async function waitUntil<T>(what: string, attempt: () => Promise<T | undefined> | T | undefined, options: WaitOptions = {}): Promise<T> {
  const start = Date.now();
  let last = '';
  let nextNote = start + 30_000;
  for (;;) {
    const reason = options.giveUpIf?.();
    if (reason) throw new Error(`gave up waiting for ${what}: ${reason}${last ? ` (last: ${last})` : ''}`);
    try {
      const v = await attempt();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() >= nextNote) {
      console.error(`# still waiting for ${what} after ${Math.round((Date.now() - start) / 1000)} s${last ? ` (last: ${last})` : ''}`);
      nextNote = Date.now() + 60_000;
    }
    await sleep(options.everyMs ?? 100);
  }
}

/** The exit of `child` as a reason for giveUpIf, once it has exited. */
export function exitedReason(child: { exitCode: number | null; signalCode: NodeJS.Signals | null }, name: string, output?: () => string): string | undefined {
  if (child.exitCode === null && child.signalCode === null) return undefined;
  const printed = output?.().trim();
  return `${name} exited (${child.signalCode ?? `code ${child.exitCode}`})${printed ? `; it printed:\n${printed}` : ''}`;
}
