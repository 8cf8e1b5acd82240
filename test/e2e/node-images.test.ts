// The first part of the test node (issue #13): images built here without a
// registry are imported into a containerd of the test's own (state, root and
// socket under a temporary directory), and the sandbox ("pause") image runs
// under runc and stops on SIGTERM.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import t from 'tap';
import { spawnTied } from '../helpers/child.js';
import { CONTROLPLANE_CACHE, tempDir } from '../helpers/cluster.js';
import { buildImage, buildPause } from '../helpers/oci-image.js';
import { waitUntil } from '../helpers/wait.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: containerd needs root';
  for (const cmd of ['containerd', 'ctr', 'runc', 'go']) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status !== 0) return `${cmd} is not installed`;
  }
  if (!existsSync('/sys/fs/cgroup')) return 'no /sys/fs/cgroup';
  return undefined;
}

const why = missing();
if (why) {
  // Only where containerd cannot run at all (not root, no cgroups) is a skip allowed in CI.
  const cannotRun = why.startsWith('not root') || why.startsWith('no /sys');
  if (!cannotRun && process.env['CI'] && process.env['CI'] !== 'false') throw new Error(`CI is set, and the node tests cannot run: ${why}`);
  t.skip(`node images: ${why}`, () => undefined);
} else {
  t.test('a locally built pause image imports into containerd and runs until SIGTERM', async (t) => {
    const dir = tempDir('piw-node-images-');
    const sock = join(dir, 'containerd.sock');
    const ctr = (...args: string[]) => spawnSync('ctr', ['--address', sock, '-n', 'k8s.io', ...args], { encoding: 'utf8', timeout: 120_000 });

    const rootfs = join(dir, 'rootfs');
    mkdirSync(rootfs);
    buildPause(ROOT, join(rootfs, 'pause'), CONTROLPLANE_CACHE);
    const image = buildImage({ rootfs, name: 'docker.io/library/piw-pause:test', entrypoint: ['/pause'] }, join(dir, 'build'));

    const config = join(dir, 'config.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = "${join(dir, 'root')}"`,
        `state = "${join(dir, 'state')}"`,
        `[grpc]\n  address = "${sock}"`,
        // No CRI here: this test only drives containerd through ctr.
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      ].join('\n'),
    );
    chmodSync(dir, 0o755);
    let log = '';
    const daemon = spawnTied('containerd', ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    daemon.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
    });
    t.teardown(async () => {
      ctr('tasks', 'kill', '-s', 'SIGKILL', 'pause-test');
      ctr('tasks', 'delete', '-f', 'pause-test');
      ctr('containers', 'delete', 'pause-test');
      daemon.kill('SIGTERM');
      await new Promise((r) => (daemon.exitCode === null ? daemon.once('exit', r) : r(undefined)));
      spawnSync('sh', ['-c', `grep -F '${dir}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l`]);
      rmSync(dir, { recursive: true, force: true });
    });
    await waitUntil('containerd to serve', () => (ctr('version').status === 0 ? true : undefined));

    const imported = ctr('images', 'import', image.archive);
    t.equal(imported.status, 0, `ctr images import: ${imported.stderr}`);
    const list = ctr('images', 'ls');
    t.match(list.stdout, 'docker.io/library/piw-pause:test');
    t.match(list.stdout, image.manifestDigest);

    const run = ctr('run', '-d', 'docker.io/library/piw-pause:test', 'pause-test');
    t.equal(run.status, 0, `ctr run: ${run.stderr}\n${log.slice(-2000)}`);
    await waitUntil('the pause task to run', () => (/pause-test\s+\d+\s+RUNNING/.test(ctr('tasks', 'ls').stdout) ? true : undefined));
    t.equal(ctr('tasks', 'kill', '-s', 'SIGTERM', 'pause-test').status, 0);
    await waitUntil('the pause task to stop on SIGTERM', () => (/pause-test\s+\d+\s+STOPPED/.test(ctr('tasks', 'ls').stdout) ? true : undefined));
  });
}
