// The program's root command, with the settings every subcommand shares
// (usage errors exit 2, --version), apart from the subcommands themselves so
// that `serve` can start without loading the others (certificate, doctor and
// OIDC code cost it ~10 MiB and ~0.5 s).
import { Command, CommanderError } from 'commander';
import type { CommandIO } from './mutate.js';
import { versionLine } from './version.js';

export function rootCommand(io: CommandIO, commands: readonly Command[]): Command {
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
  for (const cmd of commands) {
    // Subcommands share the program's error handling: usage errors exit 2.
    program.addCommand(cmd.copyInheritedSettings(program));
  }
  return program;
}

/** `serve` alone: what the webhook's process loads, and nothing else. */
export async function buildServeProgram(io: CommandIO): Promise<Command> {
  const { serveCommand } = await import('./serve.js');
  return rootCommand(io, [serveCommand(versionLine())]);
}
