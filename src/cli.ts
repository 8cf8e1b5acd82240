#!/usr/bin/env node
// The pod-identity-webhook command line: one subcommand per file in cli/.
import { CommanderError } from 'commander';
import { CommandError, UsageError } from './cli/flags.js';
import type { CommandIO } from './cli/mutate.js';
import { buildProgram } from './cli/program.js';

const io: CommandIO = {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
};

async function main(): Promise<void> {
  try {
    await buildProgram(io).parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version end with code 0; every other parse error is a usage error.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof UsageError || err instanceof CommandError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
      return;
    }
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}

await main();
