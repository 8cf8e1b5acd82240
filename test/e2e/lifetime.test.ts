// Nothing a test starts outlives it: a throwaway parent process starts `serve`,
// or a control plane, the way the test helpers do; the parent is SIGKILLed
// (as tap does to a file past its timeout), and the children must go away.
// Waits end on the processes disappearing; the file's timeout bounds them.
import t from 'tap';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { canTieChildren, processAlive, spawnTied, tiedArgv } from '../helpers/child.js';
import { skipWithoutControlPlane, tempDir } from '../helpers/cluster.js';
import { startFakeApiServer } from '../helpers/fake-apiserver.js';
import { SERVE_COMMAND } from '../helpers/serve-command.js';
import { createTestPki } from '../helpers/tls.js';
import { exitedReason, waitUntil } from '../helpers/wait.js';

const dir = tempDir('piw-lifetime-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// The parent: starts argv (stdin a pipe, as startControlPlane does), and once
// the child says it is up (`ready` matches its stdout), prints the child's pid
// and the first capture group, then idles until it is killed.
const parentScript = join(dir, 'parent.mjs');
writeFileSync(parentScript, `
import { spawn } from 'node:child_process';
const [cmd, ...args] = JSON.parse(process.argv[2]);
const ready = new RegExp(process.argv[3], 'm');
const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
let out = '';
let told = false;
child.stdout.setEncoding('utf8').on('data', (c) => {
  out += c;
  const m = ready.exec(out);
  if (m && !told) {
    told = true;
    process.stdout.write(JSON.stringify({ pid: child.pid, detail: m[1] ?? '' }) + '\\n');
  }
});
child.on('exit', (code, signal) => {
  console.error('parent: the child exited (' + (signal ?? code) + ')');
  process.exit(1);
});
setInterval(() => undefined, 1 << 30);
`);

interface Parent {
  pid: number;
  childPid: number;
  detail: string;
}

/** Starts the parent (itself tied to this test) and resolves once its child is up. */
function startParent(argv: [string, string[]], ready: string): Promise<Parent> {
  const parent = spawnTied(process.execPath, [parentScript, JSON.stringify([argv[0], ...argv[1]]), ready], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  return new Promise((resolve, reject) => {
    parent.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return;
      const info = JSON.parse(line) as { pid: number; detail: string };
      resolve({ pid: parent.pid!, childPid: info.pid, detail: info.detail });
    });
    parent.once('exit', () => reject(new Error(exitedReason(parent, 'the parent', () => out))));
  });
}

const gone = (what: string, pids: number[]): Promise<true> =>
  waitUntil(`${what} (${pids.join(', ')}) to be gone`, () => (pids.every((p) => !processAlive(p)) ? true : undefined));

const tied = canTieChildren();
const noSetpriv = tied ? false : 'setpriv --pdeathsig does not work here (util-linux, Linux only): children are stopped by teardown only';

t.test('a serve child dies with the test process that started it', { skip: noSetpriv }, async (t) => {
  const fake = await startFakeApiServer();
  t.teardown(() => fake.close());
  const pki = createTestPki();
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));
  const serving = pki.issue('lifetime');
  const [cmd, ...rest] = SERVE_COMMAND;
  const args = [...rest, '--kubeconfig', fake.kubeconfigPath, '--tls-cert', serving.certFile, '--tls-key', serving.keyFile, '--port', '0', '--metrics-port', '0', '--bind-address', '127.0.0.1'];
  const parent = await startParent(tiedArgv(cmd, args), '"msg":"webhook listening"');
  t.ok(processAlive(parent.childPid), `serve (${parent.childPid}) is running`);
  process.kill(parent.pid, 'SIGKILL');
  t.ok(await gone('serve', [parent.childPid]), 'serve is gone after its parent was SIGKILLed');
});

const skipControlPlane = noSetpriv || skipWithoutControlPlane();

/** A control plane started by a throwaway parent, as startControlPlane does; its daemons' pids. */
async function controlPlaneParent(name: string): Promise<Parent & { runDir: string; daemons: number[] }> {
  const parent = await startParent(tiedArgv('scripts/controlplane.sh', ['run', name], 'TERM'), '^KUBECONFIG=(.*)$');
  const runDir = dirname(parent.detail);
  const daemons = ['etcd', 'kube-apiserver'].map((d) => Number(readFileSync(join(runDir, `${d}.pid`), 'utf8')));
  return { ...parent, runDir, daemons };
}

t.test('a control plane stops, and its directory goes, when the test process is SIGKILLed', { skip: skipControlPlane }, async (t) => {
  const cp = await controlPlaneParent('lifetime-parent-killed');
  t.ok(cp.daemons.every(processAlive), `etcd and kube-apiserver (${cp.daemons.join(', ')}) are running`);
  process.kill(cp.pid, 'SIGKILL');
  t.ok(await gone('the supervisor, etcd and kube-apiserver', [cp.childPid, ...cp.daemons]), 'supervisor and daemons are gone');
  t.notOk(existsSync(cp.runDir), `the run directory ${cp.runDir} was removed`);
});

t.test('when the supervisor is SIGKILLed too, the daemons still die, and the next run removes what is left', { skip: skipControlPlane }, async (t) => {
  const cp = await controlPlaneParent('lifetime-all-killed');
  // The supervisor first, so it cannot clean up: only the parent-death signal stops the daemons.
  process.kill(cp.childPid, 'SIGKILL');
  process.kill(cp.pid, 'SIGKILL');
  t.ok(await gone('etcd and kube-apiserver', cp.daemons), 'the daemons are gone');
  t.ok(existsSync(cp.runDir), 'the run directory is left behind');
  const next = spawnSync('scripts/controlplane.sh', ['prepare'], { encoding: 'utf8' });
  t.equal(next.status, 0, 'scripts/controlplane.sh prepare exits 0', { stderr: next.stderr });
  t.match(next.stderr, `removing the state of a run that ended without cleaning up: ${cp.runDir}`);
  t.notOk(existsSync(cp.runDir), 'the next run removed it');
});
