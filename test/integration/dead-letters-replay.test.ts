/**
 * Dead letters end to end against the real InfluxDB of the harness (1.x engine behind nginx's
 * `/api/v2/write`, docs/testing.md): another writer poisons the `value` field with a string, so the
 * engine rejects the hub's numeric readings with its own `field type conflict` 400. A running hub
 * dead-letters them (ACKs were sent: they exist nowhere else), `/readyz` warns, the admin API lists
 * them, a replay before the fix keeps them with the new reason, and once the cause is fixed (here: a
 * fresh database; in 1.x a field's type lives on in the shard after DROP SERIES while other series of
 * the measurement remain) `npm run hub -- dead-letters replay`, run beside the live hub, puts every
 * reading into InfluxDB with its exact value and timestamp and empties the store.
 */
import { describe, expect, it } from 'vitest';
import { influxEnv, untilValue } from '../harness/index.ts';
import { useInfluxHub } from '../harness/influx-hub.ts';
import { expectedReadings, TEST_CHANNELS, TestDevice, telemetry } from './ingest-device-client.ts';
import { runCli } from './registry-cli.ts';

const HOUR = 3_600_000;
const ADMIN = 'admin-token-for-dead-letter-tests-0123456789';
const FRAMES = 12;
/** Numeric readings per frame: temperature, humidity, voltage × 3 samples (the door booleans are stored). */
const NUMERIC_PER_FRAME = 9;
const FRESH_DB = 'telemetry_fixed';

interface Totals {
  records: number;
  lines: number;
  bytes: number;
  maxBytes: number;
}
interface View {
  id: number;
  status: number;
  reason: string;
  replays: number;
  lineCount: number;
  lines: string[];
}

describe('dead letters: rejected by the real InfluxDB, listed, replayed once the cause is fixed', () => {
  const rig = useInfluxHub({ bucket: 'dead_letters', env: { HUB_ADMIN_TOKEN: ADMIN } });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${rig.hub.http}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const totals = async () => (await api('GET', '/api/admin/dead-letters')).json.totals as Totals;

  const numericRows = async (db: string) =>
    (await rig.influx.influxQL(`SELECT "value" FROM telemetry WHERE device = 'esp-dl' AND "value" > -1000`, { db }))
      .rows.length;

  it('keeps every rejected reading through a failed replay and delivers it after the fix', async () => {
    const base = Date.now() - 30 * 60_000;
    // Another writer got there first: `value` is a string in this shard.
    await rig.poisonValueField(base);

    const token = await rig.hub.addDevice('esp-dl');
    const d = await TestDevice.connect(rig.hub.url, { token });
    await d.hello('esp-dl', 1, { uptimeMs: HOUR });
    d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const expected: { timeMs: number; channel: string; value: number | boolean }[] = [];
    for (let s = 1; s <= FRAMES; s++) {
      d.send(telemetry(1, s, base + s * 10_000));
      expected.push(...expectedReadings(s, base + s * 10_000));
    }
    await d.ackOf(1, FRAMES); // acknowledged: the hub now owns these readings
    await d.close();

    // Every numeric reading is dead-lettered with the engine's reason; the booleans are stored.
    const all = FRAMES * NUMERIC_PER_FRAME;
    await untilValue(totals, (t) => t.lines === all, 'all numeric readings dead-lettered');
    const list = (await api('GET', '/api/admin/dead-letters?reason=field%20type%20conflict&limit=1000&lines=1000'))
      .json;
    const records = list.records as View[];
    expect(records.reduce((n, r) => n + r.lineCount, 0)).toBe(all);
    expect(records.every((r) => r.status === 400 && r.replays === 0)).toBe(true);
    expect(records[0]?.reason).toContain('already exists as type string');
    expect((await api('GET', '/api/admin/dead-letters?status=422')).json.records).toEqual([]);
    expect(await rig.hub.metricValue('hub_forwarder_dead_lettered_lines_total')).toBe(all);
    expect(await rig.hub.metricValue('hub_dead_letter_lines')).toBe(all);

    // /readyz says so (a warning; the hub stays ready: nothing is gained by taking it out of rotation).
    const ready = await fetch(`${rig.hub.http}/readyz`);
    expect(ready.status).toBe(200);
    const check = ((await ready.json()) as { deadLetters: Record<string, unknown> }).deadLetters;
    expect(check).toMatchObject({ state: 'warning', newLines: all, evictedLines: 0, storedLines: all });
    expect(check.perSecond).toBeGreaterThan(0);

    // Replaying before the cause is fixed: InfluxDB rejects them again; they stay, with the new reason.
    const early = await api('POST', '/api/admin/dead-letters/replay', {});
    expect(early.status).toBe(200);
    expect(early.json).toMatchObject({ storedLines: 0, rejectedLines: all, complete: true, stoppedBy: null });
    const after = (await api('GET', '/api/admin/dead-letters?limit=1000')).json;
    expect((after.totals as Totals).lines).toBe(all);
    expect((after.records as View[]).every((r) => r.replays === 1 && r.reason.includes('field type conflict'))).toBe(
      true,
    );
    expect(await numericRows(rig.influx.bucket)).toBe(0);

    // The fix: a fresh database. The CLI replays beside the running hub (same lmdb store, two processes).
    await rig.influx.influxQL(`CREATE DATABASE "${FRESH_DB}"`);
    const env = {
      HUB_DATA_DIR: rig.hub.dir.path,
      ...influxEnv(rig.influx),
    };
    const listed = await runCli(['dead-letters', 'list', '--json', '--limit', '1000'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { totals: Totals }).totals.lines).toBe(all);

    const replay = await runCli(['dead-letters', 'replay', '--bucket', FRESH_DB, '--json'], env);
    expect(replay.code, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({
      storedLines: all,
      rejectedLines: 0,
      complete: true,
      bucket: FRESH_DB,
    });

    // Every reading is in InfluxDB with its exact value and time; the store is empty (the hub sees it too).
    const rows = (
      await rig.influx.influxQL(`SELECT "value", "channel" FROM telemetry WHERE device = 'esp-dl'`, { db: FRESH_DB })
    ).rows.map((r) => ({ timeMs: r.time as number, channel: r.channel as string, value: r.value as number }));
    const numeric = expected.filter((e) => typeof e.value === 'number');
    const byKey = (a: { timeMs: number; channel: string }, b: { timeMs: number; channel: string }) =>
      a.timeMs - b.timeMs || a.channel.localeCompare(b.channel);
    expect(rows.sort(byKey)).toEqual(numeric.sort(byKey));
    expect(await totals()).toMatchObject({ records: 0, lines: 0, bytes: 0 });
    const empty = await runCli(['dead-letters', 'list'], env);
    expect(empty.stdout).toContain('0 dead-lettered line(s) in 0 record(s)');
  }, 180_000);
});
