/**
 * Every provisioned Grafana alert rule (dashboards/grafana/provisioning/alerting/rules.yaml) is
 * evaluated against the real InfluxDB engine of the test harness, as Grafana evaluates it: query A
 * (InfluxQL, `$timeFilter` = the rule's relative time range ending now) gives one series per GROUP BY
 * tag, B reduces each series (nulls dropped), C applies the threshold; a series for which C holds is a
 * firing instance labelled with its tags, and a query with no series at all takes the rule's
 * `noDataState`. Grafana cannot run here (no binary, no Docker), so this test reads the rule file and
 * does those three steps itself; the pending period (`for`) is Grafana's scheduler and is not
 * simulated.
 *
 * The data comes from the real hub: simulated boards stream through it into InfluxDB. First, with
 * every board online and healthy, no rule fires. Then the scripted faults: one board is switched off
 * (device offline), one loses Wi-Fi with a tiny outbox so frames are dropped (data gap), one's battery
 * reads 3.15 V (low battery), a bool reading meets a field-type conflict (dead letters), and the
 * InfluxDB engine stops for more than 30 s while the boards stream (forwarder lag). Each rule then
 * fires for exactly the device or hub concerned.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { GRAFANA_DIR } from '../../dashboards/build.ts';
import { DATASOURCE_UID } from '../../dashboards/influxql.ts';
import { Channel, SimDevice } from '../../firmware-sim/index.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { type InfluxServer, influxEnv, startInflux, tempDir, untilValue } from '../harness/index.ts';

interface RuleQuery {
  refId: string;
  relativeTimeRange: { from: number; to: number };
  datasourceUid: string;
  model: {
    query?: string;
    type?: string;
    expression?: string;
    reducer?: string;
    settings?: { mode: string };
    conditions?: { evaluator: { type: string; params: number[] } }[];
  };
}
interface Rule {
  uid: string;
  title: string;
  condition: string;
  noDataState: string;
  data: RuleQuery[];
}
const rulesFile = parseYaml(readFileSync(join(GRAFANA_DIR, 'provisioning/alerting/rules.yaml'), 'utf8'));
const rules: Rule[] = rulesFile.groups.flatMap((g: { rules: Rule[] }) => g.rules);

/** What one evaluation of a rule gives: the labels of its firing instances, or NoData. */
interface Evaluation {
  firing: Record<string, string>[];
  noData: boolean;
  /** Each series' reduced value, keyed by its labels (for failure messages). */
  values: Record<string, number>;
}

const REDUCERS: Record<string, (xs: number[]) => number> = {
  last: (xs) => xs.at(-1) ?? Number.NaN,
  max: (xs) => (xs.length ? Math.max(...xs) : Number.NaN),
  min: (xs) => (xs.length ? Math.min(...xs) : Number.NaN),
  sum: (xs) => xs.reduce((a, b) => a + b, 0),
  mean: (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN),
  count: (xs) => xs.length,
};
const EVALUATORS: Record<string, (v: number, p: number[]) => boolean> = {
  gt: (v, [a = 0]) => v > a,
  lt: (v, [a = 0]) => v < a,
  gte: (v, [a = 0]) => v >= a,
  lte: (v, [a = 0]) => v <= a,
  eq: (v, [a = 0]) => v === a,
  ne: (v, [a = 0]) => v !== a,
  within_range: (v, [a = 0, b = 0]) => v > a && v < b,
  outside_range: (v, [a = 0, b = 0]) => v < a || v > b,
};

/** Grafana's `$timeFilter` for a relative range evaluated at `nowMs`. */
const timeFilter = (nowMs: number, r: { from: number; to: number }) =>
  `time >= ${nowMs - r.from * 1000}ms and time <= ${nowMs - r.to * 1000}ms`;

async function evaluate(influx: InfluxServer, rule: Rule, nowMs = Date.now()): Promise<Evaluation> {
  const byRef = new Map(rule.data.map((q) => [q.refId, q]));
  const threshold = byRef.get(rule.condition);
  const reduce = byRef.get(threshold?.model.expression ?? '');
  const source = byRef.get(reduce?.model.expression ?? '');
  if (threshold?.model.type !== 'threshold') throw new Error(`${rule.uid}: condition is not a threshold`);
  if (reduce?.model.type !== 'reduce') throw new Error(`${rule.uid}: threshold input is not a reduce`);
  if (!source?.model.query || source.datasourceUid !== DATASOURCE_UID) throw new Error(`${rule.uid}: no InfluxQL`);
  const reducer = REDUCERS[reduce.model.reducer ?? ''];
  if (!reducer) throw new Error(`${rule.uid}: reducer ${reduce.model.reducer} not simulated`);
  const [cond] = threshold.model.conditions ?? [];
  const evaluator = cond && EVALUATORS[cond.evaluator.type];
  if (!cond || !evaluator) throw new Error(`${rule.uid}: evaluator not simulated`);

  const q = source.model.query.replaceAll('$timeFilter', timeFilter(nowMs, source.relativeTimeRange));
  const { series } = await influx.influxQL(q);
  const values: Record<string, number> = {};
  const firing: Record<string, string>[] = [];
  for (const s of series) {
    // dropNN: nulls and non-numbers are left out before reducing.
    const xs = s.values.map((row) => row[1]).filter((v): v is number => typeof v === 'number' && !Number.isNaN(v));
    const v = reducer(xs);
    values[JSON.stringify(s.tags)] = v;
    if (!Number.isNaN(v) && evaluator(v, cond.evaluator.params)) firing.push(s.tags);
  }
  return { firing, noData: series.length === 0, values };
}

const ADMIN = 'a'.repeat(40);

describe('provisioned Grafana alert rules against the hub-loaded InfluxDB', () => {
  let influx: InfluxServer;
  let hub: Hub;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let http = '';
  const devices = new Map<string, SimDevice>();
  let lowBattery = false;
  const ids = { steady: 'alert-steady', offline: 'alert-offline', gap: 'alert-gap', battery: 'alert-battery' };
  // The hub tags its stats with the host name.
  const hubTag = hostname();

  const run = async (q: string) => (await influx.influxQL(q)).series;
  const metric = async (get: () => Promise<{ values: { value: number }[] }>) => (await get()).values[0]?.value ?? 0;

  /** Polls until `check` returns true (conditions, not sleeps); fails with `what` after the deadline. */
  const until = (what: string, check: () => Promise<boolean>) => untilValue(check, Boolean, what, 90_000);

  /** The latest device_status field per device, as InfluxDB has it. */
  async function latestStatus(field: string): Promise<Record<string, unknown>> {
    const series = await run(`SELECT last("${field}") FROM "device_status" GROUP BY "device"`);
    return Object.fromEntries(series.map((s) => [s.tags.device, s.values[0]?.[1]]));
  }

  beforeAll(async () => {
    influx = await startInflux({ bucket: 'alerts' });
    // Another writer made `state` a string in this week's shard: every bool reading the hub forwards
    // this week is refused (field type conflict) and dead-lettered, while numbers flow.
    const poison = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: `telemetry,channel=legacy,device=legacy-logger state="n/a" ${Date.now()}`,
    });
    expect(poison.status).toBe(204);

    dir = await tempDir('grafana-alerts');
    const config = configFrom({
      HUB_HOST: '127.0.0.1',
      HUB_PORT: '0',
      HUB_DATA_DIR: dir.path,
      HUB_ADMIN_TOKEN: ADMIN,
      ...influxEnv(influx),
      INFLUX_FLUSH_INTERVAL_MS: '50',
      INFLUX_STATS_INTERVAL_MS: '300',
      // Retry soon after the engine is back.
      INFLUX_MAX_RETRY_DELAY_MS: '1000',
      INFLUX_TIMEOUT_MS: '2000',
    });
    hub = buildHub(config, { logger: createLogger('silent') });
    const { port } = await hub.start();
    http = `http://127.0.0.1:${port}`;
    const registry = hub.context().registry;
    if (!registry) throw new Error('the hub opened no device registry');
    let index = 0;
    for (const id of Object.values(ids)) {
      const { token } = await registry.add(id);
      const dev = new SimDevice({
        id,
        token,
        url: `ws://127.0.0.1:${port}/v1/device`,
        seed: 11,
        index: index++,
        // The gap board's flash holds two frames: a few seconds offline and the oldest are dropped.
        ...(id === ids.gap ? { outboxFrames: 2 } : {}),
      });
      if (id === ids.battery) {
        const read = dev.sensors.read.bind(dev.sensors);
        // The scripted battery: 3.15 V once `lowBattery` is set (the wire value is millivolts).
        dev.sensors.read = (ch, hostMs, uptimeMs) =>
          lowBattery && ch === Channel.BATTERY_V ? 3150 : read(ch, hostMs, uptimeMs);
      }
      devices.set(id, dev);
      dev.start();
    }
  }, 120_000);

  afterAll(async () => {
    for (const d of devices.values()) await d.stop();
    await hub?.stop();
    await influx?.stop();
    await dir?.remove();
  });

  it('the rule file holds the five rules, each a query, a reduce and a threshold', () => {
    expect(rules.map((r) => r.uid).sort()).toEqual([
      'esp32hub-data-gap',
      'esp32hub-dead-letters',
      'esp32hub-device-offline',
      'esp32hub-forwarder-lag',
      'esp32hub-low-battery',
    ]);
  });

  it('while every board is online and healthy, no rule fires', async () => {
    await until('all four boards online in device_status, battery readings and hub_stats', async () => {
      const states = await latestStatus('state_code');
      const battery = await run(
        `SELECT last("value") FROM "telemetry" WHERE "channel" = 'battery_v' GROUP BY "device"`,
      );
      const stats = await run('SELECT count("dead_letter_lines") FROM "hub_stats"');
      return (
        Object.values(ids).every((id) => states[id] === 2) &&
        battery.length === 4 &&
        Number(stats[0]?.values[0]?.[1] ?? 0) >= 3
      );
    });
    // A second hub instance, without the steady board's session, reports it offline (device_status
    // has no hub tag): the board is still online for the offline rule, as the instance holding its
    // session says.
    const otherAt = Date.now();
    const other = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: `device_status,device=${ids.steady} state_code=0,gaps_total=0,errors_total=0 ${otherAt}`,
    });
    expect(other.status).toBe(204);
    // A board that moved between two instances: each writes its own gaps_total (one saw 4 gaps, the
    // other none); interleaved in one series, their difference would read as new gaps.
    const moved = [0, 1, 2, 3].map(
      (i) =>
        `device_status,device=esp-moved,hub=${i % 2 ? 'hub-x' : 'hub-y'} state_code=2,gaps_total=${i % 2 ? 4 : 0},errors_total=0 ${otherAt - 4000 + i * 1000}`,
    );
    const movedWrite = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: moved.join('\n'),
    });
    expect(movedWrite.status).toBe(204);
    for (const rule of rules) {
      // Evaluated right after that point: it is the newest status of the steady board.
      const result = await evaluate(influx, rule, otherAt + 1);
      expect(result.firing, `${rule.title}: ${JSON.stringify(result.values)}`).toEqual([]);
      // The hub's own series exist, so none of the rules reads "no data" as an alert.
      if (rule.noDataState === 'Alerting') expect(result.noData, rule.title).toBe(false);
    }
  }, 120_000);

  it('fires on a board switched off, lost frames, a low battery, dead letters and forwarder lag', async () => {
    const gapsBefore = Number((await latestStatus('gaps_total'))[ids.gap] ?? 0);
    // Device offline: the board is switched off.
    await devices.get(ids.offline)?.stop();
    // Data gap: Wi-Fi gone for 5 s; the 2-frame outbox drops the oldest frames meanwhile.
    devices.get(ids.gap)?.dropWifi(5000);
    // Low battery.
    lowBattery = true;
    // Dead letters: identify blinks the LED, a bool reading InfluxDB now refuses.
    const res = await fetch(`${http}/api/devices/${ids.steady}/commands`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'identify', args: { duration_ms: 300 } }),
    });
    expect(res.status).toBe(202);

    await until('the faults are in InfluxDB', async () => {
      const states = await latestStatus('state_code');
      const gaps = Number((await latestStatus('gaps_total'))[ids.gap] ?? 0);
      const battery = await run(
        `SELECT last("value") FROM "telemetry" WHERE "channel" = 'battery_v' AND "device" = '${ids.battery}'`,
      );
      const dead = await run('SELECT last("dead_letter_lines") FROM "hub_stats"');
      return (
        states[ids.offline] === 0 &&
        gaps > gapsBefore &&
        battery[0]?.values[0]?.[1] === 3.15 &&
        Number(dead[0]?.values[0]?.[1] ?? 0) > 0
      );
    });

    // Forwarder lag: InfluxDB is down for more than 30 s while the boards stream; the hub keeps the
    // readings in its local log and its newest stats point, with the lag, is written once it is back.
    await influx.stopEngine();
    await until(
      'the forwarder lag passes 33 s',
      async () => (await metric(() => hub.metrics.forwarderLagSeconds.get())) > 33,
    );
    await influx.startEngine();
    const backAt = Date.now();
    await until('the backlog is in InfluxDB and stats written after it', async () => {
      const depth = await metric(() => hub.metrics.logDepthFrames.get());
      const after = await run(`SELECT count("forwarder_lag_s") FROM "hub_stats" WHERE time > ${backAt}ms`);
      return depth === 0 && Number(after[0]?.values[0]?.[1] ?? 0) >= 2;
    });

    const fired = async (uid: string) => {
      const rule = rules.find((r) => r.uid === uid);
      if (!rule) throw new Error(`no rule ${uid}`);
      const result = await evaluate(influx, rule);
      return { fired: result.firing, values: result.values };
    };
    const offline = await fired('esp32hub-device-offline');
    expect(offline.fired, JSON.stringify(offline.values)).toEqual([{ device: ids.offline }]);
    const gap = await fired('esp32hub-data-gap');
    expect(gap.fired, JSON.stringify(gap.values)).toEqual([{ device: ids.gap, hub: hubTag }]);
    const battery = await fired('esp32hub-low-battery');
    expect(battery.fired, JSON.stringify(battery.values)).toEqual([{ device: ids.battery }]);
    const lag = await fired('esp32hub-forwarder-lag');
    expect(lag.fired, JSON.stringify(lag.values)).toEqual([{ hub: hubTag }]);
    const dead = await fired('esp32hub-dead-letters');
    expect(dead.fired, JSON.stringify(dead.values)).toEqual([{ hub: hubTag }]);
  }, 180_000);

  it('with the hub silent for 5 minutes, the forwarder-lag rule alerts on no data; the device rules do not', async () => {
    await hub.stop();
    // Nothing is written any more: evaluating 6 minutes from now is what Grafana sees then.
    const later = Date.now() + 6 * 60_000;
    const noData: string[] = [];
    for (const rule of rules) {
      const result = await evaluate(influx, rule, later);
      if (!result.noData) continue;
      noData.push(rule.uid);
      expect(rule.noDataState, rule.title).toBe(rule.uid === 'esp32hub-forwarder-lag' ? 'Alerting' : 'OK');
    }
    // The short windows are empty by then (the 15-minute ones still hold the faults above).
    expect(noData.sort()).toEqual(['esp32hub-dead-letters', 'esp32hub-device-offline', 'esp32hub-forwarder-lag']);
  });
});
