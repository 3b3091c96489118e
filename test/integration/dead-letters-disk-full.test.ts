/**
 * The dead-letter store on a full disk (a real tmpfs mounted by the test, as root): a put that hits
 * ENOSPC rejects (the forwarder then holds its cursor and retries the batch), the process does not
 * die of an unhandled rejection inside lmdb, and the store works again once space returns.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../server/metrics/index.ts';
import { type OpenDeadLetterStore, openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { mountTmpfs, type TmpfsMount, tmpfsUnavailable } from '../harness/tmpfs.ts';

let disk: TmpfsMount | null = null;
let store: OpenDeadLetterStore | null = null;

afterEach(async () => {
  await store?.close().catch(() => undefined);
  store = null;
  await disk?.remove();
  disk = null;
});

describe.skipIf(tmpfsUnavailable() !== null)(
  `dead letters on a full disk (real tmpfs) ${tmpfsUnavailable() ?? ''}`,
  () => {
    it('a put that hits ENOSPC rejects, nothing crashes, and puts work again once space returns', async () => {
      const mounted = await mountTmpfs(16 * 1024 * 1024, 'dead-letters-enospc');
      if (typeof mounted === 'string') throw new Error(mounted);
      disk = mounted;
      store = openDeadLetterStore({ dataDir: disk.path, metrics: createMetrics() });
      await store.put(['m v=1 1'], 'first', 400);
      await store.flushed();
      const filler = await disk.fillTo(256 * 1024);

      // Records of ~64 KiB until the disk refuses.
      const big = Array.from(
        { length: 500 },
        (_, i) => `telemetry,channel=c${i},device=d value=${i}.5 ${i}${'0'.repeat(100)}`,
      );
      let failure: unknown = null;
      let kept = 1;
      for (let i = 0; i < 200 && failure === null; i++) {
        try {
          await store.put(big, `conflict ${i}`, 400);
          await store.flushed();
          kept += big.length;
        } catch (err) {
          failure = err;
        }
      }
      expect(failure).not.toBeNull();
      // What was durable before the failure is still there.
      expect(store.count()).toBeGreaterThanOrEqual(kept);

      await disk.release(filler);
      await store.put(['m v=2 2'], 'after', 400);
      await store.flushed();
      expect(store.list(1)[0]?.line).toBe('m v=2 2');
    }, 120_000);
  },
);
