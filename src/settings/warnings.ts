// Warnings are bounded whatever the input: the API server cuts each warning
// past 256 characters and drops all of them past 4,096 characters in total, and
// a warning must never echo a megabyte of someone's annotation back.

/** Limits the API server applies to admission warnings. */
export const MAX_WARNING_LENGTH = 256;
export const MAX_WARNINGS_LENGTH = 4096;
/** Warnings the engine keeps per pod; the rest are counted. */
export const MAX_WARNINGS = 16;
/** Left-out warnings counted one by one; past this many the count says "over". */
export const MAX_LEFT_OUT = 1024;
/** How much of an outside value a warning shows. */
const QUOTED_LENGTH = 64;
const ELLIPSIS = '…';

/** The first `max` UTF-16 units of `text`, never splitting a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  return text.slice(0, end) + ELLIPSIS;
}

/** Cuts `text` so that it, ellipsis included, fits in `max` units. */
function fit(text: string, max: number): string {
  return text.length <= max ? text : cut(text, max - ELLIPSIS.length);
}

/** An outside value shown in a warning: quoted, escaped, and at most a few dozen characters. */
export function quote(text: string, max = QUOTED_LENGTH): string {
  return JSON.stringify(cut(text, max));
}

/** What a value is, for a message, without converting it (its toString may throw). */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (typeof v === 'string') return `the string ${quote(v, 32)}`;
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

export interface WarningList {
  add(text: string): void;
  /** The kept warnings, plus one line counting those left out. */
  list(): string[];
}

/** Collects warnings: deduplicated, each cut to the API server's length, at most MAX_WARNINGS. */
export function warningList(initial: readonly string[] = []): WarningList {
  const kept = new Set<string>();
  // Those left out are counted once each too, up to MAX_LEFT_OUT: a hostile pod
  // with 50,000 containers must not cost 50,000 kept strings.
  const left = new Set<string>();
  let uncounted = false;
  const add = (text: string): void => {
    const w = fit(text, MAX_WARNING_LENGTH);
    if (kept.has(w)) return;
    if (kept.size < MAX_WARNINGS) kept.add(w);
    else if (left.size < MAX_LEFT_OUT) left.add(w);
    else if (!left.has(w)) uncounted = true;
  };
  initial.forEach(add);
  const more = (): string => `${uncounted ? 'over ' : ''}${left.size} more warning(s) not shown`;
  return {
    add,
    list: () => (left.size > 0 ? [...kept, more()] : [...kept]),
  };
}

/**
 * The warnings as sent to the API server: prefixed, deduplicated, each at most
 * MAX_WARNING_LENGTH and all together at most MAX_WARNINGS_LENGTH characters.
 */
export function boundWarnings(warnings: readonly string[], prefix: string): string[] {
  const unique = [...new Set(warnings.map((w) => fit(prefix + w, MAX_WARNING_LENGTH)))];
  const out: string[] = [];
  let total = 0;
  for (let i = 0; i < unique.length; i++) {
    const w = unique[i] as string;
    const left = unique.length - i;
    // Keep room for the line that says how many were left out.
    const room = MAX_WARNINGS_LENGTH - (left > 1 ? 64 : 0);
    if (total + w.length > room) {
      out.push(`${prefix}${left} more warning(s) not shown`);
      break;
    }
    out.push(w);
    total += w.length;
  }
  return out;
}
