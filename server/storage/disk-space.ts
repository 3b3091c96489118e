/**
 * The free-space guard of the data directory. lmdb grows its file page by page; when the filesystem
 * runs out, a commit fails with ENOSPC after the frames were accepted. The guard keeps a reserve
 * instead: below `minFreeBytes` the local log refuses appends with the non-fatal STORAGE_FULL
 * [PROTO-5.5] (devices keep their frames and replay them), and it accepts them again by itself once
 * free space is back above the reserve plus a quarter (hysteresis, so it does not flap).
 *
 * Checked every second with `statfs` (a cheap syscall), and on demand (after a burst of commits, after
 * a failed commit).
 */
import { statfsSync } from 'node:fs';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';

/** Default reserve: room for lmdb's copy-on-write pages of many commits and for the rest of the host. */
export const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;
const CHECK_INTERVAL_MS = 1000;

export interface DiskSpaceOptions {
  dir: string;
  minFreeBytes: number;
  /** Free bytes for an unprivileged process on `dir`'s filesystem (default: `statfs`). */
  freeBytes?: (dir: string) => number;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
}

export interface DiskSpaceGuard {
  readonly minFreeBytes: number;
  /** True while free space is below the reserve (until it is back above reserve × 1.25). */
  short(): boolean;
  /** Free bytes at the last check. */
  freeBytes(): number;
  /** Checks now; listeners run after every check. */
  check(): void;
  onCheck(listener: () => void): void;
  stop(): void;
}

export function statfsFreeBytes(dir: string): number {
  const st = statfsSync(dir);
  return st.bavail * st.bsize;
}

export function createDiskSpaceGuard(opts: DiskSpaceOptions): DiskSpaceGuard {
  const probe = opts.freeBytes ?? statfsFreeBytes;
  const { minFreeBytes, metrics, logger } = opts;
  const listeners: (() => void)[] = [];
  let free = Number.POSITIVE_INFINITY;
  let isShort = false;
  let probeFailed = false;

  const guard: DiskSpaceGuard = {
    minFreeBytes,
    short: () => isShort,
    freeBytes: () => free,
    check() {
      try {
        free = probe(opts.dir);
        probeFailed = false;
      } catch (err) {
        // Cannot tell: keep the last answer rather than refuse every frame; say so once.
        if (!probeFailed) logger.warn({ err, dir: opts.dir }, 'free-space check failed');
        probeFailed = true;
        return;
      }
      metrics.dataDirFreeBytes.set(free);
      if (isShort) isShort = free < minFreeBytes * 1.25;
      else isShort = free < minFreeBytes;
      for (const l of listeners) l();
    },
    onCheck(listener) {
      listeners.push(listener);
    },
    stop() {
      clearInterval(timer);
    },
  };
  const timer = setInterval(() => guard.check(), CHECK_INTERVAL_MS);
  timer.unref();
  guard.check();
  return guard;
}
