/**
 * A small real filesystem for full-disk tests: a `tmpfs` of a given size mounted on a fresh temp dir.
 * Needs root (mount(2)); `mountTmpfs` returns a reason string instead when it cannot mount, so a test
 * can skip with that reason rather than pass without testing anything.
 */
import { execFileSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type TempDir, tempDir } from './temp.ts';

export interface TmpfsMount {
  readonly path: string;
  /** Free bytes as an unprivileged writer sees them (statfs). */
  freeBytes(): number;
  /** Writes a filler file so that about `leaveBytes` stay free; returns its path. */
  fillTo(leaveBytes: number, name?: string): Promise<string>;
  /** Deletes a filler file. */
  release(filler: string): Promise<void>;
  /** Unmounts and removes the mount point. */
  remove(): Promise<void>;
}

/** Why full-disk tests cannot run here, or null when they can. */
export function tmpfsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'tmpfs mounts need Linux';
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root (run the suite as root, as CI does)';
  return null;
}

export async function mountTmpfs(sizeBytes: number, label = 'tmpfs'): Promise<TmpfsMount | string> {
  const unavailable = tmpfsUnavailable();
  if (unavailable) return unavailable;
  const dir: TempDir = await tempDir(label);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', dir.path], { stdio: 'pipe' });
  } catch (err) {
    await dir.remove();
    return `mount -t tmpfs failed: ${(err as Error).message.split('\n')[0]}`;
  }
  let fillers = 0;
  const free = () => {
    const st = statfsSync(dir.path);
    return st.bavail * st.bsize;
  };
  return {
    path: dir.path,
    freeBytes: free,
    async fillTo(leaveBytes, name = `filler-${++fillers}`) {
      const path = join(dir.path, name);
      const fh = await open(path, 'w');
      const chunk = Buffer.alloc(1024 * 1024, 0xa5);
      try {
        for (let left = free() - leaveBytes; left > 0; left = free() - leaveBytes) {
          await fh.write(chunk, 0, Math.min(chunk.length, left));
        }
      } finally {
        await fh.close();
      }
      return path;
    },
    async release(filler) {
      await rm(filler, { force: true });
    },
    async remove() {
      try {
        execFileSync('umount', ['-l', dir.path], { stdio: 'pipe' });
      } finally {
        await dir.remove();
      }
    },
  };
}
