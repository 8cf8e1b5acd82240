// What `--version` prints: the package version, the commit it was built from
// and the Node.js running it. `npm run build` compiles both into the bundle
// (scripts/build.mjs); run from source, they come from package.json and git,
// and a commit git cannot tell is "unknown".
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

declare const __BUILD_INFO__: { version: string; commit: string } | undefined;

const ROOT = new URL('../../', import.meta.url);

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

export function versionInfo(): VersionInfo {
  if (typeof __BUILD_INFO__ !== 'undefined') return { ...__BUILD_INFO__, node: process.version };
  const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string };
  return { version: pkg.version, commit: gitCommit() ?? 'unknown', node: process.version };
}

export function versionLine(info: VersionInfo = versionInfo()): string {
  return `${info.version} (commit ${info.commit}, Node.js ${info.node})`;
}
