// The identities file (--watch-container-credentials-config), kept current:
// reloaded when it changes (including a ConfigMap volume's symlink swap); an
// invalid file keeps the last good set.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { type FileWatch, watchFiles } from '../files/watch.js';
import { type ContainerCredentialsIdentities, parseContainerCredentialsConfig } from '../settings/container-credentials.js';

export interface ContainerCredentialsFile {
  current(): ContainerCredentialsIdentities;
  /** False until the file has been read successfully once. */
  loaded(): boolean;
  close(): void;
}

export function watchContainerCredentialsFile(
  path: string,
  logger: Logger,
  onReload: (result: 'success' | 'error') => void = () => undefined,
  pollMs?: number,
): ContainerCredentialsFile {
  let identities: ContainerCredentialsIdentities = new Set();
  let ok = false;
  const apply = (text: string): void => {
    try {
      identities = parseContainerCredentialsConfig(text);
      ok = true;
      logger.info({ file: path, identities: identities.size }, 'container-credentials identities loaded');
      onReload('success');
    } catch (err) {
      logger.error({ file: path, err: (err as Error).message }, 'invalid container-credentials identities file; keeping the last good one');
      onReload('error');
    }
  };
  let initial: string | undefined;
  try {
    initial = readFileSync(path, 'utf8');
    apply(initial);
  } catch (err) {
    logger.error({ file: path, err: (err as Error).message }, 'cannot read the container-credentials identities file');
  }
  const watch: FileWatch = watchFiles(
    [path],
    initial === undefined ? undefined : [initial],
    ([text]) => apply(text ?? ''),
    (err) => logger.error({ file: path, err: err.message }, 'cannot read the container-credentials identities file'),
    pollMs === undefined ? {} : { pollMs },
  );
  return { current: () => identities, loaded: () => ok, close: () => watch.close() };
}
