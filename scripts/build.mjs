// npm run build: bundles the CLI from src/ into dist/ with esbuild.
//
// One bundle instead of tsc's one file per module: `serve` starts in about
// half the CPU time and ~10 MiB less memory, because Node no longer resolves,
// stats and reads hundreds of package files (node_modules included) one by one.
// Each command is still its own chunk (src/cli.ts imports them dynamically), so
// `serve` loads nothing of `doctor`, `certs` or `oidc`. Types are checked by
// `npm run typecheck` (tsc); esbuild only strips them.
//
// Layout: dist/cli.js is the entry; every other chunk, and the body decoder's
// worker, live in dist/lib/, so code that finds a file next to itself
// (server/body-decoder.ts, cli/version.ts) sits one directory below dist/ as it
// does in src/. The version and commit are compiled in (cli/version.ts).
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

function commit() {
  const fromEnv = process.env['SOURCE_COMMIT'];
  if (fromEnv && /^[0-9a-f]{7,40}$/.test(fromEnv)) return fromEnv.slice(0, 12);
  try {
    const out = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return /^[0-9a-f]{7,40}$/.test(out) ? out : 'unknown';
  } catch {
    return 'unknown';
  }
}

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));
rmSync('dist', { recursive: true, force: true });
const result = await build({
  entryPoints: { cli: 'src/cli.ts', 'lib/body-decoder-worker': 'src/server/body-decoder-worker.ts' },
  outdir: 'dist',
  chunkNames: 'lib/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  sourcemap: 'linked',
  // CommonJS packages inside an ES module bundle still call require().
  banner: { js: "import { createRequire as __piwCreateRequire } from 'node:module'; const require = __piwCreateRequire(import.meta.url);" },
  // fastify loads its schema compilers only for routes with schemas, and the
  // webhook has none (server/app.ts): left out, they are ~0.8 MiB less to parse.
  // Should one ever be needed, it comes from node_modules.
  external: ['@fastify/ajv-compiler', '@fastify/fast-json-stringify-compiler'],
  define: { __BUILD_INFO__: JSON.stringify({ version, commit: commit() }) },
  logLevel: 'warning',
  metafile: true,
});
if (result.errors.length > 0 || result.warnings.length > 0) process.exit(1);
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`dist/: ${Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js')).length} files, ${(bytes / 1024 / 1024).toFixed(1)} MiB (source maps included)`);
