// What `--version` prints: the package version, the commit it was built from
// and the Node.js running it. The commit is written next to the compiled code
// by `npm run build` (dist/build-info.json); a checkout without a build asks
// git; anything else says "unknown".
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = new URL('../../', import.meta.url);
const BUILD_INFO = new URL('../build-info.json', import.meta.url);

export interface VersionInfo {
  version: string;
  commit: string;
  node: string;
}

/** The checkout's HEAD commit, or undefined outside a git checkout. */
function gitCommit(): string | undefined {
  if (!existsSync(new URL('.git', ROOT))) return undefined;
  try {
    const out = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], {
      cwd: fileURLToPath(ROOT), encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return /^[0-9a-f]{7,40}$/.test(out) ? out : undefined;
  } catch {
    return undefined;
  }
}

function builtCommit(): string | undefined {
  try {
    const info = JSON.parse(readFileSync(BUILD_INFO, 'utf8')) as { commit?: unknown };
    return typeof info.commit === 'string' && info.commit !== '' ? info.commit : undefined;
  } catch {
    return undefined;
  }
}

export function versionInfo(): VersionInfo {
  const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string };
  return { version: pkg.version, commit: builtCommit() ?? gitCommit() ?? 'unknown', node: process.version };
}

export function versionLine(info: VersionInfo = versionInfo()): string {
  return `${info.version} (commit ${info.commit}, Node.js ${info.node})`;
}

/**
 * Run by `npm run build`: records the commit in dist/build-info.json.
 * SOURCE_COMMIT names it where there is no .git (a container build).
 */
export function writeBuildInfo(): void {
  const fromEnv = process.env['SOURCE_COMMIT'];
  const commit = fromEnv && /^[0-9a-f]{7,40}$/.test(fromEnv) ? fromEnv.slice(0, 12) : gitCommit();
  writeFileSync(BUILD_INFO, `${JSON.stringify({ commit: commit ?? 'unknown' })}\n`);
}
