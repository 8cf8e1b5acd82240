// `completion bash|zsh|fish`: shell completion scripts generated from the
// program's own commands and options, so they never fall behind the CLI.
import { Argument, Command, type Option } from 'commander';
import type { CommandIO } from './mutate.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

interface OptionSpec {
  short?: string;
  long: string;
  description: string;
  /** Takes a value. */
  value: boolean;
  /** A value that names a file or directory. */
  file: boolean;
  choices?: readonly string[];
}

interface CommandSpec {
  name: string;
  description: string;
  options: OptionSpec[];
  /** Values of the first argument, when they are a fixed list. */
  argChoices?: readonly string[];
}

function optionSpec(o: Option): OptionSpec | undefined {
  if (!o.long || o.hidden) return undefined;
  const placeholder = /<([^>]+)>|\[([^\]]+)\]/.exec(o.flags);
  const what = (placeholder?.[1] ?? placeholder?.[2] ?? '').toLowerCase();
  return {
    ...(o.short ? { short: o.short } : {}),
    long: o.long,
    description: o.description,
    // Optional values ([bool]) complete as plain flags.
    value: Boolean(o.required),
    file: what === 'file' || what === 'dir',
    ...(o.argChoices ? { choices: o.argChoices } : {}),
  };
}

const HELP: OptionSpec = { short: '-h', long: '--help', description: 'display help', value: false, file: false };

function commandSpecs(program: Command): { commands: CommandSpec[]; global: OptionSpec[] } {
  const commands = program.commands.map((c) => {
    const choices = (c.registeredArguments[0])?.argChoices;
    return {
      name: c.name(),
      description: c.description(),
      options: [...c.options.map(optionSpec).filter((o): o is OptionSpec => o !== undefined), HELP],
      ...(choices ? { argChoices: choices } : {}),
    };
  });
  return { commands, global: [...program.options.map(optionSpec).filter((o): o is OptionSpec => o !== undefined), HELP] };
}

const flagsOf = (o: OptionSpec): string[] => (o.short ? [o.short, o.long] : [o.long]);
const words = (list: readonly string[]): string => list.join(' ');

function bash(name: string, program: Command): string {
  const { commands, global } = commandSpecs(program);
  const fn = `_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  const cases = commands.map((c) => {
    const valueCases = c.options.filter((o) => o.value).map((o) => {
      const action = o.choices ? `COMPREPLY=($(compgen -W "${words(o.choices)}" -- "$cur"))`
        : o.file ? 'COMPREPLY=($(compgen -f -- "$cur"))'
          : 'COMPREPLY=()';
      return `        ${flagsOf(o).join('|')}) ${action}; return ;;`;
    });
    const args = c.argChoices ? `      if [[ $cur != -* ]]; then COMPREPLY=($(compgen -W "${words(c.argChoices)}" -- "$cur")); return; fi\n` : '';
    return [
      `    ${c.name})`,
      ...(valueCases.length > 0 ? ['      case "$prev" in', ...valueCases, '      esac'] : []),
      args + `      COMPREPLY=($(compgen -W "${words(c.options.flatMap((o) => flagsOf(o)))}" -- "$cur"))`,
      '      ;;',
    ].join('\n');
  });
  return `# bash completion for ${name}; load it with
#   source <(${name} completion bash)
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmd="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  case "$cmd" in
    "") COMPREPLY=($(compgen -W "${words([...commands.map((c) => c.name), ...global.flatMap((o) => flagsOf(o))])}" -- "$cur")) ;;
${cases.join('\n')}
  esac
}
complete -o default -F ${fn} ${name}
`;
}

/** Text inside a single-quoted zsh _arguments spec: [] and : are special. */
const zq = (s: string): string => s.replace(/([[\]:\\])/g, '\\$1').replace(/'/g, `'\\''`);
/** Text inside a single-quoted zsh string. */
const sq = (s: string): string => s.replace(/'/g, `'\\''`);

function zsh(name: string, program: Command): string {
  const { commands, global } = commandSpecs(program);
  const fn = `_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  const spec = (o: OptionSpec): string => {
    const action = !o.value ? '' : o.choices ? `:value:(${words(o.choices)})` : o.file ? ':file:_files' : ':value: ';
    const desc = `[${zq(o.description)}]${action}`;
    return o.short ? `'(${o.short} ${o.long})'{${o.short},${o.long}}'${desc}'` : `'${o.long}${desc}'`;
  };
  const cases = commands.map((c) => {
    const args = c.argChoices ? ` '1:${c.name}:(${words(c.argChoices)})'` : '';
    return `        ${c.name}) _arguments -s ${c.options.map(spec).join(' ')}${args} ;;`;
  });
  return `#compdef ${name}
# zsh completion for ${name}; load it with
#   source <(${name} completion zsh)
# or save it as _${name} in a directory of $fpath.
${fn}() {
  local -a commands
  commands=(
${commands.map((c) => `    '${c.name}:${sq(c.description)}'`).join('\n')}
  )
  local state line
  _arguments -C ${global.map(spec).join(' ')} '1: :->command' '*:: :->args'
  case $state in
    command) _describe -t commands command commands ;;
    args)
      case $line[1] in
${cases.join('\n')}
      esac
      ;;
  esac
}
if [[ $funcstack[1] = ${fn} ]]; then
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}

/** Text inside a single-quoted fish string. */
const fq = (s: string): string => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'");

function fish(name: string, program: Command): string {
  const { commands, global } = commandSpecs(program);
  const names = words(commands.map((c) => c.name));
  const line = (cond: string, o: OptionSpec): string => {
    const flags = [o.short ? `-s ${o.short.slice(1)}` : '', `-l ${o.long.slice(2)}`].filter((s) => s !== '').join(' ');
    const value = !o.value ? '' : o.choices ? ` -x -a '${words(o.choices)}'` : o.file ? ' -r -F' : ' -x';
    return `complete -c ${name} -n '${cond}' ${flags}${value} -d '${fq(o.description)}'`;
  };
  const out = [
    `# fish completion for ${name}; load it with`,
    `#   ${name} completion fish | source`,
    `complete -c ${name} -f`,
    ...commands.map((c) => `complete -c ${name} -n 'not __fish_seen_subcommand_from ${names}' -a ${c.name} -d '${fq(c.description)}'`),
    ...global.map((o) => line(`not __fish_seen_subcommand_from ${names}`, o)),
  ];
  for (const c of commands) {
    const cond = `__fish_seen_subcommand_from ${c.name}`;
    out.push(...c.options.map((o) => line(cond, o)));
    if (c.argChoices) out.push(`complete -c ${name} -n '${cond}' -a '${words(c.argChoices)}'`);
  }
  return `${out.join('\n')}\n`;
}

export function completionScript(shell: Shell, program: Command): string {
  const name = program.name();
  return shell === 'bash' ? bash(name, program) : shell === 'zsh' ? zsh(name, program) : fish(name, program);
}

/** `program` is read when the command runs, so the script covers every command added after this one. */
export function completionCommand(io: CommandIO, program: () => Command): Command {
  return new Command('completion')
    .description('print a shell completion script: bash, zsh or fish')
    .addArgument(new Argument('<shell>', 'the shell').choices(SHELLS))
    .addHelpText('after', `
Load it in the current shell:
  bash:  source <(pod-identity-webhook completion bash)
  zsh:   source <(pod-identity-webhook completion zsh)
  fish:  pod-identity-webhook completion fish | source`)
    .action((shell: Shell) => {
      io.stdout(completionScript(shell, program()).trimEnd());
    });
}
