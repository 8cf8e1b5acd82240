// Container images for the test node, built here without a registry or
// docker: a root filesystem directory becomes one uncompressed layer (tar),
// written with its config, manifest and index as an OCI image layout
// (https://github.com/opencontainers/image-spec, layout + manifest), then
// packed into one archive that `ctr -n k8s.io images import` accepts.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface ImageSpec {
  /** Directory whose contents become the image's root filesystem. */
  rootfs: string;
  /** Full reference, e.g. `docker.io/library/piw-pause:1`. */
  name: string;
  entrypoint: string[];
  env?: string[];
  user?: string;
}

export interface BuiltImage {
  /** The archive for `ctr images import`. */
  archive: string;
  /** The manifest digest (`sha256:...`). */
  manifestDigest: string;
  /** The config digest: containerd's image id. */
  configDigest: string;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Writes blob `data` under `layout/blobs/sha256/`, returns its descriptor. */
function blob(layout: string, mediaType: string, data: Buffer): { mediaType: string; digest: string; size: number } {
  const hex = sha256(data);
  writeFileSync(join(layout, 'blobs', 'sha256', hex), data);
  return { mediaType, digest: `sha256:${hex}`, size: data.length };
}

/**
 * Builds the image of `spec` in `workDir` (a fresh directory) and returns
 * its archive. File owners in the layer are root (`--owner=0 --group=0`),
 * modes are kept, so the image does not depend on who built it.
 */
export function buildImage(spec: ImageSpec, workDir: string): BuiltImage {
  const layout = join(workDir, 'layout');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const layerTar = join(workDir, 'layer.tar');
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', spec.rootfs, '-cf', layerTar, '.']);
  const layerData = readFileSync(layerTar);
  const layer = blob(layout, 'application/vnd.oci.image.layer.v1.tar', layerData);
  const config = blob(
    layout,
    'application/vnd.oci.image.config.v1+json',
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Entrypoint: spec.entrypoint, Env: spec.env ?? [], User: spec.user ?? '' },
        // The uncompressed layer is its own diff id.
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  );
  const manifest = blob(
    layout,
    'application/vnd.oci.image.manifest.v1+json',
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] })),
  );
  const tag = spec.name.slice(spec.name.lastIndexOf(':') + 1);
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          ...manifest,
          // containerd names the imported image after this annotation.
          annotations: { 'io.containerd.image.name': spec.name, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  const archive = join(workDir, 'image.tar');
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', archive, '.']);
  return { archive, manifestDigest: manifest.digest, configDigest: config.digest };
}

/** Builds the static pause program of test/controlplane/pause into `out`. */
export function buildPause(root: string, out: string, cacheDir: string): void {
  const r = spawnSync('go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', out, '.'], {
    cwd: join(root, 'test', 'controlplane', 'pause'),
    env: { ...process.env, CGO_ENABLED: '0', GOCACHE: join(cacheDir, 'gocache'), GOFLAGS: '-mod=readonly -buildvcs=false' },
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`building pause failed: ${r.stderr}`);
}

/**
 * Puts this process's Node binary into `rootfs` as /usr/local/bin/node, with
 * the shared libraries it loads (from `ldd`) at their own paths: enough to
 * run scripts in a container, with no distribution underneath.
 */
export function addNode(rootfs: string): string {
  const target = join(rootfs, 'usr', 'local', 'bin', 'node');
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(process.execPath, target);
  const ldd = spawnSync('ldd', [process.execPath], { encoding: 'utf8' });
  if (ldd.status !== 0) throw new Error(`ldd ${process.execPath} failed: ${ldd.stderr}`);
  // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
  for (const m of ldd.stdout.matchAll(/(?:=> )?(\/\S+) \(0x[0-9a-f]+\)/g)) {
    const lib = m[1]!;
    mkdirSync(join(rootfs, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(rootfs, lib)); // follows symlinks: the file under the link's name
  }
  return '/usr/local/bin/node';
}

/**
 * Copies the packages `names` and everything they depend on (package.json
 * `dependencies`, resolved as Node does: nested node_modules first, then the
 * top level) from `nodeModules` to `out`.
 */
export function copyPackages(nodeModules: string, names: string[], out: string): void {
  const seen = new Set<string>();
  const visit = (dir: string): void => {
    if (seen.has(dir)) return;
    seen.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) {
      const nested = join(dir, 'node_modules', dep);
      if (existsSync(nested)) {
        visit(nested); // copied with its parent
        continue;
      }
      const top = join(nodeModules, dep);
      if (!existsSync(top)) throw new Error(`${dep} (a dependency of ${dir}) is not installed`);
      if (!seen.has(top)) cpSync(top, join(out, dep), { recursive: true, dereference: true });
      visit(top);
    }
  };
  for (const name of names) {
    const dir = join(nodeModules, name);
    cpSync(dir, join(out, name), { recursive: true, dereference: true });
    visit(dir);
  }
}
