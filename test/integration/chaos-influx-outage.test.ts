/**
 * The short `npm run chaos -- influx-outage` (scripts/chaos/influx-outage.ts): the real InfluxDB's
 * engine is stopped under load while the hub (a real process) keeps acknowledging into its local log;
 * the outage lasts until 10 s worth of readings were acknowledged during it; then InfluxDB comes back,
 * the backlog drains, and every acknowledged reading must be in InfluxDB, once, with the value sent.
 * The drain rate is printed, not asserted (performance lives in bench/ and in the full chaos run).
 */
import { expect, it } from 'vitest';
import { runInfluxOutage } from '../../scripts/chaos/influx-outage.ts';
import { formatReport, passed } from '../../scripts/chaos/report.ts';

it('InfluxDB down under load: the hub keeps acknowledging, drains the backlog, loses nothing', async () => {
  const rate = 2000;
  const report = await runInfluxOutage({
    outageMs: 0,
    minOutageReadings: rate * 10,
    minDrainMultiple: 0,
    devices: 4,
    rate,
    say: () => undefined,
  });
  console.log(formatReport(report));
  expect(report.failures).toEqual([]);
  expect(report.reconcile).toMatchObject({ lost: 0, duplicated: 0, changed: 0, unexpected: 0 });
  // Readings acknowledged while InfluxDB was down are part of what was checked.
  expect(report.reconcile?.ackedReadings).toBeGreaterThan(rate * 10);
  expect(passed(report)).toBe(true);
});
