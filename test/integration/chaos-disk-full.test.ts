/**
 * The short `npm run chaos -- disk-full` (scripts/chaos/disk-full.ts): the hub (a real process) keeps
 * its data directory on a small tmpfs mounted by the test (root only; skipped with the reason
 * otherwise). Under load the filesystem is filled; the hub must stay up, send STORAGE_FULL to the
 * devices, report it on /readyz and in `hub_local_log_full{reason="disk"}`, and recover by itself
 * once the space is freed; every acknowledged reading must then be in the embedded store (read
 * through the history API), once, with the value sent.
 */
import { expect, it } from 'vitest';
import { runDiskFull } from '../../scripts/chaos/disk-full.ts';
import { formatReport, passed } from '../../scripts/chaos/report.ts';
import { tmpfsUnavailable } from '../harness/tmpfs.ts';

const unavailable = tmpfsUnavailable();

it.skipIf(unavailable !== null)(
  `disk full under load: the hub stays up, says STORAGE_FULL, recovers, loses nothing ${unavailable ? `(skipped: ${unavailable})` : ''}`,
  async () => {
    const report = await runDiskFull({
      sizeBytes: 96 * 1024 * 1024,
      reserveBytes: 16 * 1024 * 1024,
      holdMs: 3000,
      devices: 4,
      rate: 2000,
      say: () => undefined,
    });
    console.log(formatReport(report));
    expect(report.skipped).toBeNull();
    expect(report.failures).toEqual([]);
    expect(report.reconcile).toMatchObject({ lost: 0, duplicated: 0, changed: 0, unexpected: 0 });
    expect(passed(report)).toBe(true);
  },
);
