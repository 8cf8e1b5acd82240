#!/usr/bin/env node
// The pod-identity-webhook command line: one subcommand per file in cli/.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CommandError, UsageError } from './cli/flags.js';
import { mutateCommand, type CommandIO } from './cli/mutate.js';
import { serveCommand } from './cli/serve.js';
import { certsCommand } from './cli/certs.js';
import { oidcCommand } from './cli/oidc.js';
import { doctorCommand } from './cli/doctor.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const io: CommandIO = {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
};

export function buildProgram(): Command {
  const program = new Command('pod-identity-webhook')
    .description('Kubernetes admission webhook that gives pods AWS IAM credentials (IRSA, EKS Pod Identity)')
    .version(pkg.version, '--version', 'print the version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true);
  for (const cmd of [mutateCommand(io), serveCommand(pkg.version), certsCommand(io), oidcCommand(io), doctorCommand(io)]) {
    // Subcommands share the program's error handling: usage errors exit 2.
    program.addCommand(cmd.copyInheritedSettings(program));
  }
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
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
