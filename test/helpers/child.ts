// Child processes that die with the test file that started them, however it
// ends (a failed assertion, tap's timeout, SIGKILL): Linux's parent-death
// signal, set by util-linux `setpriv --pdeathsig` before it execs the command
// (so the pid, signals and exit code are the command's own). Where setpriv is
// missing, the child is started as is, and only the test's own teardown stops it.
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let deathsig: boolean | undefined;

/** Whether children can be tied to this process (setpriv --pdeathsig works here). */
export function canTieChildren(): boolean {
  deathsig ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true'], { stdio: 'ignore' }).status === 0;
  return deathsig;
}

/** The argv that runs `cmd args` so that it gets `signal` when this process dies. */
export function tiedArgv(cmd: string, args: readonly string[], signal: 'KILL' | 'TERM' = 'KILL'): [string, string[]] {
  return canTieChildren() ? ['setpriv', ['--pdeathsig', signal, cmd, ...args]] : [cmd, [...args]];
}

/** spawn(), with the child tied to this process (see above). */
export function spawnTied(cmd: string, args: readonly string[], options: SpawnOptions, signal: 'KILL' | 'TERM' = 'KILL'): ChildProcess {
  const [c, a] = tiedArgv(cmd, args, signal);
  return spawn(c, a, options);
}

/** Whether `pid` is a live process (not gone, not a zombie waiting to be reaped). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return process.platform !== 'linux'; // gone, or no /proc to tell a zombie from a live process
  }
  // "pid (comm) S ...": comm may hold spaces and parentheses.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}
