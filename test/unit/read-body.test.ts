// readBody: a body of known length is read into one buffer of that length
// (the caller's, when given); fastify's errors for a body over the limit or
// not as long as its Content-Length; without one, the chunks joined.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { readBody, type ReadBodyOptions } from '../../src/server/read-body.js';

function read(chunks: Array<Buffer | string>, o: ReadBodyOptions, fail?: Error): Promise<{ err: (Error & { code?: string; statusCode?: number }) | null; body?: Buffer }> {
  const stream = new PassThrough();
  const result = new Promise<{ err: Error | null; body?: Buffer }>((resolve) => readBody(stream, o, (err, body) => resolve({ err, ...(body ? { body } : {}) })));
  for (const c of chunks) stream.write(c);
  if (fail) stream.destroy(fail);
  else stream.end();
  return result;
}

t.test('a body of known length fills the buffer given for it', async (t) => {
  const into = Buffer.alloc(11);
  let asked = -1;
  const r = await read(['{"a":', Buffer.from('"b"'), '}  '], { contentLength: 11, limit: 100, allocate: (n) => ((asked = n), into) });
  t.equal(r.err, null);
  t.equal(asked, 11);
  t.equal(r.body, into, 'the same buffer, no copy');
  t.equal(r.body!.toString(), '{"a":"b"}  ');
  const own = await read(['{}'], { contentLength: 2, limit: 100 });
  t.equal(own.body!.toString(), '{}', 'a buffer of its own by default');
  t.equal(own.body!.buffer.byteLength, 2, 'not a slice of a shared pool');
});

t.test('shorter or longer than its Content-Length: 400; over the limit: 413', async (t) => {
  t.match((await read(['{}'], { contentLength: 5, limit: 100 })).err, { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', statusCode: 400 });
  t.match((await read(['{"a":1}'], { contentLength: 2, limit: 100 })).err, { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', statusCode: 400 });
  let allocated = false;
  t.match((await read([], { contentLength: 101, limit: 100, allocate: (n) => ((allocated = true), Buffer.alloc(n)) })).err, { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
  t.notOk(allocated, 'refused before any memory is taken for it');
});

t.test('without a Content-Length: the chunks joined, up to the limit', async (t) => {
  t.equal((await read(['{"a"', ':1}'], { contentLength: undefined, limit: 7 })).body?.toString(), '{"a":1}');
  t.match((await read(['{"a"', ':12}'], { contentLength: undefined, limit: 7 })).err, { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
});

t.test('a stream that fails gives its error, as a 400', async (t) => {
  const r = await read(['{"a"'], { contentLength: 10, limit: 100 }, new Error('aborted'));
  t.match(r.err, { message: 'aborted', statusCode: 400 });
});

t.test('a small body that arrives in one chunk is that chunk; otherwise a buffer of its own', async (t) => {
  const chunk = Buffer.from('{"kind":"AdmissionReview"}');
  const one = await read([chunk], { contentLength: chunk.length, limit: 100, wholeChunkUpTo: 64 });
  t.equal(one.body, chunk, 'no copy of a body that came whole');
  const two = await read([chunk.subarray(0, 5), chunk.subarray(5)], { contentLength: chunk.length, limit: 100, wholeChunkUpTo: 64 });
  t.equal(two.body!.toString(), chunk.toString());
  t.equal(two.body!.buffer.byteLength, chunk.length, 'two chunks: joined into a buffer of its own');
  const large = await read([chunk], { contentLength: chunk.length, limit: 100, wholeChunkUpTo: chunk.length - 1 });
  t.not(large.body, chunk, 'over wholeChunkUpTo: copied, so it can move to a worker thread');
  t.equal(large.body!.buffer.byteLength, chunk.length);
  const into = Buffer.alloc(chunk.length);
  const given = await read([chunk], { contentLength: chunk.length, limit: 100, wholeChunkUpTo: 64, allocate: () => into });
  t.equal(given.body, into, 'memory given for the body is always used');
  t.match((await read([chunk, '}'], { contentLength: chunk.length, limit: 100, wholeChunkUpTo: 64 })).err, { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' }, 'more than announced after a whole chunk: 400');
  const empty = await read([], { contentLength: 0, limit: 100, wholeChunkUpTo: 64 });
  t.equal(empty.err, null);
  t.equal(empty.body!.length, 0, 'an empty body is an empty buffer');
});
