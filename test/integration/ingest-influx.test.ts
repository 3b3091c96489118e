/**
 * Device → hub → local log → forwarder → a real InfluxDB (1.x engine behind the nginx-served
 * `/api/v2/write`, from the test harness; see docs/testing.md), checked with InfluxQL: exactly the
 * values, timestamps, tags and field types sent; replays do not duplicate points; an InfluxDB outage
 * does not stop ACKs and loses nothing.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { untilValue } from '../harness/index.ts';
import { useInfluxHub } from '../harness/influx-hub.ts';
import { expectedReadings, TEST_CHANNELS, TestDevice, telemetry } from './ingest-device-client.ts';

const HOUR = 3_600_000;

describe('ingest into a real InfluxDB', () => {
  const rig = useInfluxHub({ bucket: 'ingest' });
  let token: string;

  beforeAll(async () => {
    token = await rig.hub.addDevice('esp-influx');
  });

  const rows = async (deviceId: string) =>
    (await rig.influx.influxQL(`SELECT * FROM telemetry WHERE device = '${deviceId}'`)).rows.map((r) => ({
      timeMs: r.time as number,
      channel: r.channel as string,
      unit: (r.unit as string | null) ?? '',
      value: (r.state ?? r.value) as number | boolean,
    }));

  const sortRows = <T extends { timeMs: number; channel: string }>(rs: T[]) =>
    [...rs].sort((a, b) => a.timeMs - b.timeMs || a.channel.localeCompare(b.channel));

  const unitOf = (channel: string) => TEST_CHANNELS.find((c) => c.key === channel)?.unit ?? '';

  it('stores exactly the N readings sent: values, timestamps, tags and field types', async () => {
    const d = await TestDevice.connect(rig.hub.url, { token });
    await d.hello('esp-influx', 1, { uptimeMs: HOUR });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const base = Date.now() - 30 * 60_000;
    const N = 40;
    const expected = [];
    for (let s = 1; s <= N; s++) {
      d.send(telemetry(1, s, base + s * 10_000));
      expected.push(...expectedReadings(s, base + s * 10_000).map((r) => ({ ...r, unit: unitOf(r.channel) })));
    }
    await d.ackOf(1, N);
    const got = await untilValue(
      () => rows('esp-influx'),
      (r) => r.length >= expected.length,
      'points in InfluxDB',
    );
    expect(sortRows(got)).toEqual(sortRows(expected));

    const fields = await rig.influx.influxQL('SHOW FIELD KEYS FROM telemetry');
    const types = Object.fromEntries(fields.rows.map((r) => [r.fieldKey, r.fieldType]));
    expect(types).toEqual({ state: 'boolean', value: 'float' });
    const tags = await rig.influx.influxQL('SHOW TAG KEYS FROM telemetry');
    expect(tags.rows.map((r) => r.tagKey).sort()).toEqual(['channel', 'device', 'unit']);
    await d.close();
  });

  it('replayed frames do not duplicate points', async () => {
    const before = await rows('esp-influx');
    const d = await TestDevice.connect(rig.hub.url, { token });
    const w = await d.hello('esp-influx', 1, { uptimeMs: HOUR });
    expect(w.lastAck).toEqual({ bootId: 1, seq: 40 });
    const base = Date.now() - 30 * 60_000;
    // Replays of stored frames (the device lost the ACKs), then one new frame.
    for (let s = 30; s <= 40; s++) d.send(telemetry(1, s, base + s * 10_000));
    d.send(telemetry(1, 41, Date.now() - 60_000));
    await d.ackOf(1, 41);
    const after = await untilValue(
      () => rows('esp-influx'),
      (r) => r.length >= before.length + 12,
      'frame 41',
    );
    expect(after).toHaveLength(before.length + 12);
    await d.close();
  });

  it('keeps acknowledging while InfluxDB is down; afterwards every reading is in InfluxDB', async () => {
    const id = 'esp-outage';
    const tok = await rig.hub.addDevice(id);
    const d = await TestDevice.connect(rig.hub.url, { token: tok });
    await d.hello(id, 7, { uptimeMs: HOUR });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    await rig.influx.stopEngine();
    const base = Date.now() - 20 * 60_000;
    for (let s = 1; s <= 30; s++) d.send(telemetry(7, s, base + s * 5000));
    await d.ackOf(7, 30); // stored durably in the local log; InfluxDB is unreachable
    // The forwarder has met the outage (a failed write) and the frames wait in the local log. Waited
    // for, not sampled once: the gauges refresh on their own timer.
    await untilValue(
      () => rig.hub.metricValue('hub_forwarder_write_failures_total'),
      (n) => n > 0,
      'a failed write while InfluxDB is down',
    );
    await untilValue(
      () => rig.hub.metricValue('hub_local_log_unforwarded_frames'),
      (n) => n > 0,
      'unforwarded frames in the local log',
    );
    await rig.influx.startEngine();
    const got = await untilValue(
      () => rows(id),
      (r) => r.length >= 30 * 12,
      'backlog drained',
    );
    expect(got).toHaveLength(30 * 12);
    await d.close();
  });
});
