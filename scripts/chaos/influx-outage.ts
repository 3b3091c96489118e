/**
 * `chaos influx-outage`: InfluxDB's engine is stopped under load (its nginx front stays up and answers
 * 502, as a proxy before a dead InfluxDB does) for a while, then started again. Meanwhile the hub must
 * keep acknowledging (the local log buffers). Once InfluxDB is back, the backlog must drain faster
 * than readings arrive: the drain rate (lines InfluxDB accepted per second, from the forwarder's first
 * successful write after the restart until its cursor passes the log head as of the restart) is
 * reported as a multiple of the ingest rate (readings the devices got acknowledged per second in the
 * same period). Then every acknowledged reading is looked up in InfluxDB.
 */
import { performance } from 'node:perf_hooks';
import { type InfluxServer, startInflux } from '../../test/harness/index.ts';
import { waitFor } from './fleet.ts';
import type { HubProcess } from './hub-process.ts';
import { influxReader, reconcile } from './reconcile.ts';
import { addFleetFigures, addReconcile, type ChaosReport, fmtInt, fmtMs, newReport } from './report.ts';
import { drainFleet, type FleetSize, forwarderCaughtUp, type Say, stage } from './setup.ts';

export interface InfluxOutageOptions extends FleetSize {
  /** How long InfluxDB stays down. */
  outageMs: number;
  /** The outage also lasts until at least this many readings were acknowledged during it. Default 0. */
  minOutageReadings?: number;
  /** Fail when the drain rate is below this multiple of the ingest rate (0: report only). */
  minDrainMultiple: number;
  /** Use this InfluxDB (left running) instead of starting one. */
  influx?: InfluxServer;
  say: Say;
}

const LINES = 'hub_forwarder_lines_written_total';

/** Head and forwarder cursor of the local log, from `/readyz`. */
async function logOffsets(hub: HubProcess): Promise<{ head: number; forwarded: number }> {
  const r = await hub.readyz();
  const body = r ? (JSON.parse(r.body) as { localLog?: { headOffset?: number; forwardedOffset?: number } }) : {};
  const head = body.localLog?.headOffset;
  const forwarded = body.localLog?.forwardedOffset;
  if (typeof head !== 'number' || typeof forwarded !== 'number') {
    throw new Error(`/readyz does not report localLog.headOffset/forwardedOffset: ${r?.body ?? 'no answer'}`);
  }
  return { head, forwarded };
}

export async function runInfluxOutage(o: InfluxOutageOptions): Promise<ChaosReport> {
  const report = newReport('influx-outage');
  const influx = o.influx ?? (await startInflux({ bucket: 'chaos' }));
  try {
    const s = await stage({ label: 'outage', devices: o.devices, rate: o.rate, say: o.say, influx });
    try {
      // Steady state first: the forwarder keeps up with the fleet.
      const warm = s.fleet.ackedReadings() + o.rate * 3;
      await waitFor(() => s.fleet.ackedReadings() >= warm, 'warm-up: 3 s of readings acknowledged', 60_000);

      await influx.stopEngine();
      const downAt = performance.now();
      const ackedAtDown = s.fleet.ackedReadings();
      o.say(`InfluxDB stopped; outage of ${fmtMs(o.outageMs)}`);
      let maxBacklog = 0;
      let lastProgress = { at: performance.now(), acked: ackedAtDown };
      let stalledMs = 0;
      let nextReport = performance.now() + 30_000;
      await waitFor(
        async () => {
          if (!s.hub.alive()) return true;
          const now = performance.now();
          const acked = s.fleet.ackedReadings();
          if (acked > lastProgress.acked) lastProgress = { at: now, acked };
          stalledMs = Math.max(stalledMs, now - lastProgress.at);
          maxBacklog = Math.max(maxBacklog, await s.hub.metric('hub_local_log_unforwarded_frames'));
          if (now > nextReport) {
            nextReport = now + 30_000;
            o.say(
              `  ${fmtMs(now - downAt)} down: ${fmtInt(acked - ackedAtDown)} readings acknowledged meanwhile, backlog ${fmtInt(maxBacklog)} frames`,
            );
          }
          return now - downAt >= o.outageMs && acked - ackedAtDown >= (o.minOutageReadings ?? 0);
        },
        'the outage',
        o.outageMs + 600_000,
        250,
      );
      if (!s.hub.alive()) throw new Error(`the hub exited during the outage:\n${s.hub.proc.logTail(20)}`);
      const ackedDuringOutage = s.fleet.ackedReadings() - ackedAtDown;
      const outageMs = performance.now() - downAt;

      // InfluxDB back: measure the drain.
      await influx.startEngine();
      const upAt = performance.now();
      const { head: headAtUp } = await logOffsets(s.hub);
      const linesAtUp = await s.hub.metric(LINES);
      o.say(`InfluxDB restarted after ${fmtMs(outageMs)}; draining a backlog up to log offset ${headAtUp}`);
      let firstWrite: { at: number; lines: number; acked: number } | null = null;
      let drained: { at: number; lines: number; acked: number } | null = null;
      await waitFor(
        async () => {
          const lines = await s.hub.metric(LINES);
          const now = performance.now();
          // Counted from the first batch's end (its own lines excluded): conservative.
          if (firstWrite === null && lines > linesAtUp) firstWrite = { at: now, lines, acked: s.fleet.ackedReadings() };
          if ((await logOffsets(s.hub)).forwarded >= headAtUp) {
            drained = { at: now, lines, acked: s.fleet.ackedReadings() };
            return true;
          }
          return false;
        },
        'the backlog drained',
        3_600_000,
        100,
      );
      const first = firstWrite as { at: number; lines: number; acked: number } | null;
      const done = drained as unknown as { at: number; lines: number; acked: number };
      const start = first ?? { at: upAt, lines: linesAtUp, acked: done.acked };
      const seconds = Math.max(0.001, (done.at - start.at) / 1000);
      const drainRate = (done.lines - start.lines) / seconds;
      const ingestRate = (done.acked - start.acked) / seconds;
      const multiple = ingestRate > 0 ? drainRate / ingestRate : Number.POSITIVE_INFINITY;

      await drainFleet(s);
      await forwarderCaughtUp(s);
      const c = s.fleet.counters;
      report.figures.push(
        ['load', `${o.devices} devices, ${fmtInt(s.fleet.readingsPerSec)} readings/s`],
        ['outage', fmtMs(outageMs)],
        ['readings acknowledged during the outage', fmtInt(ackedDuringOutage)],
        ['longest time without a new ACK during the outage (sampled every 250 ms)', fmtMs(stalledMs)],
        ['largest backlog (unforwarded frames)', fmtInt(maxBacklog)],
        ['InfluxDB back → first successful write (retry backoff)', first ? fmtMs(first.at - upAt) : 'n/a'],
        ['InfluxDB back → backlog drained', fmtMs(done.at - upAt)],
        ['drain rate (lines/s written while draining)', fmtInt(drainRate)],
        ['ingest rate meanwhile (readings/s acknowledged)', fmtInt(ingestRate)],
        ['drain rate as a multiple of ingest', `${multiple.toFixed(1)}×`],
      );
      if (o.minDrainMultiple > 0 && multiple < o.minDrainMultiple) {
        report.failures.push(
          `the backlog drained at ${multiple.toFixed(1)}× the ingest rate (bar: ${o.minDrainMultiple}×)`,
        );
      }
      addFleetFigures(report, c);
      await s.fleet.close();
      report.ledgers = s.fleet.ledgers;
      addReconcile(report, await reconcile(s.fleet.ledgers, influxReader(influx)));
    } catch (err) {
      report.failures.push(err instanceof Error ? err.message : String(err));
    } finally {
      await s.teardown();
    }
  } finally {
    if (!o.influx) await influx.stop();
  }
  return report;
}
