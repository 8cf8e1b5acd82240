// The exact argv that starts the webhook server, before any flags. The
// Dockerfile's ENTRYPOINT (+ CMD) must equal it (test/unit/dockerfile.test.ts),
// and the end-to-end suite starts the server with it, so both run the same thing.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

export const SERVE_COMMAND = ['node', 'dist/cli.js', 'serve'] as const;

export interface CliResult { status: number; stdout: string; stderr: string }

/** One command of the built CLI, run to its end with its output captured. */
export function cli(args: string[]): CliResult {
  const [, entry] = SERVE_COMMAND;
  const r = spawnSync(process.execPath, [entry, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
