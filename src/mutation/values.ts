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

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * strconv.ParseInt(text, 10, 64): optional sign, decimal digits, int64 range.
 * Values beyond what a JS number holds exactly are refused too (no token lives
 * that long).
 */
export function parseGoInt(text: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  const big = BigInt(text);
  if (big < INT64_MIN || big > INT64_MAX) return undefined;
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A comma-separated list (Go's csv reader, one record), trimmed, empty names dropped. */
export function parseNameList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter((s) => s.length > 0);
}

/** The shape the reference webhook accepts without a warning. */
const ROLE_ARN = /^arn:aws[a-z0-9-]*:iam::\d{12}:role\/[\w\-/.@+=,]+$/;

export function isWellFormedRoleArn(arn: string): boolean {
  return ROLE_ARN.test(arn);
}
