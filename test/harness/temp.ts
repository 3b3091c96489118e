import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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
  sweepOrphansOnce();
  const path = await mkdtemp(join(tmpdir(), `${PREFIX}${label}-`));
  const unregister = registerTempDir(path);
  await writeFile(join(path, OWNER_FILE), String(process.pid));
  return {
    path,
    async remove() {
      unregister();
      if (!keepTempDirs()) await rm(path, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

const PREFIX = 'esp32hub-';
const OWNER_FILE = '.harness-owner-pid';
let swept = false;

/**
 * Removes temp dirs left behind by test processes that were killed outright (SIGKILL runs no exit
 * handler; their servers died with them thanks to the parent-death signal, see process.ts). Only
 * dirs carrying our owner file whose owner process no longer exists are touched, so parallel runs
 * on this machine are safe.
 */
function sweepOrphansOnce(): void {
  if (swept || keepTempDirs()) return;
  swept = true;
  let names: string[];
  try {
    names = readdirSync(tmpdir()).filter((name) => name.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(tmpdir(), name);
    try {
      const owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && !processExists(owner)) {
        rmSync(dir, { recursive: true, force: true });
      }
    } catch {
      // Not ours (no owner file) or already gone.
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
