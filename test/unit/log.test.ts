// The webhook's log lines: JSON with level names and ISO time, or one readable
// line per event, and one rule for errors (message and code; a stack only for bugs).
import t from 'tap';
import { connect } from 'node:net';
import pino, { type DestinationStream } from 'pino';
import { createLogger, isBug, isoTimeEachMs, serializeError, textLine } from '../../src/server/log.js';

function sink(): { lines: string[]; destination: DestinationStream } {
  const lines: string[] = [];
  return { lines, destination: { write: (s: string) => void lines.push(s) } };
}

/** A real ECONNREFUSED from the kernel, as the reflector sees it. */
function refused(): Promise<Error> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: 1 });
    socket.on('error', resolve);
  });
}

t.test('json: level names, ISO-8601 time, one line per event', async (t) => {
  const s = sink();
  const log = createLogger({ level: 'info', format: 'json', destination: s.destination });
  log.info({ namespace: 'shop' }, 'admission');
  log.debug('not at info');
  t.equal(s.lines.length, 1);
  const line = s.lines[0] as string;
  t.equal(line.trimEnd().split('\n').length, 1);
  const entry = JSON.parse(line) as Record<string, unknown>;
  t.equal(entry['level'], 'info');
  t.match(entry['time'], /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  t.ok(Math.abs(Date.parse(entry['time'] as string) - Date.now()) < 60_000, 'the time is now');
  t.equal(entry['msg'], 'admission');
  t.equal(entry['namespace'], 'shop');
  t.equal(entry['service'], 'pod-identity-webhook');
});

t.test('a refused connection is message and code, a bug keeps its stack', async (t) => {
  const s = sink();
  const log = createLogger({ level: 'info', format: 'json', destination: s.destination });
  const err = await refused();
  log.warn({ err }, 'list failed');
  const entry = JSON.parse(s.lines[0] as string) as { err: Record<string, unknown> };
  t.same(entry.err, { message: 'connect ECONNREFUSED 127.0.0.1:1', code: 'ECONNREFUSED' });

  let bug: Error | undefined;
  try {
    (undefined as unknown as { x: () => void }).x();
  } catch (e) {
    bug = e as Error;
  }
  log.error({ err: bug }, 'admission failed');
  const logged = (JSON.parse(s.lines[1] as string) as { err: Record<string, unknown> }).err;
  t.equal(logged['type'], 'TypeError');
  t.match(logged['stack'], /TypeError: .*\n\s+at /);
  t.equal((s.lines[1] as string).trimEnd().split('\n').length, 1, 'the stack stays inside the one line');

  // pino's error-first form goes through the same rule.
  log.error(await refused(), 'again');
  t.same((JSON.parse(s.lines[2] as string) as { err: unknown }).err, { message: 'connect ECONNREFUSED 127.0.0.1:1', code: 'ECONNREFUSED' });
});

t.test('serializeError: codes, statuses, causes and strings', async (t) => {
  for (const code of ['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT']) {
    const e = Object.assign(new Error(`boom ${code}`), { code });
    t.same(serializeError(e), { message: `boom ${code}`, code }, code);
    t.notOk(isBug(e));
  }
  // A TypeError with a network code is still the network.
  t.notOk(isBug(Object.assign(new TypeError('fetch failed'), { code: 'ECONNRESET' })));
  t.same(serializeError(Object.assign(new Error('forbidden'), { statusCode: 403 })), { message: 'forbidden', statusCode: 403 });
  t.same(serializeError(new Error('watch failed', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) })), {
    message: 'watch failed',
    cause: { message: 'socket hang up', code: 'ECONNRESET' },
  });
  t.equal(serializeError('already a message'), 'already a message');
  t.equal(serializeError(42), '42');
  t.ok(isBug(new RangeError('x')));
  t.ok(isBug(Object.assign(new Error('x'), { code: 'ERR_ASSERTION' })));
});

t.test('text: one readable line per event', async (t) => {
  const s = sink();
  const log = createLogger({ level: 'debug', format: 'text', destination: s.destination });
  log.info({ namespace: 'shop', durationMs: 0.21, note: 'two words' }, 'admission');
  log.warn({ err: await refused(), failures: 2 }, 'list failed');
  log.debug('quiet');
  t.equal(s.lines.length, 3);
  t.ok(s.lines.every((l) => l.endsWith('\n') && l.split('\n').length === 2), 'one line each');
  t.match(s.lines[0], /^\d{4}-\d{2}-\d{2}T[\d:.]+Z INFO {2}admission namespace=shop durationMs=0\.21 note="two words"\n$/);
  t.match(s.lines[1], /^\S+ WARN {2}list failed err="connect ECONNREFUSED 127\.0\.0\.1:1" code=ECONNREFUSED failures=2\n$/);
  t.match(s.lines[2], /^\S+ DEBUG quiet\n$/);
  t.notMatch(s.lines.join(''), /service=/, 'the constant service field is left out');
  // Anything that is not a JSON line passes through.
  t.equal(textLine('plain'), 'plain');
});

t.test('isoTimeEachMs: pino\'s ISO time, made once per millisecond', async (t) => {
  const realNow = Date.now;
  t.teardown(() => void (Date.now = realNow));
  const time = isoTimeEachMs();
  let now = Date.UTC(2026, 10, 26, 14, 3, 7, 123);
  Date.now = () => now;
  t.equal(time(), ',"time":"2026-11-26T14:03:07.123Z"');
  t.equal(time(), pino.stdTimeFunctions.isoTime(), 'the same text as pino\'s own');
  now += 1;
  t.equal(time(), ',"time":"2026-11-26T14:03:07.124Z"', 'the next millisecond is a new time');
});
