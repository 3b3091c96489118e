/**
 * `chaos disk-full`: the hub's data directory lives on a small tmpfs mounted for the run (root only).
 * Under load the filesystem is filled with a file until ENOSPC. The hub must stay up, say
 * `STORAGE_FULL` (ERROR frames to the devices, `/readyz` not ready) and acknowledge nothing it could not
 * store; after `holdMs` the file is deleted and the time until every device is acknowledged again and
 * `/readyz` is ready is the recovery time. Then every acknowledged reading is looked up in the
 * embedded store through the history API. If the hub dies, the run fails, and the hub is started
 * again so the reconciliation still shows whether anything acknowledged was lost.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { registerCleanup } from '../../test/harness/index.ts';
import { mountTmpfs } from '../../test/harness/tmpfs.ts';
import { waitFor } from './fleet.ts';
import { historyReader, reconcile } from './reconcile.ts';
import { addFleetFigures, addReconcile, type ChaosReport, fmtInt, fmtMs, newReport } from './report.ts';
import { drainFleet, type FleetSize, type Say, stage } from './setup.ts';

export interface DiskFullOptions extends FleetSize {
  /** Size of the tmpfs holding the data directory. */
  sizeBytes: number;
  /** How long the disk stays full once the hub said STORAGE_FULL. */
  holdMs: number;
  /** The hub's free-space reserve, `LOG_MIN_FREE_BYTES` (must be well below `sizeBytes`). */
  reserveBytes: number;
  say: Say;
}

/** Writes zeros to `path` until the filesystem is full; returns the bytes written. */
export function fillFilesystem(path: string): number {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 20);
  let written = 0;
  try {
    for (const size of [1 << 20, 1 << 12, 1 << 9]) {
      for (;;) {
        try {
          const n = writeSync(fd, chunk, 0, size);
          written += n;
          if (n < size) break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

export async function runDiskFull(o: DiskFullOptions): Promise<ChaosReport> {
  const report = newReport('disk-full');
  const mnt = await mountTmpfs(o.sizeBytes, 'chaos-tmpfs');
  if (typeof mnt === 'string') {
    report.skipped = mnt;
    return report;
  }
  // Unmount even if the run is interrupted (Ctrl-C): the harness's safety net runs this at exit.
  const unregister = registerCleanup({
    label: `tmpfs ${mnt.path}`,
    stop: () => mnt.remove(),
    killSync: () => {
      try {
        execFileSync('umount', ['-l', mnt.path], { stdio: 'ignore' });
      } catch {
        // not mounted any more
      }
    },
  });
  try {
    const s = await stage({
      label: 'diskfull',
      devices: o.devices,
      rate: o.rate,
      say: o.say,
      dataDir: join(mnt.path, 'data'),
      env: { LOG_MIN_FREE_BYTES: String(o.reserveBytes) },
    });
    const filler = join(mnt.path, 'filler');
    try {
      const warm = s.fleet.ackedReadings() + o.rate * 2;
      await waitFor(() => s.fleet.ackedReadings() >= warm, 'warm-up: 2 s of readings acknowledged', 60_000);
      const filled = fillFilesystem(filler);
      const fullAt = performance.now();
      o.say(`filled the ${fmtInt(o.sizeBytes / 1024 / 1024)} MB tmpfs with ${fmtInt(filled / 1024 / 1024)} MB`);

      // The hub must notice and say so, without dying: ERROR STORAGE_FULL to the devices, /readyz not
      // ready, hub_local_log_full{reason="disk"} = 1.
      let readyWhileFull: { status: number; body: string } | null = null;
      let fullGauge = 0;
      const watchFull = async () => {
        if (!s.hub.alive()) return;
        const r = await s.hub.readyz();
        if (r && r.status !== 200) readyWhileFull = r;
        fullGauge = Math.max(fullGauge, await s.hub.metric('hub_local_log_full', { reason: 'disk' }).catch(() => 0));
      };
      await waitFor(
        async () => {
          await watchFull();
          return !s.hub.alive() || (s.fleet.counters.storageFull > 0 && readyWhileFull !== null && fullGauge === 1);
        },
        'the hub said STORAGE_FULL (ERROR frames, /readyz not ready, hub_local_log_full{reason="disk"} 1)',
        60_000,
        100,
      ).catch((err: Error) => report.failures.push(err.message));
      const saidAt = performance.now();
      let diedWhileFull = !s.hub.alive();
      // Hold the disk full; the hub must stay up all along.
      if (!diedWhileFull) {
        await waitFor(
          () => !s.hub.alive() || performance.now() - saidAt >= o.holdMs,
          'the hold',
          o.holdMs + 60_000,
          100,
        );
        diedWhileFull = !s.hub.alive();
      }
      const storageFullErrors = s.fleet.counters.storageFull;
      const rz = readyWhileFull as { status: number; body: string } | null;
      if (diedWhileFull) {
        const exit = await s.hub.proc.exited;
        report.failures.push(
          `the hub exited (${exit.signal ?? `code ${exit.code}`}) while the disk was full:\n${s.hub.proc.logTail(15)}`,
        );
      }

      unlinkSync(filler);
      const freedAt = performance.now();
      s.fleet.mark();
      if (diedWhileFull) {
        o.say('space freed; starting the hub again to reconcile');
        await s.restartHub();
      }
      await waitFor(
        async () => s.fleet.allAckedSinceMark() !== null && (await s.hub.readyz())?.status === 200,
        'every device acknowledged again and /readyz ready after space returned',
        120_000,
        50,
      );
      const recoveredAt = Math.max(s.fleet.allAckedSinceMark() as number, performance.now());
      await drainFleet(s);
      const c = s.fleet.counters;
      report.figures.push(
        ['load', `${o.devices} devices, ${fmtInt(s.fleet.readingsPerSec)} readings/s`],
        ['filesystem', `tmpfs of ${fmtInt(o.sizeBytes / 1024 / 1024)} MB, ${fmtInt(filled / 1024 / 1024)} MB filled`],
        ['disk full → STORAGE_FULL said', diedWhileFull ? 'n/a (the hub died)' : fmtMs(saidAt - fullAt)],
        ['hub stayed up while full', diedWhileFull ? 'NO' : `yes (${fmtMs(o.holdMs)} held)`],
        ['STORAGE_FULL ERROR frames received', fmtInt(storageFullErrors)],
        ['/readyz while full', rz ? `${rz.status} ${rz.body.slice(0, 160)}` : 'never not-ready'],
        ['hub_local_log_full{reason="disk"} while full', String(fullGauge)],
        ['space freed → every device acked again and /readyz ready', fmtMs(recoveredAt - freedAt)],
      );
      if (!diedWhileFull && storageFullErrors === 0) report.failures.push('no device received ERROR STORAGE_FULL');
      if (!diedWhileFull && rz === null) report.failures.push('/readyz stayed ready while the disk was full');
      if (!diedWhileFull && fullGauge !== 1) report.failures.push('hub_local_log_full{reason="disk"} never became 1');
      addFleetFigures(report, c);
      await s.fleet.close();
      report.ledgers = s.fleet.ledgers;
      addReconcile(report, await reconcile(s.fleet.ledgers, historyReader(s.hub.baseUrl, s.adminToken)));
    } catch (err) {
      report.failures.push(err instanceof Error ? err.message : String(err));
    } finally {
      await s.teardown();
    }
  } finally {
    unregister();
    await mnt.remove();
  }
  return report;
}
