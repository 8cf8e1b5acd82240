// Reads a request body into one Buffer, with fastify's errors for a body over
// the limit or shorter than its Content-Length. With a Content-Length (the API
// server always sends one) the bytes are copied into a buffer of that size as
// they arrive, so each chunk the socket delivers dies young: no list of
// chunks held until the end, then copied once more into a second buffer of
// the same size. For megabyte bodies that halves the memory a body holds, and
// keeps thousands of chunks out of the allocator's long-lived memory. A small
// body that arrives in one chunk (an API server's review, as a rule) is that
// chunk: no second ArrayBuffer per admission.
import type { Readable } from 'node:stream';
import { errorCodes } from 'fastify';

export type BodyCallback = (err: Error | null, body?: Buffer) => void;

/** Options of readBody. */
export interface ReadBodyOptions {
  /** The request's Content-Length, when it has one. */
  contentLength: number | undefined;
  /** Larger bodies are refused with 413. */
  limit: number;
  /**
   * Where a body of a known length goes: by default a Buffer of its own
   * (not from Node's shared pool, so its memory can move to a worker thread).
   */
  allocate?: (length: number) => Buffer;
  /**
   * A body of at most this many bytes that arrives in one chunk is that chunk,
   * not a copy (only when `allocate` is not given: such a body may be a slice
   * of memory the socket shares, so it must not be moved to another thread).
   */
  wholeChunkUpTo?: number;
}

export function readBody(payload: Readable, o: ReadBodyOptions, done: BodyCallback): void {
  const { contentLength, limit } = o;
  if (contentLength !== undefined && contentLength > limit) {
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
    return;
  }
  const allocate = o.allocate ?? ((length: number) => Buffer.allocUnsafeSlow(length));
  const whole = contentLength !== undefined && !o.allocate && contentLength <= (o.wholeChunkUpTo ?? -1);
  let into: Buffer | undefined;
  let only: Buffer | undefined;
  const chunks: Buffer[] = [];
  let received = 0;
  const finish = (err: Error | null, body?: Buffer): void => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
    done(err, body);
  };
  const onData = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (received + bytes.length > limit) {
      finish(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
      return;
    }
    if (contentLength !== undefined) {
      if (received + bytes.length > contentLength) {
        finish(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
        return;
      }
      if (whole && received === 0 && bytes.length === contentLength) {
        only = bytes;
      } else {
        into ??= allocate(contentLength);
        into.set(bytes, received);
      }
    } else {
      chunks.push(bytes);
    }
    received += bytes.length;
  };
  const onEnd = (): void => {
    if (contentLength !== undefined) {
      if (received !== contentLength) finish(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
      else finish(null, only ?? into ?? allocate(contentLength));
    } else {
      finish(null, Buffer.concat(chunks, received));
    }
  };
  // A client that goes away mid-body: 400, as fastify answers (if anyone still listens).
  const onError = (err: Error & { statusCode?: number }): void => {
    if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
    finish(err);
  };
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.resume();
}
