// Running one CLI command in-process the way src/cli.ts does, with its output
// captured: exit code 2 for usage errors, the command's own code otherwise.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import type { Test } from 'tap';
import { UsageError } from '../../src/cli/flags.js';
import type { CommandIO } from '../../src/cli/mutate.js';

export interface Captured {
  out: string[];
  err: string[];
  io: CommandIO;
}

export function capture(): Captured {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (s) => out.push(s), stderr: (s) => err.push(s) } };
}

/** A temporary directory holding `files`, removed when the test ends. */
export function tmp(t: Test, prefix: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function runCommand(
  make: (io: CommandIO) => Command,
  args: string[],
): Promise<{ code: number; out: string[]; err: string[] }> {
  const c = capture();
  const program = new Command('pod-identity-webhook').exitOverride().configureOutput({ writeErr: (s) => c.err.push(s.trimEnd()), writeOut: () => {} });
  const command = make(c.io);
  program.addCommand(command.copyInheritedSettings(program));
  const before = process.exitCode;
  try {
    await program.parseAsync(['node', 'cli', command.name(), ...args]);
    return { code: Number(process.exitCode ?? 0), out: c.out, err: c.err };
  } catch (err) {
    if (err instanceof CommanderError) return { code: err.exitCode === 0 ? 0 : 2, out: c.out, err: c.err };
    if (err instanceof UsageError) return { code: 2, out: c.out, err: [...c.err, `error: ${err.message}`] };
    throw err;
  } finally {
    process.exitCode = before;
  }
}
