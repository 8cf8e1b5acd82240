#!/usr/bin/env node
// The pod-identity-webhook command line: one subcommand per file in cli/.
import { CommanderError } from 'commander';
import { CommandError, UsageError } from './cli/flags.js';
import type { CommandIO } from './cli/mutate.js';
import { holdYoungGeneration } from './server/heap.js';

const io: CommandIO = {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
};

async function main(): Promise<void> {
  try {
    // The webhook's own process loads only what `serve` needs, and keeps its
    // young generation small (server/heap.ts).
    if (process.argv[2] === 'serve') holdYoungGeneration();
    const program =
      process.argv[2] === 'serve'
        ? await (await import('./cli/root.js')).buildServeProgram(io)
        : (await import('./cli/program.js')).buildProgram(io);
    await program.parseAsync(process.argv);
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
