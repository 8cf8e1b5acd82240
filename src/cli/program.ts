// The program: every subcommand, with shared error handling and --version.
import type { Command } from 'commander';
import { certsCommand } from './certs.js';
import { completionCommand } from './completion.js';
import { doctorCommand } from './doctor.js';
import { type CommandIO, mutateCommand } from './mutate.js';
import { oidcCommand } from './oidc.js';
import { rootCommand } from './root.js';
import { serveCommand } from './serve.js';
import { versionLine } from './version.js';

export function buildProgram(io: CommandIO): Command {
  const commands: Command[] = [mutateCommand(io), serveCommand(versionLine()), certsCommand(io), oidcCommand(io), doctorCommand(io)];
  const program = rootCommand(io, commands);
  // completion reads the program it belongs to.
  program.addCommand(completionCommand(io, () => program).copyInheritedSettings(program));
  return program;
}
