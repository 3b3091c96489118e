/**
 * Download throttling (docs/ota.md): at most `maxConcurrent` downloads at once, and a token bucket of
 * `bytesPerSec` shared by all of them (burst: one second's worth), so that image transfers never
 * starve telemetry of CPU, disk or uplink.
 */
export interface DownloadThrottle {
  /** A slot, or null when `maxConcurrent` downloads are running. */
  acquire(): { release(): void } | null;
  active(): number;
  /** Waits until `bytes` may be sent (at most one second's worth per call). */
  take(bytes: number): Promise<void>;
  /** Bytes the bucket lets a caller send at once (the chunk size to use). */
  readonly chunkBytes: number;
}

export function createDownloadThrottle(o: {
  maxConcurrent: number;
  bytesPerSec: number;
  now?: () => number;
}): DownloadThrottle {
  const now = o.now ?? (() => performance.now());
  const capacity = o.bytesPerSec;
  let tokens = capacity;
  let last = now();
  let running = 0;
  let queue: Promise<void> = Promise.resolve();
  const refill = () => {
    const t = now();
    tokens = Math.min(capacity, tokens + ((t - last) / 1000) * o.bytesPerSec);
    last = t;
  };
  const takeNow = async (bytes: number) => {
    refill();
    while (tokens < bytes) {
      await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(((bytes - tokens) / o.bytesPerSec) * 1000))));
      refill();
    }
    tokens -= bytes;
  };
  return {
    chunkBytes: Math.max(1024, Math.min(64 * 1024, Math.floor(capacity / 8))),
    acquire() {
      if (running >= o.maxConcurrent) return null;
      running++;
      let released = false;
      return {
        release() {
          if (released) return;
          released = true;
          running--;
        },
      };
    },
    active: () => running,
    take(bytes) {
      // One waiter at a time: the bucket is shared fairly in arrival order.
      const n = Math.min(bytes, capacity);
      const p = queue.then(() => takeNow(n));
      queue = p.catch(() => undefined);
      return p;
    },
  };
}
