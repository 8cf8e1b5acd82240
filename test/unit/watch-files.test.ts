// src/files/watch.ts: reload-on-change for mounted files. Most cases call
// check() themselves, so the outcome does not depend on when fs.watch or the
// poll fire: whichever runs first, the callback runs once per change.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FileWatch, type WatchOptions, watchFiles } from '../../src/files/watch.js';
import { until } from '../helpers/fake-apiserver.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Recorded {
  changes: string[][];
  errors: NodeJS.ErrnoException[];
  watch: FileWatch;
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'piw-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Watches `paths`, recording every callback; closed at teardown. Polling is off unless asked for. */
function record(t: Test, paths: string[], initial: string[] | undefined, options: WatchOptions = {}): Recorded {
  const changes: string[][] = [];
  const errors: NodeJS.ErrnoException[] = [];
  const watch = watchFiles(paths, initial, (c) => changes.push(c), (e) => errors.push(e), { debounceMs: 10, pollMs: 3_600_000, ...options });
  t.teardown(() => watch.close());
  return { changes, errors, watch };
}

t.test('nothing is called at start', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a');
  writeFileSync(file, 'one');
  const r = record(t, [file], ['one'], { pollMs: 20 });
  await sleep(200);
  t.same(r.changes, []);
  t.same(r.errors, []);
});

t.test('a file rewritten in place', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a');
  writeFileSync(file, 'one');
  const r = record(t, [file], ['one']);
  writeFileSync(file, 'two');
  r.watch.check();
  t.same(r.changes, [['two']]);
  writeFileSync(file, 'three');
  r.watch.check();
  t.same(r.changes, [['two'], ['three']]);
  t.same(r.errors, []);
});

t.test('a new file renamed over the old one', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a');
  writeFileSync(file, 'one');
  const r = record(t, [file], ['one']);
  writeFileSync(join(dir, 'a.tmp'), 'two');
  renameSync(join(dir, 'a.tmp'), file);
  r.watch.check();
  t.same(r.changes, [['two']]);
});

/** FILE -> ..data/FILE, ..data -> ..STAMP: how the kubelet lays out Secret and ConfigMap volumes. */
function volume(dir: string, file: string, initial: string): (content: string) => void {
  let n = 0;
  let current: string | undefined;
  const publish = (content: string): void => {
    const stamp = `..2024_06_01_12_00_0${n++}.1`;
    mkdirSync(join(dir, stamp));
    writeFileSync(join(dir, stamp, file), content);
    symlinkSync(stamp, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    if (current) rmSync(join(dir, current), { recursive: true });
    current = stamp;
  };
  publish(initial);
  symlinkSync(join('..data', file), join(dir, file));
  return publish;
}

t.test('a Kubernetes volume update: the ..data symlink swapped', async (t) => {
  const dir = tempDir(t);
  const publish = volume(dir, 'tls.crt', 'cert-1');
  const r = record(t, [join(dir, 'tls.crt')], ['cert-1']);
  publish('cert-2');
  r.watch.check();
  t.same(r.changes, [['cert-2']], 'the new contents, read through the swapped link');
  t.same(r.errors, [], 'the old directory being gone is no error');
  // The file itself never changes (it is a symlink to ..data/tls.crt): only a watch on the directory sees this.
  publish('cert-3');
  await until(() => r.changes.length === 2, 'fs.watch to notice the swap');
  t.same(r.changes, [['cert-2'], ['cert-3']], 'noticed without check()');
});

t.test('several files: any change reports all of them, in order', async (t) => {
  const dir = tempDir(t);
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  writeFileSync(cert, 'c1');
  writeFileSync(key, 'k1');
  const r = record(t, [cert, key], ['c1', 'k1']);
  writeFileSync(key, 'k2');
  r.watch.check();
  t.same(r.changes, [['c1', 'k2']]);
  writeFileSync(cert, 'c2');
  r.watch.check();
  t.same(r.changes, [['c1', 'k2'], ['c2', 'k2']]);
});

t.test('no callback when the contents are unchanged', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a');
  writeFileSync(file, 'same');
  const r = record(t, [file], ['same']);
  writeFileSync(file, 'same');
  utimesSync(file, new Date(), new Date(Date.now() + 60_000));
  r.watch.check();
  writeFileSync(join(dir, 'a.tmp'), 'same');
  renameSync(join(dir, 'a.tmp'), file);
  r.watch.check();
  t.same(r.changes, [], 'rewrites, touches and renames of equal contents are not changes');
  // Content that moves between files is a change (the files are not concatenated blindly).
  const b = join(dir, 'b');
  const c = join(dir, 'c');
  writeFileSync(b, 'xy');
  writeFileSync(c, '');
  const two = record(t, [b, c], ['xy', '']);
  writeFileSync(b, 'x');
  writeFileSync(c, 'y');
  two.watch.check();
  t.same(two.changes, [['x', 'y']]);
});

t.test('onError for a file that cannot be read; the first readable version is a change', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'missing');
  const r = record(t, [file], undefined);
  r.watch.check();
  t.equal(r.errors.length, 1);
  t.equal(r.errors[0]?.code, 'ENOENT');
  t.same(r.changes, []);
  writeFileSync(file, 'here');
  r.watch.check();
  t.same(r.changes, [['here']], 'reported once it appears');
  rmSync(file);
  r.watch.check();
  t.equal(r.errors.length, 2, 'deleted again: an error, not a change');
  writeFileSync(file, 'here');
  r.watch.check();
  t.same(r.changes, [['here']], 'back with the same contents: no change');
});

t.test('without check(): fs.watch on the directory notices a change', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a');
  writeFileSync(file, 'one');
  const r = record(t, [file], ['one'], { debounceMs: 20 });
  // Several writes in one go are debounced into one read of the final contents.
  for (const v of ['two', 'three', 'four']) writeFileSync(file, v);
  await until(() => r.changes.length > 0, 'the change to be noticed');
  await sleep(200);
  t.same(r.changes, [['four']]);
});

t.test('without check(): the poll notices a file whose directory did not exist at start', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'later', 'a');
  const r = record(t, [file], undefined, { pollMs: 25 });
  await until(() => r.errors.length > 0, 'the poll to report the missing file');
  mkdirSync(join(dir, 'later'));
  writeFileSync(file, 'one');
  await until(() => r.changes.length > 0, 'the poll to find the file');
  t.same(r.changes, [['one']]);
});

t.test('close() stops every callback', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a');
  writeFileSync(file, 'one');
  const r = record(t, [file], ['one'], { pollMs: 20 });
  r.watch.close();
  writeFileSync(file, 'two');
  r.watch.check();
  rmSync(file);
  r.watch.check();
  // Long enough for several polls and debounced fs.watch events, had they not been stopped.
  await sleep(300);
  t.same(r.changes, []);
  t.same(r.errors, []);
  r.watch.close();
  t.pass('close() twice is harmless');
});
