// The webhook's logger: one line per event, JSON (level names, ISO-8601
// time) for log shippers or text for people, and one rule for errors:
// expected failures (a refused connection, a reset, a timeout, a TLS
// handshake) are logged as message and code; only bugs carry a stack.
import pino, { type DestinationStream, type Logger } from 'pino';

export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Error codes of the network and of TLS that are part of running, not bugs. */
const EXPECTED_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'EHOSTDOWN', 'ENETDOWN', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'ERR_STREAM_PREMATURE_CLOSE', 'ABORT_ERR', 'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ECONNCLOSED',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** JavaScript's own error types: thrown by code that is wrong, not by a world that is. */
const BUG_TYPES = [TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError];

export interface LoggedError {
  message: string;
  code?: string;
  statusCode?: number;
  type?: string;
  stack?: string;
  cause?: LoggedError | string;
}

function codeOf(err: Error): string | undefined {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' ? code : undefined;
}

/** A bug: JavaScript's own error types, thrown by code that is wrong, never a network or TLS failure. */
export function isBug(err: Error): boolean {
  const code = codeOf(err);
  if (code && (EXPECTED_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) return false;
  return BUG_TYPES.some((T) => err instanceof T) || code === 'ERR_ASSERTION';
}

/**
 * The one place that decides how an error is logged (pino's `err`
 * serializer): strings as they are, errors as message and code (and the
 * HTTP status an API answer carried), bugs with their type and stack.
 */
export function serializeError(err: unknown, depth = 0): LoggedError | string {
  if (typeof err === 'string') return err;
  if (!(err instanceof Error)) return String(err);
  const out: LoggedError = { message: err.message };
  const code = codeOf(err);
  if (code) out.code = code;
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number') out.statusCode = status;
  if (isBug(err)) {
    out.type = err.name;
    if (err.stack) out.stack = err.stack;
  }
  if (err.cause !== undefined && depth < 3) out.cause = serializeError(err.cause, depth + 1);
  return out;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A field pino writes as a string or number, shown as it is (anything else as JSON). */
const text = (value: unknown): string =>
  typeof value === 'string' ? value : value === undefined ? '' : typeof value === 'number' ? String(value) : JSON.stringify(value);

function textValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return JSON.stringify(value);
}

/**
 * One JSON log line -> one human line:
 *   2026-11-26T14:03:07.123Z INFO  admission namespace=shop outcome=mutated durationMs=0.21
 * Errors read "err=<message> code=<code>"; a bug's stack stays on the line, escaped.
 */
export function textLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, err, ...rest } = entry;
  delete rest['service'];
  const label = typeof level === 'number' ? LEVELS[level] ?? String(level) : text(level).toUpperCase();
  const parts = [text(time), label.padEnd(5), text(msg)];
  if (err !== undefined) {
    if (typeof err === 'object' && err !== null) {
      const e = err as LoggedError;
      parts.push(`err=${textValue(e.message)}`);
      if (e.code) parts.push(`code=${e.code}`);
      if (e.statusCode !== undefined) parts.push(`statusCode=${e.statusCode}`);
      if (e.cause !== undefined) parts.push(`cause=${textValue(typeof e.cause === 'string' ? e.cause : e.cause.message)}`);
      if (e.stack) parts.push(`stack=${JSON.stringify(e.stack)}`);
    } else {
      parts.push(`err=${textValue(err)}`);
    }
  }
  for (const [k, v] of Object.entries(rest)) parts.push(`${k}=${textValue(v)}`);
  return `${parts.filter((p) => p !== '').join(' ')}\n`;
}

/**
 * serve's stdout (or `dest`), buffered: a write per admission line would cost a syscall and
 * a thread-pool hop on the hot path. Lines go out in batches of 3-4 KiB, at
 * least every second, and at exit (flushSync). sonic-boom measures its last
 * batch (a string grown line by line) at each line, which copies it: batches
 * capped at 4 KiB (maxWrite) bound that copy; 16 KiB batches, grown while a
 * write is in flight, left ~10 KiB of garbage per line.
 */
export function bufferedDestination(dest: number | string = 1): pino.DestinationStream & { flushSync(): void } {
  return pino.destination({ dest, sync: false, minLength: 3 * 1024, maxWrite: 4 * 1024, periodicFlush: 1000 });
}

export interface LoggerOptions {
  level: string;
  format: LogFormat;
  destination: DestinationStream;
}

/**
 * pino's ISO time, made once per millisecond: at thousands of admissions a
 * second, most log lines share their millisecond with the previous one.
 */
export function isoTimeEachMs(): () => string {
  let lastMs = -1;
  let last = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      last = `,"time":"${new Date(now).toISOString()}"`;
    }
    return last;
  };
}

/** pino with level names, ISO time and the error rule; text lines are formatted from the JSON one. */
export function createLogger(o: LoggerOptions): Logger {
  const options: pino.LoggerOptions = {
    level: o.level,
    base: { service: 'pod-identity-webhook' },
    timestamp: isoTimeEachMs(),
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: serializeError },
  };
  if (o.format === 'json') return pino(options, o.destination);
  const destination = o.destination;
  return pino(options, { write: (line: string) => destination.write(textLine(line)) });
}
