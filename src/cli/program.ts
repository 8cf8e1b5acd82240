// The program: every subcommand, with shared error handling and --version.
import { Command, CommanderError } from 'commander';
import { certsCommand } from './certs.js';
import { completionCommand } from './completion.js';
import { doctorCommand } from './doctor.js';
import { type CommandIO, mutateCommand } from './mutate.js';
import { oidcCommand } from './oidc.js';
import { serveCommand } from './serve.js';
import { versionLine } from './version.js';

export function buildProgram(io: CommandIO): Command {
  const program: Command = new Command('pod-identity-webhook')
    .description('Kubernetes admission webhook that gives pods AWS IAM credentials (IRSA, EKS Pod Identity)')
    .option('--version', 'print the version, the commit it was built from and the Node.js version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(true);
  // Read only when asked: finding the commit may mean running git.
  program.on('option:version', () => {
    io.stdout(versionLine());
    throw new CommanderError(0, 'commander.version', '');
  });
  const commands = [mutateCommand(io), serveCommand(versionLine()), certsCommand(io), oidcCommand(io), doctorCommand(io), completionCommand(io, () => program)];
  for (const cmd of commands) {
    // Subcommands share the program's error handling: usage errors exit 2.
    program.addCommand(cmd.copyInheritedSettings(program));
  }
  return program;
}
