import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keepTempDirs, registerTempDir } from './cleanup.ts';

/** A temporary directory that is removed by {@link TempDir.remove} or, at the latest, at process exit. */
export interface TempDir {
  /** Absolute path of the directory. */
  readonly path: string;
  /** Removes the directory recursively (kept when `HARNESS_KEEP_TMP=1`). Idempotent. */
  remove(): Promise<void>;
}

/**
 * Creates a fresh directory under the OS temp dir (`/tmp/esp32hub-<label>-XXXXXX`).
 * Set `HARNESS_KEEP_TMP=1` to keep it for inspection after the run.
 */
export async function tempDir(label = 'test'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `esp32hub-${label}-`));
  const unregister = registerTempDir(path);
  return {
    path,
    async remove() {
      unregister();
      if (!keepTempDirs()) await rm(path, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
