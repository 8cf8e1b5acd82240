#!/usr/bin/env node
// Per-directory coverage floor. tap writes istanbul's json-summary of src/ (as
// measured by the unit and integration tests) to .tap/report/coverage-summary.json;
// this sums its lines and branches per src/ subdirectory, prints a table, and
// exits 1 naming every directory and metric under its floor in
// scripts/coverage-thresholds.json (files directly in src/ count as "src").
//
//   node scripts/check-coverage.mjs            check (npm test runs this after tap)
//   node scripts/check-coverage.mjs --raise    raise each floor to today's measure, rounded down, less SLACK
//   node scripts/check-coverage.mjs FILE       check another json-summary
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const METRICS = ['lines', 'branches'];
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SUMMARY = resolve(ROOT, '.tap/report/coverage-summary.json');
export const THRESHOLDS = resolve(ROOT, 'scripts/coverage-thresholds.json');

/** The group a source file counts for: "src/<first directory>", or "src" for files directly in src/. */
export function groupOf(file) {
  const parts = file.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0];
}

const pct = (covered, total) => (total === 0 ? 100 : (covered / total) * 100);

/**
 * Sums an istanbul json-summary (absolute file paths as keys) per group of the
 * files under root/src: { "src/tls": { lines: { covered, total, pct }, branches: {...} } }.
 */
export function aggregate(summary, root) {
  const groups = {};
  for (const [key, entry] of Object.entries(summary)) {
    if (key === 'total') continue;
    const file = relative(root, key).split(sep).join('/');
    if (!file.startsWith('src/')) continue;
    const g = (groups[groupOf(file)] ??= Object.fromEntries(METRICS.map((m) => [m, { covered: 0, total: 0, pct: 100 }])));
    for (const m of METRICS) {
      g[m].covered += entry[m].covered;
      g[m].total += entry[m].total;
      g[m].pct = pct(g[m].covered, g[m].total);
    }
  }
  return groups;
}

/**
 * What falls short: a metric under its floor, a directory with a floor but no
 * coverage data (no test loaded it), a directory measured without a floor.
 */
export function verdict(groups, thresholds) {
  const failures = [];
  for (const [dir, floors] of Object.entries(thresholds)) {
    const g = groups[dir];
    if (!g) {
      failures.push(`${dir}: no coverage data (no unit or integration test loads it)`);
      continue;
    }
    for (const m of METRICS) {
      if (floors[m] !== undefined && g[m].pct < floors[m]) {
        failures.push(`${dir}: ${m} ${g[m].pct.toFixed(2)} % is below its threshold of ${floors[m]} %`);
      }
    }
  }
  for (const dir of Object.keys(groups)) {
    if (!thresholds[dir]) failures.push(`${dir}: no threshold (add it to scripts/coverage-thresholds.json)`);
  }
  return failures;
}

/**
 * How far under the measure a raised floor sits: paths that depend on timing
 * (certificate renewal, reflector retries, TLS handshakes) are taken in one run
 * and not the next, which moves a directory by up to a point.
 */
export const SLACK = 1;

/** Each floor raised to today's measure rounded down, less SLACK; never lowered. */
export function raised(groups, thresholds) {
  const out = {};
  for (const dir of Object.keys({ ...thresholds, ...groups }).sort()) {
    out[dir] = {};
    for (const m of METRICS) {
      const now = groups[dir] ? Math.max(0, Math.floor(groups[dir][m].pct) - SLACK) : 0;
      out[dir][m] = Math.max(thresholds[dir]?.[m] ?? 0, now);
    }
  }
  return out;
}

/** A plain-text table: directory, then measured % (floor) per metric. */
export function table(groups, thresholds) {
  const rows = [['directory', ...METRICS.map((m) => `${m} % (min)`)]];
  for (const dir of Object.keys(groups).sort()) {
    rows.push([dir, ...METRICS.map((m) => `${groups[dir][m].pct.toFixed(2)} (${thresholds[dir]?.[m] ?? '-'})`)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')).join('\n');
}

function main(args) {
  const file = args.find((a) => !a.startsWith('--')) ?? SUMMARY;
  let summary;
  try {
    summary = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    console.error(`check-coverage: cannot read ${relative(ROOT, file)} (run the unit and integration tests with tap first): ${err.message}`);
    return 2;
  }
  const thresholds = JSON.parse(readFileSync(THRESHOLDS, 'utf8'));
  const groups = aggregate(summary, ROOT);
  if (args.includes('--raise')) {
    const next = raised(groups, thresholds);
    writeFileSync(THRESHOLDS, JSON.stringify(next, null, 2) + '\n');
    console.log(table(groups, next));
    console.log(`check-coverage: wrote ${relative(ROOT, THRESHOLDS)}`);
    return 0;
  }
  console.log(table(groups, thresholds));
  const failures = verdict(groups, thresholds);
  for (const f of failures) console.error(`check-coverage: ${f}`);
  if (failures.length === 0) console.log('check-coverage: every directory is at or above its threshold');
  return failures.length === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
