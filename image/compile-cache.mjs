// node compile-cache.mjs DIR: run by the Dockerfile's compile-cache stage, as
// the runtime's user (Node names the cache's directory after the UID) and with
// the runtime's node. It starts `serve` where there is no API server: serve
// loads every module it needs at start, finds no API server and exits, and on
// exit Node writes the modules' compiled code to DIR (its NODE_COMPILE_CACHE).
// The runtime image carries DIR, read-only, and serve compiles less at start.
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node compile-cache.mjs DIR');
// Only serve's modules: this script's own process keeps no cache.
const run = spawnSync(process.execPath, ['dist/cli.js', 'serve'], { encoding: 'utf8', env: { ...process.env, NODE_COMPILE_CACHE: dir } });
if (!/no API server/.test(run.stderr)) {
  throw new Error(`serve was expected to stop for want of an API server (exit ${run.status}):\n${run.stderr}`);
}
// Node writes the files for its user alone; the runtime's files belong to root and are read by 65532.
let files = 0;
for (const name of readdirSync(dir, { recursive: true })) {
  const path = join(dir, name);
  const directory = statSync(path).isDirectory();
  chmodSync(path, directory ? 0o755 : 0o644);
  if (!directory) files++;
}
chmodSync(dir, 0o755);
if (files < 5) throw new Error(`the compile cache holds ${files} files: serve no longer loads its modules before it looks for an API server`);
console.log(`compile cache: ${files} modules`);
