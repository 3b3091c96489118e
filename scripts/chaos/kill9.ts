/**
 * `chaos kill9`: the hub is SIGKILLed under load, `rounds` times, and restarted at once on the same
 * data directory. Per round: time from the kill to `/readyz` answering, and to every device having an
 * ACK again (time to resume). At the end the fleet drains, the forwarder catches up, and every
 * acknowledged reading is looked up in InfluxDB (or the embedded store).
 */
import { performance } from 'node:perf_hooks';
import { type InfluxServer, startInflux } from '../../test/harness/index.ts';
import { waitFor } from './fleet.ts';
import { historyReader, influxReader, reconcile } from './reconcile.ts';
import { addFleetFigures, addReconcile, type ChaosReport, fmtInt, fmtMs, newReport, percentile } from './report.ts';
import { drainFleet, type FleetSize, forwarderCaughtUp, type Say, stage } from './setup.ts';

export interface Kill9Options extends FleetSize {
  rounds: number;
  /** Readings acknowledged between two kills, in seconds of load (rate × seconds). */
  loadSeconds: number;
  store: 'influx' | 'embedded';
  /** Use this InfluxDB (left running) instead of starting one. */
  influx?: InfluxServer;
  say: Say;
}

export async function runKill9(o: Kill9Options): Promise<ChaosReport> {
  const report = newReport('kill9');
  const ownInflux = o.store === 'influx' && !o.influx;
  const influx = o.store === 'influx' ? (o.influx ?? (await startInflux({ bucket: 'chaos' }))) : undefined;
  try {
    const s = await stage({
      label: 'kill9',
      devices: o.devices,
      rate: o.rate,
      say: o.say,
      ...(influx ? { influx } : {}),
    });
    try {
      const resume: number[] = [];
      const ready: number[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        const target = s.fleet.ackedReadings() + o.rate * o.loadSeconds;
        await waitFor(
          () => s.fleet.ackedReadings() >= target || !s.hub.alive(),
          `round ${round}: ${fmtInt(o.rate * o.loadSeconds)} more readings acknowledged before the kill`,
          120_000,
        );
        if (!s.hub.alive()) {
          report.failures.push(`round ${round}: the hub exited by itself:\n${s.hub.proc.logTail(20)}`);
          break;
        }
        // Kill while frames are in flight: right after a send, or a few ms later (in the hub's commit).
        await s.fleet.afterNextSend();
        const lagMs = (round % 3) * 4;
        if (lagMs > 0) await new Promise((r) => setTimeout(r, lagMs));
        const unacked = s.fleet.unackedFrames();
        s.fleet.mark();
        const killedAt = performance.now();
        await s.restartHub('SIGKILL');
        ready.push(performance.now() - killedAt);
        await waitFor(
          () => s.fleet.allAckedSinceMark() !== null,
          `round ${round}: every device acknowledged again after the restart`,
          120_000,
        );
        resume.push((s.fleet.allAckedSinceMark() as number) - killedAt);
        o.say(
          `round ${round}/${o.rounds}: killed with ${unacked} frames unacknowledged; ready after ${fmtMs(ready.at(-1) as number)}, ` +
            `every device acknowledged again after ${fmtMs(resume.at(-1) as number)}`,
        );
      }
      await drainFleet(s);
      if (influx) await forwarderCaughtUp(s);
      const c = s.fleet.counters;
      report.figures.push(
        ['rounds', `${resume.length} of ${o.rounds}`],
        ['load', `${o.devices} devices, ${fmtInt(s.fleet.readingsPerSec)} readings/s`],
        ['kill → /readyz (p50 / max)', `${fmtMs(percentile(ready, 50))} / ${fmtMs(percentile(ready, 100))}`],
        [
          'time to resume: kill → every device acked again (p50 / max)',
          `${fmtMs(percentile(resume, 50))} / ${fmtMs(percentile(resume, 100))}`,
        ],
      );
      addFleetFigures(report, c);
      await s.fleet.close();
      report.ledgers = s.fleet.ledgers;
      addReconcile(
        report,
        await reconcile(s.fleet.ledgers, influx ? influxReader(influx) : historyReader(s.hub.baseUrl, s.adminToken)),
      );
    } catch (err) {
      report.failures.push(err instanceof Error ? err.message : String(err));
    } finally {
      await s.teardown();
    }
  } finally {
    if (ownInflux) await influx?.stop();
  }
  return report;
}
