// The coverage floor (scripts/check-coverage.mjs): per-directory sums of an
// istanbul json-summary, and a verdict that names the directory and metric that fell.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { aggregate, groupOf, raised, table, verdict, type Summary } from '../../scripts/check-coverage.mjs';

const ROOT = '/repo';
const entry = (lines: [number, number], branches: [number, number]) => ({
  lines: { covered: lines[0], total: lines[1] },
  branches: { covered: branches[0], total: branches[1] },
});
const SUMMARY: Summary = {
  total: entry([999, 999], [999, 999]),
  '/repo/src/tls/pem.ts': entry([90, 100], [30, 40]),
  '/repo/src/tls/files.ts': entry([100, 100], [10, 10]),
  '/repo/src/oidc/keys.ts': entry([50, 50], [0, 0]),
  '/repo/src/cli.ts': entry([9, 10], [1, 2]),
  '/repo/src/server/deep/x.ts': entry([1, 2], [1, 1]),
  '/repo/test/helpers/wait.ts': entry([0, 10], [0, 10]),
};

t.test('groups a file by its first directory under src/', async (t) => {
  t.equal(groupOf('src/tls/pem.ts'), 'src/tls');
  t.equal(groupOf('src/server/deep/x.ts'), 'src/server');
  t.equal(groupOf('src/cli.ts'), 'src');
});

t.test('sums lines and branches per directory, over src/ only', async (t) => {
  const g = aggregate(SUMMARY, ROOT);
  t.same(Object.keys(g).sort(), ['src', 'src/oidc', 'src/server', 'src/tls']);
  t.same(g['src/tls']!.lines, { covered: 190, total: 200, pct: 95 });
  t.same(g['src/tls']!.branches, { covered: 40, total: 50, pct: 80 });
  t.equal(g['src/oidc']!.branches.pct, 100, 'no branches at all counts as fully covered');
  t.equal(g['src']!.lines.pct, 90);
  t.equal(g['src/server']!.lines.pct, 50);
});

t.test('a directory under its threshold fails, named with its metric', async (t) => {
  const g = aggregate(SUMMARY, ROOT);
  const floors = { src: { lines: 90, branches: 50 }, 'src/oidc': { lines: 100, branches: 100 }, 'src/server': { lines: 50, branches: 100 } };
  t.same(verdict(g, { ...floors, 'src/tls': { lines: 95, branches: 80 } }), [], 'exactly at the floor passes');
  const failures = verdict(g, { ...floors, 'src/tls': { lines: 95, branches: 81 } });
  t.equal(failures.length, 1);
  t.match(failures[0], /^src\/tls: branches 80\.00 % is below its threshold of 81 %/);
  const both = verdict(g, { ...floors, 'src/tls': { lines: 96, branches: 81 } });
  t.same(both.map((f) => f.split(':')[0] + ' ' + f.split(' ')[1]), ['src/tls lines', 'src/tls branches']);
});

t.test('a directory without a threshold, or a threshold without data, fails', async (t) => {
  const g = aggregate(SUMMARY, ROOT);
  const failures = verdict(g, {
    src: { lines: 0, branches: 0 },
    'src/oidc': { lines: 0, branches: 0 },
    'src/tls': { lines: 0, branches: 0 },
    'src/gone': { lines: 10, branches: 10 },
  });
  t.same(failures, ['src/gone: no coverage data (no unit or integration test loads it)', 'src/server: no threshold (add it to scripts/coverage-thresholds.json)']);
});

t.test('--raise rounds today\'s measure down, one point under it, and never lowers a floor', async (t) => {
  const g = aggregate(SUMMARY, ROOT);
  const next = raised(g, { 'src/tls': { lines: 97, branches: 10 }, 'src/old': { lines: 5, branches: 5 } });
  t.same(next['src/tls'], { lines: 97, branches: 79 });
  t.same(next['src/server'], { lines: 49, branches: 99 });
  t.same(next['src/old'], { lines: 5, branches: 5 });
  t.same(verdict(g, next), [
    'src/old: no coverage data (no unit or integration test loads it)',
    'src/tls: lines 95.00 % is below its threshold of 97 %',
  ], 'a floor above today stays, and still fails');
  t.match(table(g, next), /src\/tls\s+95\.00 \(97\)\s+80\.00 \(79\)/);
});

t.test('the script exits 1 and names the directory on a fabricated summary', async (t) => {
  // A copy of the script in a scratch tree, so that its own paths point at fabricated files.
  const dir = t.testdir({ scripts: {}, '.tap': { report: {} } });
  const script = join(dir, 'scripts', 'check-coverage.mjs');
  writeFileSync(script, readFileSync(new URL('../../scripts/check-coverage.mjs', import.meta.url)));
  mkdirSync(join(dir, '.tap', 'report'), { recursive: true });
  const summary = {
    [join(dir, 'src/tls/pem.ts')]: entry([90, 100], [30, 40]),
    [join(dir, 'src/kube/client.ts')]: entry([10, 10], [4, 4]),
  };
  writeFileSync(join(dir, '.tap/report/coverage-summary.json'), JSON.stringify(summary));
  const floors = (tls: number) => JSON.stringify({ 'src/kube': { lines: 100, branches: 100 }, 'src/tls': { lines: 90, branches: tls } });
  writeFileSync(join(dir, 'scripts/coverage-thresholds.json'), floors(75));
  const ok = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /src\/tls\s+90\.00 \(90\)\s+75\.00 \(75\)/);
  writeFileSync(join(dir, 'scripts/coverage-thresholds.json'), floors(76));
  const bad = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.equal(bad.stderr.trim(), 'check-coverage: src/tls: branches 75.00 % is below its threshold of 76 %');
});
