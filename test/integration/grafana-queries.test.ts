/**
 * Every query of every provisioned Grafana panel runs against a real InfluxDB engine (the harness's
 * 1.x engine: InfluxQL as Grafana sends it), loaded the way people load it: simulated devices stream
 * through the real hub, whose forwarder writes readings, `hub_stats` and `device_status`. Template
 * variables and Grafana's macros are expanded as Grafana would; each query must return non-empty
 * series of the expected shape. A panel added with a query that returns nothing fails this test.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRAFANA_DIR } from '../../dashboards/build.ts';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/index.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import {
  type InfluxQLSeries,
  type InfluxServer,
  influxEnv,
  startInflux,
  tempDir,
  untilValue,
} from '../harness/index.ts';

interface Target {
  query: string;
}
interface Panel {
  title: string;
  repeat?: string;
  targets: Target[];
}
interface Variable {
  name: string;
  type: string;
  query: string;
  current?: { value: string };
}
interface Dashboard {
  templating?: { list: Variable[] };
  panels: Panel[];
}
const dashboardsDir = join(GRAFANA_DIR, 'dashboards');
const dashboards = readdirSync(dashboardsDir)
  .filter((f) => f.endsWith('.json'))
  .map((file) => ({ file, json: JSON.parse(readFileSync(join(dashboardsDir, file), 'utf8')) as Dashboard }));

/** Grafana's `$timeFilter` for a time range, as its InfluxQL datasource writes it. */
const timeFilter = (fromMs: number, toMs: number) => `time >= ${fromMs}ms and time <= ${toMs}ms`;

/** Grafana's `$__interval`: range / max data points, never below the datasource's `timeInterval` (5s). */
function interval(fromMs: number, toMs: number, maxDataPoints = 1000): string {
  return `${Math.max(5, Math.ceil((toMs - fromMs) / maxDataPoints / 1000))}s`;
}

/** A variable's value inside a regex literal (`/^$device$/`): Grafana escapes regex metacharacters. */
const regexEscape = (v: string) => v.replace(/[\\^$*+?.()|[\]{}/]/g, '\\$&');

function expand(query: string, vars: Record<string, string>, range: { fromMs: number; toMs: number }): string {
  let q = query
    .replaceAll('$timeFilter', timeFilter(range.fromMs, range.toMs))
    .replaceAll('$__interval', interval(range.fromMs, range.toMs));
  for (const [name, value] of Object.entries(vars)) {
    q = q.replaceAll(`/^$${name}$/`, `/^${regexEscape(value)}$/`).replaceAll(`$${name}`, value.replaceAll("'", "\\'"));
  }
  const leftover = /\$\w+/.exec(q);
  if (leftover) throw new Error(`unexpanded variable ${leftover[0]} in: ${q}`);
  return q;
}

const ADMIN = 'a'.repeat(40);
const STALE_DEVICE = 'grafana-stale-board';

describe('every Grafana panel query returns data from the hub-loaded InfluxDB', () => {
  let influx: InfluxServer;
  let hub: Hub;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const range = { fromMs: 0, toMs: 0 };
  const devices = fleetDeviceIds(3, 'grafana-');

  const run = async (q: string) => (await influx.influxQL(q)).series;

  beforeAll(async () => {
    influx = await startInflux({ bucket: 'grafana' });
    dir = await tempDir('grafana-queries');
    const config = configFrom({
      HUB_HOST: '127.0.0.1',
      HUB_PORT: '0',
      HUB_DATA_DIR: dir.path,
      ...influxEnv(influx),
      INFLUX_FLUSH_INTERVAL_MS: '50',
      INFLUX_STATS_INTERVAL_MS: '300',
      HUB_ADMIN_TOKEN: ADMIN,
    });
    hub = buildHub(config, { extensions: [liveExtension(config)], logger: createLogger('silent') });
    const { port } = await hub.start();
    const registry = hub.context().registry;
    if (!registry) throw new Error('the hub opened no device registry');
    const tokens = new Map<string, string>();
    for (const id of devices) tokens.set(id, (await registry.add(id)).token);
    // A fourth registered device that never connects: the fleet shows it offline.
    await registry.add('grafana-never');

    // A board last heard from 20 minutes ago (another writer, before the hub's data): its reading is
    // the last value but not a current one.
    const staleWrite = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: `telemetry,channel=temperature,device=${STALE_DEVICE},unit=°C value=19.5 ${Date.now() - 20 * 60_000}`,
    });
    expect(staleWrite.status).toBe(204);
    // A numeric channel without a unit on the first board (the simulated boards have none), written as
    // the hub writes it: no unit tag.
    const now = Date.now();
    const counter = [0, 1, 2, 3].map(
      (i) => `telemetry,channel=counter,device=${devices[0]} value=${i} ${now - i * 10_000}`,
    );
    const unitless = await fetch(`${influx.engineUrl}/write?db=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: counter.join('\n'),
    });
    expect(unitless.status).toBe(204);

    const fleet = new Fleet({
      url: `ws://127.0.0.1:${port}/v1/device`,
      devices: devices.length,
      idPrefix: 'grafana-',
      tokens,
      seed: 7,
      rate: 5,
      scenario: 'steady',
    });
    fleet.start();
    // The first board blinks its LED (identify): a bool channel for the state timeline.
    const identify = async () =>
      fetch(`http://127.0.0.1:${port}/api/devices/${devices[0]}/commands`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'identify', args: { duration_ms: 300 } }),
      });
    let identified = false;
    // Stream until InfluxDB holds several points of every channel of every board, the LED's on and
    // off included (a condition, not a fixed wait).
    await untilValue(
      async () => {
        if (!identified) identified = (await identify()).status === 202;
        const perChannel = await run('SELECT count("value") FROM "telemetry" GROUP BY "device", "channel"');
        const led = await run(`SELECT count("state") FROM "telemetry" WHERE "device" = '${devices[0]}'`);
        const full = devices.filter(
          (id) => perChannel.filter((s) => s.tags.device === id && Number(s.values[0]?.[1]) >= 3).length >= 7,
        );
        return { full: full.length, led: Number(led[0]?.values[0]?.[1] ?? 0) };
      },
      (v) => v.full === devices.length && v.led >= 2,
      'every channel of every board, and the LED on and off, in InfluxDB',
    );
    const summary = await fleet.stop({ drainMs: 2000 });
    expect(summary.totals.framesAcked).toBeGreaterThan(0);
    const stoppedAtMs = Date.now();

    // Wait until InfluxDB holds what was acked and the stats have written a few points (rates start
    // with the second point).
    await untilValue(
      async () => {
        const stats = await run('SELECT count("device_sessions") FROM "hub_stats"');
        const status = await run('SELECT count("state_code") FROM "device_status"');
        // Stats written after the fleet stopped: the presence checked below is the one after it left
        // (points from while it ran say online; a stats write can be in flight as it stops, so two).
        const after = await run(`SELECT count("device_sessions") FROM "hub_stats" WHERE time > ${stoppedAtMs}ms`);
        return {
          depth: (await hub.metrics.logDepthFrames.get()).values[0]?.value ?? 1,
          statPoints: Number(stats[0]?.values[0]?.[1] ?? 0),
          afterStop: Number(after[0]?.values[0]?.[1] ?? 0),
          statusSeries: status.length,
        };
      },
      (v) => v.depth === 0 && v.statPoints >= 3 && v.afterStop >= 2 && v.statusSeries > 0,
      'the hub caught up (local log forwarded, stats written after the stop)',
    );
    range.toMs = Date.now() + 1000;
    range.fromMs = range.toMs - 3_600_000;
  }, 120_000);

  afterAll(async () => {
    await hub?.stop();
    await influx?.stop();
    await dir?.remove();
  });

  it('the data is there: every simulated device has readings in several units', async () => {
    const units = await run('SHOW TAG VALUES FROM "telemetry" WITH KEY = "unit"');
    expect(units[0]?.values.length).toBeGreaterThanOrEqual(3);
    const ids = (await run('SHOW TAG VALUES FROM "telemetry" WITH KEY = "device"'))[0]?.values.map((v) => v[1]);
    expect(ids).toEqual([...devices, STALE_DEVICE]);
  });

  it('device_status covers every registered device; after the fleet stopped all four are offline', async () => {
    const latest = await run('SELECT last("state_code") AS "state" FROM "device_status" GROUP BY "device"');
    const states = Object.fromEntries(latest.map((s) => [s.tags.device, s.values[0]?.[1]]));
    expect(states).toEqual(Object.fromEntries([...devices, 'grafana-never'].map((id) => [id, 0])));
    const offline = await run('SELECT last("devices_offline") FROM "hub_stats"');
    expect(offline[0]?.values[0]?.[1]).toBe(4);
  });

  it('a board last heard from 20 minutes ago has a last value but no current one: the table says stale', async () => {
    const fleet = dashboards.find((d) => d.file === 'fleet-overview.json')?.json;
    const table = fleet?.panels.find((p) => p.title === 'Latest values');
    if (!table) throw new Error('no Latest values table');
    const [current, last] = table.targets.map((t) => expand(t.query, { stale: '5m' }, range));
    const boards = async (q: string | undefined) => [...new Set((await run(q ?? '')).map((s) => s.tags.device))];
    expect(await boards(last)).toEqual([...devices, STALE_DEVICE]);
    // The fleet stopped less than 5 minutes ago: its boards are current; the old one is not.
    expect(await boards(current)).toEqual(devices);
  });

  for (const { file, json } of dashboards) {
    describe(file, () => {
      /** Template variables resolved in order, as Grafana does on load: first value of each query. */
      async function variableValues(): Promise<Record<string, string[]>> {
        const values: Record<string, string[]> = {};
        for (const v of json.templating?.list ?? []) {
          if (v.type === 'custom') {
            // Its options are the comma-separated query; the current one first.
            const options = v.query.split(',');
            values[v.name] = v.current ? [v.current.value, ...options.filter((o) => o !== v.current?.value)] : options;
            continue;
          }
          const current = Object.fromEntries(Object.entries(values).map(([k, vs]) => [k, vs[0] as string]));
          const series = await run(expand(v.query, current, range));
          const found = series.flatMap((s) => s.values.map((row) => String(row[1])));
          expect(found.length, `variable $${v.name} has no values`).toBeGreaterThan(0);
          values[v.name] = found;
        }
        return values;
      }

      it.each(json.panels.map((p) => [p.title, p] as const))('panel "%s"', async (_title, panel) => {
        const values = await variableValues();
        const single = Object.fromEntries(Object.entries(values).map(([k, vs]) => [k, vs[0] as string]));
        // A repeated panel runs once per value of its variable.
        const repeat = panel.repeat;
        const repeats = repeat ? (values[repeat] ?? []).map((v) => ({ ...single, [repeat]: v })) : [single];
        expect(repeats.length).toBeGreaterThan(0);
        for (const vars of repeats) {
          for (const target of panel.targets) {
            const q = expand(target.query, vars, range);
            const series = await run(q);
            expect(series.length, `no series for: ${q}`).toBeGreaterThan(0);
            expectShape(q, series);
          }
        }
      });
    });
  }
});

/** Non-empty, with a time column, at least one non-null value, and the tags its GROUP BY names. */
function expectShape(q: string, series: InfluxQLSeries[]): void {
  // The outer statement's GROUP BY decides the series tags; a subquery's does not.
  const outer = q.replace(/\(SELECT .*\)/, '(subquery)');
  const groupTags = [...(/GROUP BY (.*?)(?: fill\(|$)/.exec(outer)?.[1] ?? '').matchAll(/"(\w+)"/g)].map(
    (m) => m[1] as string,
  );
  for (const s of series) {
    expect(s.columns[0], q).toBe('time');
    expect(s.columns.length, q).toBeGreaterThan(1);
    expect(Object.keys(s.tags).sort(), q).toEqual([...groupTags].sort());
  }
  const hasValue = series.some((s) => s.values.some((row) => row.slice(1).some((v) => v !== null)));
  expect(hasValue, `only nulls for: ${q}`).toBe(true);
}
