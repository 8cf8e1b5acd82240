// Container images for the test node, built here without a registry or
// docker: a root filesystem directory becomes one uncompressed layer (tar),
// written with its config, manifest and index as an OCI image layout
// (https://github.com/opencontainers/image-spec, layout + manifest), then
// packed into one archive that `ctr -n k8s.io images import` accepts.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
