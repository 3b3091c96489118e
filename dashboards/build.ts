/**
 * Dashboards as code: builds the Grafana provisioning files in `dashboards/grafana/` from one
 * description, so every panel gets the same datasource, units and query conventions.
 *
 *   npx tsx dashboards/build.ts          # rewrite the JSON/YAML files
 *   npx tsx dashboards/build.ts --check  # exit 1 if the committed files differ (run by the tests)
 *
 * Queries are InfluxQL (raw mode): they run on InfluxDB 1.8+, on 2.x through the bucket's DBRP
 * mapping, and on 3.x — and our tests execute every one of them against a real engine. The
 * measurements they read are documented in docs/storage.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { alertRulesYaml, contactPointsYaml, policiesYaml } from './alerts.ts';
import { DATASOURCE_UID, INFLUX_DATASOURCE as DS } from './influxql.ts';

export { DATASOURCE_UID };

const ROOT = dirname(fileURLToPath(import.meta.url));
export const GRAFANA_DIR = join(ROOT, 'grafana');

interface Target {
  refId: string;
  query: string;
  alias?: string;
  resultFormat?: 'time_series' | 'table';
}

interface PanelSpec {
  title: string;
  type: 'timeseries' | 'stat' | 'table' | 'bargauge' | 'gauge' | 'state-timeline';
  unit: string;
  targets: Target[];
  w: number;
  h: number;
  description?: string;
  repeat?: string;
  options?: Record<string, unknown>;
  fieldConfig?: Record<string, unknown>;
  transformations?: unknown[];
  decimals?: number;
  thresholds?: { color: string; value: number | null }[];
  mappings?: unknown[];
}

function target(refId: string, query: string, extra: Partial<Target> = {}) {
  return { refId, datasource: DS, rawQuery: true, resultFormat: 'time_series', query, ...extra };
}

/** Lays panels out left to right, wrapping at 24 columns. */
function layout(specs: PanelSpec[]) {
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  return specs.map((p, i) => {
    if (x + p.w > 24) {
      x = 0;
      y += rowHeight;
      rowHeight = 0;
    }
    const gridPos = { x, y, w: p.w, h: p.h };
    x += p.w;
    rowHeight = Math.max(rowHeight, p.h);
    return {
      id: i + 1,
      type: p.type,
      title: p.title,
      description: p.description ?? '',
      datasource: DS,
      gridPos,
      ...(p.repeat ? { repeat: p.repeat, repeatDirection: 'h' as const, maxPerRow: 2 } : {}),
      targets: p.targets.map((t) => target(t.refId, t.query, { alias: t.alias, resultFormat: t.resultFormat })),
      fieldConfig: {
        defaults: {
          unit: p.unit,
          ...(p.decimals !== undefined ? { decimals: p.decimals } : {}),
          thresholds: {
            mode: 'absolute',
            steps: p.thresholds ?? [{ color: 'green', value: null }],
          },
          mappings: p.mappings ?? [],
          ...(p.fieldConfig ?? {}),
        },
        overrides: [],
      },
      options: p.options ?? {},
      ...(p.transformations ? { transformations: p.transformations } : {}),
    };
  });
}

function dashboard(opts: {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  refresh: string;
  from: string;
  panels: PanelSpec[];
  variables?: unknown[];
  links?: unknown[];
}) {
  return {
    uid: opts.uid,
    title: opts.title,
    description: opts.description,
    tags: ['esp32hub', ...opts.tags],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: opts.refresh,
    time: { from: opts.from, to: 'now' },
    timezone: 'browser',
    timepicker: { refresh_intervals: ['5s', '10s', '30s', '1m', '5m', '15m'] },
    links: opts.links ?? [],
    annotations: { list: [] },
    templating: { list: opts.variables ?? [] },
    panels: layout(opts.panels),
  };
}

/** A link to the dashboards carrying `tag`, keeping the time range. */
function link(title: string, tag: string) {
  return {
    title,
    type: 'dashboards',
    tags: [tag],
    asDropdown: false,
    includeVars: false,
    keepTime: true,
    icon: 'dashboard',
    targetBlank: false,
    tooltip: '',
    url: '',
  };
}

/** Restricts a device-detail query to the dashboard's `$device`. */
const DEVICE_FILTER = 'WHERE "device" =~ /^$device$/';

const STATE_MAPPINGS = [
  {
    type: 'value',
    options: {
      '0': { text: 'offline', color: 'red', index: 0 },
      '1': { text: 'stale', color: 'orange', index: 1 },
      '2': { text: 'online', color: 'green', index: 2 },
    },
  },
];

/** Latest value of a hub_stats field summed over hub instances. */
const hubTotal = (field: string) =>
  `SELECT sum("${field}") FROM (SELECT last("${field}") AS "${field}" FROM "hub_stats" WHERE $timeFilter GROUP BY "hub")`;
/** A hub_stats field over time, one series per hub instance. */
const hubSeries = (field: string, fn = 'mean') =>
  `SELECT ${fn}("${field}") FROM "hub_stats" WHERE $timeFilter GROUP BY time($__interval), "hub" fill(null)`;

/** A fleet-wide count of devices in one presence state; any device in it turns the stat `alert`. */
function presenceStat(
  state: 'online' | 'stale' | 'offline',
  description: string | undefined,
  alert: string | null,
): PanelSpec {
  return {
    title: `Devices ${state}`,
    type: 'stat',
    unit: 'short',
    w: 4,
    h: 4,
    ...(description ? { description } : {}),
    targets: [{ refId: 'A', query: hubTotal(`devices_${state}`) }],
    thresholds: [{ color: 'green', value: null }, ...(alert ? [{ color: alert, value: 1 }] : [])],
  };
}

export function fleetOverview() {
  return dashboard({
    uid: 'esp32hub-fleet',
    title: 'ESP32 fleet overview',
    description: 'Every device at a glance: presence, ingest rate, latest values, gaps and errors, battery and Wi-Fi.',
    tags: ['fleet'],
    refresh: '10s',
    from: 'now-1h',
    links: [link('Device detail', 'device'), link('Hub health', 'hub')],
    panels: [
      presenceStat('online', undefined, null),
      presenceStat('stale', 'Connected, but silent for more than three sample periods.', 'orange'),
      presenceStat('offline', 'Known devices without a live session.', 'red'),
      {
        title: 'Ingest rate',
        type: 'timeseries',
        unit: 'ops',
        w: 12,
        h: 8,
        description: 'Frames and readings per second committed by the hub.',
        targets: [
          { refId: 'A', query: hubSeries('frames_per_s'), alias: 'frames/s $tag_hub' },
          { refId: 'B', query: hubSeries('readings_per_s'), alias: 'readings/s $tag_hub' },
        ],
      },
      {
        title: 'Latest values',
        type: 'table',
        unit: 'none',
        w: 12,
        h: 10,
        description: 'The last reading of every channel of every device in the time range.',
        targets: [
          {
            refId: 'A',
            resultFormat: 'table',
            query:
              'SELECT last("value") AS "value" FROM "telemetry" WHERE $timeFilter GROUP BY "device", "channel", "unit"',
          },
        ],
      },
      {
        title: 'Devices with gaps or decode errors',
        type: 'table',
        unit: 'short',
        w: 12,
        h: 10,
        description: 'Sequence gaps (frames lost before reaching the hub) and rejected frames, per device.',
        targets: [
          {
            refId: 'A',
            resultFormat: 'table',
            query:
              'SELECT last("gaps_total") AS "gaps", last("errors_total") AS "errors", last("dropped_frames") AS "dropped by device" FROM "device_status" WHERE $timeFilter GROUP BY "device"',
          },
        ],
      },
      {
        title: 'Battery',
        type: 'bargauge',
        unit: 'volt',
        w: 12,
        h: 8,
        decimals: 2,
        targets: [
          {
            refId: 'A',
            alias: '$tag_device',
            query:
              'SELECT last("value") FROM "telemetry" WHERE "channel" = \'battery_v\' AND $timeFilter GROUP BY "device"',
          },
        ],
        fieldConfig: { min: 3.0, max: 4.2 },
        thresholds: [
          { color: 'red', value: null },
          { color: 'orange', value: 3.4 },
          { color: 'green', value: 3.6 },
        ],
        options: { orientation: 'horizontal', displayMode: 'gradient' },
      },
      {
        title: 'Wi-Fi signal',
        type: 'bargauge',
        unit: 'dBm',
        w: 12,
        h: 8,
        targets: [
          {
            refId: 'A',
            alias: '$tag_device',
            query:
              'SELECT last("value") FROM "telemetry" WHERE "channel" = \'rssi_dbm\' AND $timeFilter GROUP BY "device"',
          },
        ],
        fieldConfig: { min: -100, max: -30 },
        thresholds: [
          { color: 'red', value: null },
          { color: 'orange', value: -80 },
          { color: 'green', value: -67 },
        ],
        options: { orientation: 'horizontal', displayMode: 'gradient' },
      },
    ],
  });
}

/** The latest value of a per-device counter in `device_status`; any count turns the stat `alert`. */
function deviceCounterStat(title: string, field: string, alert: string): PanelSpec {
  return {
    title,
    type: 'stat',
    unit: 'short',
    w: 6,
    h: 4,
    targets: [{ refId: 'A', query: `SELECT last("${field}") FROM "device_status" ${DEVICE_FILTER} AND $timeFilter` }],
    thresholds: [
      { color: 'green', value: null },
      { color: alert, value: 1 },
    ],
  };
}

export function deviceDetail() {
  const device = DEVICE_FILTER;
  return dashboard({
    uid: 'esp32hub-device',
    title: 'ESP32 device detail',
    description: 'One device: every channel grouped by unit, min/mean/max per interval, presence and link health.',
    tags: ['device'],
    refresh: '10s',
    from: 'now-6h',
    links: [link('Fleet overview', 'fleet')],
    variables: [
      {
        name: 'device',
        label: 'Device',
        type: 'query',
        datasource: DS,
        query: 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "device"',
        refresh: 2,
        sort: 1,
        multi: false,
        includeAll: false,
      },
      {
        name: 'unit',
        label: 'Unit',
        type: 'query',
        datasource: DS,
        query: 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "unit" WHERE "device" =~ /^$device$/',
        refresh: 2,
        sort: 1,
        multi: true,
        includeAll: true,
        hide: 0,
      },
    ],
    panels: [
      {
        title: 'Presence',
        type: 'stat',
        unit: 'none',
        w: 6,
        h: 4,
        description: 'online: streaming; stale: connected but silent; offline: no session.',
        targets: [{ refId: 'A', query: `SELECT last("state_code") FROM "device_status" ${device} AND $timeFilter` }],
        mappings: STATE_MAPPINGS,
        thresholds: [
          { color: 'red', value: null },
          { color: 'orange', value: 1 },
          { color: 'green', value: 2 },
        ],
      },
      deviceCounterStat('Sequence gaps', 'gaps_total', 'orange'),
      deviceCounterStat('Rejected frames', 'errors_total', 'red'),
      {
        title: 'Readings per interval',
        type: 'stat',
        unit: 'short',
        w: 6,
        h: 4,
        targets: [{ refId: 'A', query: `SELECT count("value") FROM "telemetry" ${device} AND $timeFilter` }],
      },
      {
        title: 'Channels in $unit',
        type: 'timeseries',
        unit: 'none',
        w: 12,
        h: 9,
        repeat: 'unit',
        description: 'Mean per interval, one series per channel of this unit; min and max as dashed lines.',
        targets: [
          {
            refId: 'A',
            alias: '$tag_channel mean',
            query: `SELECT mean("value") FROM "telemetry" ${device} AND "unit" = '$unit' AND $timeFilter GROUP BY time($__interval), "channel" fill(null)`,
          },
          {
            refId: 'B',
            alias: '$tag_channel min',
            query: `SELECT min("value") FROM "telemetry" ${device} AND "unit" = '$unit' AND $timeFilter GROUP BY time($__interval), "channel" fill(null)`,
          },
          {
            refId: 'C',
            alias: '$tag_channel max',
            query: `SELECT max("value") FROM "telemetry" ${device} AND "unit" = '$unit' AND $timeFilter GROUP BY time($__interval), "channel" fill(null)`,
          },
        ],
      },
      {
        title: 'Min / mean / max over the range',
        type: 'table',
        unit: 'none',
        w: 24,
        h: 8,
        targets: [
          {
            refId: 'A',
            resultFormat: 'table',
            query: `SELECT min("value") AS "min", mean("value") AS "mean", max("value") AS "max", count("value") AS "samples" FROM "telemetry" ${device} AND $timeFilter GROUP BY "channel", "unit"`,
          },
        ],
      },
    ],
  });
}

export function hubHealth() {
  return dashboard({
    uid: 'esp32hub-hub-health',
    title: 'ESP32 hub health',
    description:
      'The hub itself, from the stats it writes to InfluxDB every few seconds (measurement hub_stats, docs/storage.md).',
    tags: ['hub'],
    refresh: '10s',
    from: 'now-1h',
    links: [link('Fleet overview', 'fleet')],
    panels: [
      {
        title: 'Ingest rate',
        type: 'timeseries',
        unit: 'ops',
        w: 12,
        h: 8,
        targets: [
          { refId: 'A', query: hubSeries('frames_per_s'), alias: 'frames/s $tag_hub' },
          { refId: 'B', query: hubSeries('readings_per_s'), alias: 'readings/s $tag_hub' },
        ],
      },
      {
        title: 'Device sessions and live clients',
        type: 'timeseries',
        unit: 'short',
        w: 12,
        h: 8,
        targets: [
          { refId: 'A', query: hubSeries('device_sessions', 'last'), alias: 'device sessions $tag_hub' },
          { refId: 'B', query: hubSeries('live_clients', 'last'), alias: 'live clients $tag_hub' },
        ],
      },
      {
        title: 'Local log depth (frames not yet in InfluxDB)',
        type: 'timeseries',
        unit: 'short',
        w: 8,
        h: 8,
        targets: [{ refId: 'A', query: hubSeries('local_log_unforwarded_frames', 'last'), alias: '$tag_hub' }],
      },
      {
        title: 'Local log size',
        type: 'timeseries',
        unit: 'bytes',
        w: 8,
        h: 8,
        targets: [{ refId: 'A', query: hubSeries('local_log_bytes', 'last'), alias: '$tag_hub' }],
      },
      {
        title: 'Forwarder lag',
        type: 'timeseries',
        unit: 's',
        w: 8,
        h: 8,
        description: 'Age of the oldest reading not yet confirmed by InfluxDB.',
        targets: [{ refId: 'A', query: hubSeries('forwarder_lag_s', 'max'), alias: '$tag_hub' }],
      },
      {
        title: 'InfluxDB write failures',
        type: 'timeseries',
        unit: 'short',
        w: 8,
        h: 8,
        description: 'Failed write requests (all statuses), cumulative since the hub started.',
        targets: [{ refId: 'A', query: hubSeries('write_failures', 'last'), alias: '$tag_hub' }],
      },
      {
        title: 'Dead-lettered lines',
        type: 'timeseries',
        unit: 'short',
        w: 8,
        h: 8,
        description: 'Lines InfluxDB rejected permanently; inspect them with the admin API.',
        targets: [{ refId: 'A', query: hubSeries('dead_lettered', 'last'), alias: '$tag_hub' }],
      },
      {
        title: 'Ack latency p99',
        type: 'timeseries',
        unit: 'ms',
        w: 8,
        h: 8,
        description: 'Frame arrival to ACK, including the durable commit.',
        targets: [{ refId: 'A', query: hubSeries('ack_p99_ms', 'max'), alias: '$tag_hub' }],
      },
    ],
  });
}

export const DASHBOARDS = {
  'fleet-overview.json': fleetOverview,
  'device-detail.json': deviceDetail,
  'hub-health.json': hubHealth,
} as const;

const DATASOURCE_YAML = `# Provisioned by the ESP32 telemetry hub. InfluxQL works on InfluxDB 1.8+, on 2.x through the
# bucket's DBRP mapping (docker/influxdb/init-dbrp.sh creates it) and on 3.x.
# The token comes from the environment; never write it here.
apiVersion: 1

datasources:
  - name: InfluxDB (ESP32 hub)
    uid: ${DATASOURCE_UID}
    type: influxdb
    access: proxy
    url: \${INFLUX_URL}
    isDefault: true
    editable: false
    jsonData:
      dbName: \${INFLUX_BUCKET}
      httpMode: POST
      timeInterval: 5s
      httpHeaderName1: Authorization
    secureJsonData:
      httpHeaderValue1: Token \${INFLUX_TOKEN}
`;

const PROVIDER_YAML = `# Loads the dashboards in /var/lib/grafana/dashboards/esp32hub (dashboards/grafana/dashboards in the repo).
apiVersion: 1

providers:
  - name: esp32hub
    orgId: 1
    folder: ESP32 hub
    folderUid: esp32hub
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/esp32hub
      foldersFromFilesStructure: false
`;

/** Every generated file, path relative to dashboards/grafana → content. */
export function renderAll(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [name, build] of Object.entries(DASHBOARDS)) {
    files.set(join('dashboards', name), `${JSON.stringify(build(), null, 2)}\n`);
  }
  files.set(join('provisioning', 'datasources', 'influxdb.yml'), DATASOURCE_YAML);
  files.set(join('provisioning', 'dashboards', 'esp32hub.yml'), PROVIDER_YAML);
  files.set(join('provisioning', 'alerting', 'rules.yaml'), alertRulesYaml());
  files.set(join('provisioning', 'alerting', 'contact-points.yaml'), contactPointsYaml());
  files.set(join('provisioning', 'alerting', 'policies.yaml'), policiesYaml());
  return files;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [rel, content] of renderAll()) {
    const path = join(GRAFANA_DIR, rel);
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {}
    if (current === content) continue;
    if (check) {
      console.error(`stale: dashboards/grafana/${rel} (run: npx tsx dashboards/build.ts)`);
      stale++;
    } else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
      console.log(`wrote dashboards/grafana/${rel}`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}
