/**
 * The claim behind the CLI's direct access (docs/storage.md §4): two processes writing one
 * dead-letter store at once (puts that evict against the byte cap, and drops) keep exact totals,
 * because every total lives in the store and changes inside the transaction that changes the records.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../server/metrics/index.ts';
import { openDeadLetterStore, RECORD_OVERHEAD_BYTES } from '../../server/storage/dead-letter.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { NODE_TSX, REPO_ROOT } from './run-script.ts';

const WRITER = fileURLToPath(new URL('./dead-letters-writer.ts', import.meta.url));

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir('dead-letters-mp');
});
afterEach(async () => {
  await dir.remove();
});

function writer(count: number, reason: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE_TSX.command, [...NODE_TSX.args, WRITER, dir.path, String(count), reason], {
      cwd: REPO_ROOT,
      stdio: 'inherit',
    });
    child.on('error', reject);
    child.on('close', resolve);
  });
}

describe('dead-letter store shared by two processes', () => {
  it('keeps exact totals under concurrent puts, evictions and drops', async () => {
    const store = openDeadLetterStore({ dataDir: dir.path, metrics: createMetrics(), maxBytes: 64 * 1024 });
    let exited = false;
    const other = writer(400, 'other').then((code) => {
      exited = true;
      return code;
    });
    // Keep writing and dropping until the other process is done, so the two really overlap.
    let seenWhileRunning = false;
    for (let i = 0; !exited || i < 400; i++) {
      await store.put([`m,k=mine v=${i} ${i}`], 'mine', 400);
      if (i % 50 === 49) {
        if (!exited && store.query({ reason: 'other', limit: 1 }).records.length > 0) seenWhileRunning = true;
        await store.drop({ reason: 'other' });
      }
    }
    expect(await other).toBe(0);
    expect(seenWhileRunning).toBe(true);

    // The totals match a full scan of what is actually stored.
    const all = store.query({ limit: 1_000_000 }).records;
    const bytes = all.reduce((n, r) => n + r.bytes, 0);
    expect(store.totals()).toEqual({
      records: all.length,
      lines: all.reduce((n, r) => n + r.lineCount, 0),
      bytes,
      maxBytes: 64 * 1024,
    });
    expect(bytes).toBeLessThanOrEqual(64 * 1024);
    for (const r of all) expect(r.bytes).toBe(RECORD_OVERHEAD_BYTES + r.reason.length + r.lines[0]!.length + 1);
    expect(new Set(all.map((r) => r.reason))).toContain('mine');
    await store.close();
  }, 60_000);
});
