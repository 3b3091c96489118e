/**
 * The short `npm run chaos -- kill9` (scripts/chaos/kill9.ts): the hub as a real process
 * (`server/main.ts`) SIGKILLed three times under load while frames are in flight, restarted each time;
 * the independent chaos fleet keeps and replays unacknowledged frames; afterwards every acknowledged
 * reading must be in the real InfluxDB, once, with the value sent. The full run (20 rounds at
 * 5 k readings/s) and its figures: docs/chaos.md.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runKill9 } from '../../scripts/chaos/kill9.ts';
import { formatReport, passed } from '../../scripts/chaos/report.ts';
import { type InfluxServer, startInflux } from '../harness/index.ts';

let influx: InfluxServer;
beforeAll(async () => {
  influx = await startInflux({ bucket: 'chaos' });
});
afterAll(async () => {
  await influx?.stop();
});

it('kill -9 × 3 under load: nothing acknowledged is lost, duplicated or changed', async () => {
  const report = await runKill9({
    rounds: 3,
    loadSeconds: 1,
    store: 'influx',
    devices: 4,
    rate: 2000,
    influx,
    say: () => undefined,
  });
  console.log(formatReport(report));
  expect(report.failures).toEqual([]);
  expect(report.reconcile).toMatchObject({ lost: 0, duplicated: 0, changed: 0, unexpected: 0 });
  expect(report.reconcile?.ackedReadings).toBeGreaterThan(3 * 2000);
  expect(passed(report)).toBe(true);
});
