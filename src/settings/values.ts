// Value parsing with the reference webhook's (Go's) rules, so an annotation
// that works there works here, and one that is ignored there is ignored here.

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** strconv.ParseBool: undefined when the text is not one of Go's spellings. */
export function parseGoBool(text: string): boolean | undefined {
  if (GO_TRUE.has(text)) return true;
  if (GO_FALSE.has(text)) return false;
  return undefined;
}

/** Past this many significant digits no value is a safe integer. */
const SAFE_INTEGER_DIGITS = 16;

/**
 * strconv.ParseInt(text, 10, 64): optional sign, decimal digits. Values beyond
 * what a JS number holds exactly are refused (no token lives that long); that
 * range lies inside int64's, so Go's range check needs no test of its own.
 * A long run of digits is refused by its length, without converting it: an
 * annotation of 256 KiB of digits costs one scan, not a bignum.
 */
export function parseGoInt(text: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  // Stryker disable next-line ConditionalExpression,Regex: the length test only spares converting a long digit run (not a safe integer either), and [+-]?0* first matches at offset 0 with or without ^
  if (text.replace(/^[+-]?0*/, '').length > SAFE_INTEGER_DIGITS) return undefined;
  const n = Number(text);
  // `|| 0`: "-0" is 0, as Go reads it.
  return Number.isSafeInteger(n) ? n || 0 : undefined;
}

/** The shape the reference webhook accepts without a warning. */
const ROLE_ARN = /^arn:aws[a-z0-9-]*:iam::\d{12}:role\/[\w\-/.@+=,]+$/;

export function isWellFormedRoleArn(arn: string): boolean {
  return ROLE_ARN.test(arn);
}

/** What a skip-containers annotation says about one pod's containers. */
export interface SkipContainers {
  /** The pod's containers the annotation names. */
  skipped: ReadonlySet<string>;
  /** How many names match no container of the pod, and the first few of them. */
  unmatched: number;
  unmatchedExamples: readonly string[];
  /** Set when the text is not a valid CSV record; then nothing is skipped. */
  error?: string;
}

const UNMATCHED_EXAMPLES = 3;
const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** The characters String.prototype.trim removes. */
function isTrimmed(c: number): boolean {
  return (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a)
    || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/**
 * The skip-containers annotation, read as the reference webhook reads it: the
 * first record of Go's encoding/csv reader with its defaults (comma-separated,
 * RFC 4180 quotes with "" inside quoted fields, CRLF read as LF, blank lines
 * before the record ignored, any quote error means nothing is skipped). Unlike
 * the reference, whitespace around each name is trimmed and empty names are
 * dropped. One pass over the text, and only names as long as some container's
 * name are ever cut out of it, so a list of 300,000 names costs no allocation
 * per name.
 */
export function parseSkipContainers(text: string, containers: ReadonlySet<string>): SkipContainers {
  const skipped = new Set<string>();
  const examples: string[] = [];
  let unmatched = 0;
  const lengths = new Set<number>();
  for (const name of containers) lengths.add(name.length);
  const onName = (name: string): void => {
    if (containers.has(name)) {
      skipped.add(name);
      return;
    }
    unmatched++;
    if (examples.length < UNMATCHED_EXAMPLES && !examples.includes(name)) examples.push(name);
  };
  /** An unquoted field text[from, to), trimmed, looked at without copying unless it could match. */
  const onSlice = (from: number, to: number): void => {
    while (from < to && isTrimmed(text.charCodeAt(from))) from++;
    while (to > from && isTrimmed(text.charCodeAt(to - 1))) to--;
    if (from === to) return;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: only whether a name that cannot match is copied; onName counts it the same way
    if (lengths.has(to - from) || examples.length < UNMATCHED_EXAMPLES) onName(text.slice(from, to));
    else unmatched++;
  };
  const fail = (why: string): SkipContainers => ({ skipped: new Set(), unmatched: 0, unmatchedExamples: [], error: why });

  // Go drops a carriage return that ends the input, and reads CRLF as LF. At
  // and past end there is at most that CR (charCodeAt gives NaN past the
  // text): never a quote, comma or line feed, so finding one means being
  // before end.
  const end = text.charCodeAt(text.length - 1) === CR ? text.length - 1 : text.length;
  const newlineAt = (i: number): number => {
    const c = text.charCodeAt(i);
    if (c === LF) return 1;
    return c === CR && text.charCodeAt(i + 1) === LF ? 2 : 0;
  };
  let i = 0;
  for (let nl = newlineAt(i); nl > 0; nl = newlineAt(i)) i += nl; // blank lines

  // The next quote and line feed at or after i, found by the engine's indexOf
  // and searched again only once passed: one pass over the text in all.
  const next = (ch: string, from: number): number => {
    const at = text.indexOf(ch, from);
    return at < 0 ? end : at;
  };
  let quoteAt = next('"', i);
  let lineFeedAt = next('\n', i);
  for (;;) {
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a cache decision, not output
    if (quoteAt < i) quoteAt = next('"', i);
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a cache decision, not output
    if (lineFeedAt < i) lineFeedAt = next('\n', i);
    if (i >= end || quoteAt !== i) {
      const j = Math.min(next(',', i), lineFeedAt);
      if (quoteAt < j) return fail(`a quote inside the unquoted name at offset ${quoteAt}`);
      // A CR right before the line feed is whitespace: onSlice trims it.
      onSlice(i, j);
      if (text.charCodeAt(j) === COMMA) {
        i = j + 1;
        continue;
      }
      break;
    }
    // A quoted field: "" is a quote, and it may span lines.
    const start = i;
    let value = '';
    i++;
    for (;;) {
      const q = text.indexOf('"', i);
      if (q === -1) return fail(`the quoted name at offset ${start} is not closed`);
      value += text.slice(i, q);
      i = q + 1;
      if (text.charCodeAt(i) === QUOTE) {
        value += '"';
        i++;
        continue;
      }
      break;
    }
    const name = value.replace(/\r\n/g, '\n').trim();
    if (name !== '') onName(name);
    if (text.charCodeAt(i) === COMMA) {
      i++;
      continue;
    }
    if (i >= end || newlineAt(i) > 0) break;
    return fail(`unexpected text after the quoted name at offset ${start}`);
  }
  return { skipped, unmatched, unmatchedExamples: examples };
}
