// Writing files that another process may be reading at the same moment (a
// server reloading its certificate, a sync job uploading OIDC documents).
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * Replaces `path` with `data` so that readers see either the old or the new
 * content, never a mix: the data goes to a temporary file in the same
 * directory (rename is only atomic within one file system) which then
 * replaces the target.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  // 'wx' never follows or reuses an existing file; the mode applies from creation,
  // so a private key is never readable by others, not even briefly.
  const fd = openSync(tmp, 'wx', mode);
  try {
    try {
      // The umask may have removed bits the caller asked for.
      fchmodSync(fd, mode);
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written);
      // Without this a crash right after the rename can leave an empty file.
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
