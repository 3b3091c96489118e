/**
 * Dashboards as code: builds the Grafana provisioning files in `dashboards/grafana/` from one
 * description, with Grafana's own typed builders (`@grafana/grafana-foundation-sdk`), so every panel
 * gets the same datasource, units and query conventions.
 *
 *   npx tsx dashboards/build.ts          # rewrite the JSON/YAML files
 *   npx tsx dashboards/build.ts --check  # exit 1 if the committed files differ (run by the tests)
 *
 * Queries are InfluxQL (raw mode): they run on InfluxDB 1.8+, on 2.x through the bucket's DBRP
 * mapping, and on 3.x — and our tests execute every one of them against a real engine. The
 * measurements they read are documented in docs/storage.md; what the dashboards show, in
 * docs/grafana.md. Conventions:
 *
 * - units: a channel's panel unit comes from its descriptor's unit (`dashboards/units.ts`);
 * - gaps: time series group by `$__interval` with `fill(null)`, so missing data is a gap, never a line;
 * - stale: a "current" value (a stat, the latest-values table) only counts points newer than a
 *   freshness window (`time > now() - …`); older ones show "stale" or nothing, never a frozen value;
 * - links: every device in the fleet view opens the device dashboard with `var-device` set.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as bargauge from '@grafana/grafana-foundation-sdk/bargauge';
import * as common from '@grafana/grafana-foundation-sdk/common';
import { ReduceDataOptionsBuilder } from '@grafana/grafana-foundation-sdk/common';
import {
  CustomVariableBuilder,
  DashboardBuilder,
  DashboardCursorSync,
  DashboardLinkBuilder,
  type DashboardLinkType,
  type DataTransformerConfig,
  type DynamicConfigValue,
  MappingType,
  QueryVariableBuilder,
  SpecialValueMatch,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  TimePickerBuilder,
  type ValueMapping,
  VariableRefresh,
  VariableSort,
} from '@grafana/grafana-foundation-sdk/dashboard';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as statetimeline from '@grafana/grafana-foundation-sdk/statetimeline';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import * as units from '@grafana/grafana-foundation-sdk/units';
import { alertRulesYaml, contactPointsYaml, policiesYaml } from './alerts.ts';
import { DATASOURCE_UID, INFLUX_DATASOURCE as DS, InfluxQLQuery } from './influxql.ts';
import { CHANNEL_UNITS } from './units.ts';

export { DATASOURCE_UID };

const ROOT = dirname(fileURLToPath(import.meta.url));
export const GRAFANA_DIR = join(ROOT, 'grafana');

export const DEVICE_DASHBOARD_UID = 'esp32hub-device';
/**
 * How recent `device_status` and `hub_stats` must be to count as current: the hub writes them every
 * INFLUX_STATS_INTERVAL_MS (default 5 s), so a minute is a dozen missed points.
 */
export const STATUS_FRESH = '1m';

/** Any of the SDK's panel builders (they share the common field-config and panel methods). */
type AnyPanel =
  | stat.PanelBuilder
  | timeseries.PanelBuilder
  | table.PanelBuilder
  | bargauge.PanelBuilder
  | statetimeline.PanelBuilder;

interface Placed {
  w: number;
  h: number;
  panel: AnyPanel;
}

const q = (refId: string, query: string) => new InfluxQLQuery(refId, query);

/** Thresholds: the base colour, then `[colour, from]` steps. */
function steps(base: string, ...more: [string, number][]): ThresholdsConfigBuilder {
  return new ThresholdsConfigBuilder()
    .mode(ThresholdsMode.Absolute)
    .steps([{ color: base, value: null }, ...more.map(([color, value]) => ({ color, value }))]);
}

/** The common part of every panel: title, description, datasource, targets, unit. */
function base<P extends AnyPanel>(
  panel: P,
  title: string,
  unit: string,
  targets: InfluxQLQuery[],
  description = '',
): P {
  panel.title(title).description(description).datasource(DS).unit(unit).targets(targets);
  return panel;
}

/** Lays panels out left to right, wrapping at 24 columns, and numbers them. */
function layout(placed: Placed[]): Placed[] {
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  placed.forEach(({ w, h, panel }, i) => {
    if (x + w > 24) {
      x = 0;
      y += rowHeight;
      rowHeight = 0;
    }
    panel.id(i + 1).gridPos({ x, y, w, h });
    x += w;
    rowHeight = Math.max(rowHeight, h);
  });
  return placed;
}

/** A link to the dashboards carrying `tag`, keeping the time range. */
function link(title: string, tag: string) {
  return new DashboardLinkBuilder(title)
    .type('dashboards' as DashboardLinkType)
    .tags([tag])
    .asDropdown(false)
    .includeVars(false)
    .keepTime(true)
    .icon('dashboard')
    .targetBlank(false)
    .tooltip('')
    .url('');
}

/** Grafana's data-link variables: the device of a table row, and the `device` label of a series. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own variable syntax, not a JS template
export const ROW_DEVICE = '${__data.fields.device}';
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own variable syntax, not a JS template
export const SERIES_DEVICE = '${__field.labels.device}';

/**
 * A data link to one device's dashboard, keeping the time range. `value` is Grafana's expression for
 * the device id in the clicked item: SERIES_DEVICE for a series, ROW_DEVICE for a table row.
 */
export function deviceLink(value: string) {
  return {
    title: 'Open the device dashboard',
    url: `/d/${DEVICE_DASHBOARD_UID}?var-device=${value}&\${__url_time_range}`,
    targetBlank: false,
  };
}

function dashboard(opts: {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  refresh: string;
  from: string;
  panels: Placed[];
  variables?: (QueryVariableBuilder | CustomVariableBuilder)[];
  links?: DashboardLinkBuilder[];
}) {
  const d = new DashboardBuilder(opts.title)
    .uid(opts.uid)
    .description(opts.description)
    .tags(['esp32hub', ...opts.tags])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .refresh(opts.refresh)
    .time({ from: opts.from, to: 'now' })
    .timezone('browser')
    .timepicker(new TimePickerBuilder().refreshIntervals(['5s', '10s', '30s', '1m', '5m', '15m']));
  for (const l of opts.links ?? []) d.link(l);
  for (const v of opts.variables ?? []) d.withVariable(v);
  for (const { panel } of layout(opts.panels)) d.withPanel(panel);
  const built = d.build();
  // The builder gives every variable the interval variables' `auto*` defaults, which the published
  // dashboard schema has no field for on query and custom variables: leave them out.
  for (const v of built.templating.list ?? []) {
    for (const key of ['auto', 'auto_min', 'auto_count'] as const)
      delete (v as unknown as Record<string, unknown>)[key];
  }
  return built;
}

/** Restricts a device-detail query to the dashboard's `$device`. */
const DEVICE_MATCH = '"device" =~ /^$device$/';
const DEVICE_FILTER = `WHERE ${DEVICE_MATCH}`;
/** Only points recent enough to be a current value (the `$stale` variable: 5 min by default). */
const FRESH = 'time > now() - $stale';
/** Only status points the hub wrote in the last minute. */
const STATUS = `time > now() - ${STATUS_FRESH}`;

/** The freshness window people can change: older values count as stale. */
function staleVariable() {
  return new CustomVariableBuilder('stale')
    .label('Stale after')
    .description('A value older than this shows as stale, not as the current value.')
    .values('5m,1m,15m,1h')
    .current({ text: '5m', value: '5m', selected: true });
}

const value = (text: string, color: string, index: number) => ({ text, color, index });

const PRESENCE_MAPPINGS: ValueMapping[] = [
  {
    type: MappingType.ValueToText,
    options: { '0': value('offline', 'red', 0), '1': value('stale', 'orange', 1), '2': value('online', 'green', 2) },
  },
];
const BOOL_MAPPINGS: ValueMapping[] = [
  {
    type: MappingType.ValueToText,
    options: { true: value('on', 'green', 0), false: value('off', 'text', 1) },
  },
];
/** An empty cell (no point inside the freshness window) reads "stale". */
const STALE_MAPPING: ValueMapping = {
  type: MappingType.SpecialValue,
  options: { match: SpecialValueMatch.NullAndNan, result: value('stale', 'orange', 0) },
};

/** Field overrides giving each channel series the unit in its name (`… [°C]`), from CHANNEL_UNITS. */
function unitOverrides(panel: timeseries.PanelBuilder): timeseries.PanelBuilder {
  for (const [channelUnit, grafana] of Object.entries(CHANNEL_UNITS)) {
    const escaped = channelUnit.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
    panel.overrideByRegexp(`/\\[${escaped}\\]$/`, [{ id: 'unit', value: grafana }]);
  }
  return panel;
}

/** A stat showing the latest value; `noValue` is what it says when there is none in its window. */
function statPanel(title: string, unit: string, query: string, noValue: string, description = '') {
  return base(new stat.PanelBuilder(), title, unit, [q('A', query)], description)
    .noValue(noValue)
    .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
    .graphMode(common.BigValueGraphMode.None)
    .colorMode(common.BigValueColorMode.Value);
}

/** A time series panel: one line per series, broken where data is missing (fill(null), no spanning). */
function seriesPanel(title: string, unit: string, targets: InfluxQLQuery[], description = '') {
  return base(new timeseries.PanelBuilder(), title, unit, targets, description)
    .spanNulls(false)
    .lineInterpolation(common.LineInterpolation.Linear)
    .showPoints(common.VisibilityMode.Never);
}

/** Latest value of a hub_stats field written in the last minute, summed over hub instances. */
const hubNow = (field: string) =>
  `SELECT sum("${field}") FROM (SELECT last("${field}") AS "${field}" FROM "hub_stats" WHERE $timeFilter AND ${STATUS} GROUP BY "hub")`;
/** A hub_stats field over time, one series per hub instance. */
const hubSeries = (field: string, fn = 'mean') =>
  `SELECT ${fn}("${field}") FROM "hub_stats" WHERE $timeFilter GROUP BY time($__interval), "hub" fill(null)`;

/** A fleet-wide count of devices in one presence state; any device in it turns the stat `alert`. */
function presenceStat(state: 'online' | 'stale' | 'offline', description: string, alert: string | null): Placed {
  const panel = statPanel(
    `Devices ${state}`,
    units.Short,
    hubNow(`devices_${state}`),
    'no data: hub silent',
    description,
  ).thresholds(alert ? steps('green', [alert, 1]) : steps('green'));
  return { w: 4, h: 4, panel };
}

/** Overrides that turn a table's `device` column into a link to that device's dashboard. */
const deviceColumnLink = (panel: table.PanelBuilder) =>
  panel.overrideByName('device', [{ id: 'links', value: [deviceLink(ROW_DEVICE)] }]);

const hideTime: DynamicConfigValue[] = [{ id: 'custom.hidden', value: true }];

/**
 * The latest value of every channel: `current` only from points inside the freshness window (empty
 * and shown as "stale" otherwise), `last value` and `last seen` from the whole range. Grafana merges
 * the two queries' rows on (time, device, channel, unit): a fresh channel's last point is the same in
 * both.
 */
function latestValuesTable(title: string, deviceFilter: string | null, description: string): table.PanelBuilder {
  const where = `WHERE ${deviceFilter ? `${deviceFilter} AND ` : ''}$timeFilter`;
  const select = (as: string) => `SELECT last("value") AS "${as}" FROM "telemetry" ${where}`;
  const merge: DataTransformerConfig = { id: 'merge', options: {} };
  const panel = base(
    new table.PanelBuilder(),
    title,
    units.NoUnit,
    [
      q('A', `${select('current')} AND ${FRESH} GROUP BY "device", "channel", "unit"`).table(),
      q('B', `${select('last value')} GROUP BY "device", "channel", "unit"`).table(),
    ],
    description,
  )
    .withTransformation(merge)
    .overrideByName('current', [{ id: 'mappings', value: [STALE_MAPPING] }])
    .overrideByName('Time', [
      { id: 'displayName', value: 'last seen' },
      { id: 'unit', value: units.DateTimeFromNow },
    ]);
  return deviceColumnLink(panel);
}

/** A per-device bar of the latest reading of one channel; stale devices drop out, each bar links. */
function channelBars(
  title: string,
  channel: string,
  unit: string,
  min: number,
  max: number,
  thresholds: ThresholdsConfigBuilder,
) {
  const query = `SELECT last("value") FROM "telemetry" WHERE "channel" = '${channel}' AND $timeFilter AND ${FRESH} GROUP BY "device"`;
  return base(
    new bargauge.PanelBuilder(),
    title,
    unit,
    [q('A', query).alias('$tag_device')],
    `The latest ${channel} reading of each device, if newer than $stale (older ones are left out, not frozen). Click a bar for the device.`,
  )
    .min(min)
    .max(max)
    .thresholds(thresholds)
    .noValue('no current readings')
    .overrideByFieldType('number', [{ id: 'links', value: [deviceLink(SERIES_DEVICE)] }])
    .orientation(common.VizOrientation.Horizontal)
    .displayMode(common.BarGaugeDisplayMode.Gradient)
    .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false));
}

export function fleetOverview() {
  const battery = channelBars(
    'Battery',
    'battery_v',
    units.Volt,
    3.0,
    4.2,
    steps('red', ['orange', 3.4], ['green', 3.6]),
  ).decimals(2);
  const wifi = channelBars(
    'Wi-Fi signal',
    'rssi_dbm',
    units.DecibelMilliWatt,
    -100,
    -30,
    steps('red', ['orange', -80], ['green', -67]),
  );
  const devicesTable = deviceColumnLink(
    base(
      new table.PanelBuilder(),
      'Devices',
      units.Short,
      [
        q(
          'A',
          `SELECT last("state_code") AS "presence", last("gaps_total") AS "gaps", last("errors_total") AS "errors", last("dropped_frames") AS "dropped by device", last("firmware") AS "firmware" FROM "device_status" WHERE $timeFilter AND ${STATUS} GROUP BY "device"`,
        ).table(),
      ],
      'Every device the hub knows, as it reported in the last minute: presence, sequence gaps (frames lost before reaching the hub), rejected frames and what the board dropped. Click a device for its dashboard.',
    )
      .overrideByName('presence', [
        { id: 'mappings', value: PRESENCE_MAPPINGS },
        { id: 'custom.cellOptions', value: { type: 'color-text' } },
      ])
      .overrideByName('Time', hideTime),
  );
  return dashboard({
    uid: 'esp32hub-fleet',
    title: 'ESP32 fleet overview',
    description: 'Every device at a glance: presence, ingest rate, latest values, gaps and errors, battery and Wi-Fi.',
    tags: ['fleet'],
    refresh: '10s',
    from: 'now-1h',
    links: [link('Device detail', 'device'), link('Hub health', 'hub')],
    variables: [staleVariable()],
    panels: [
      presenceStat('online', 'Devices streaming now (hub_stats of the last minute).', null),
      presenceStat('stale', 'Connected, but silent for more than three sample periods.', 'orange'),
      presenceStat('offline', 'Known devices without a live session.', 'red'),
      {
        w: 12,
        h: 8,
        panel: seriesPanel(
          'Ingest rate',
          units.OpsPerSecond,
          [
            q('A', hubSeries('frames_per_s')).alias('frames/s $tag_hub'),
            q('B', hubSeries('readings_per_s')).alias('readings/s $tag_hub'),
          ],
          'Frames and readings per second committed by the hub.',
        ),
      },
      {
        w: 12,
        h: 10,
        panel: latestValuesTable(
          'Latest values',
          null,
          'The last reading of every channel of every device. "current" is empty and reads stale when the last reading is older than $stale; "last seen" says when it came. Click a device for its dashboard.',
        ),
      },
      { w: 12, h: 10, panel: devicesTable },
      { w: 12, h: 8, panel: battery },
      { w: 12, h: 8, panel: wifi },
    ],
  });
}

/** The latest value of a per-device counter in `device_status`; any count turns the stat `alert`. */
function deviceCounterStat(title: string, field: string, alert: string): Placed {
  const query = `SELECT last("${field}") FROM "device_status" ${DEVICE_FILTER} AND $timeFilter AND ${STATUS}`;
  const panel = statPanel(title, units.Short, query, 'no status: hub silent').thresholds(steps('green', [alert, 1]));
  return { w: 6, h: 4, panel };
}

export function deviceDetail() {
  const device = DEVICE_FILTER;
  const perUnit = (refId: string, fn: string) =>
    q(
      refId,
      `SELECT ${fn}("value") FROM "telemetry" ${device} AND "unit" =~ /^$unit$/ AND $timeFilter GROUP BY time($__interval), "channel", "unit" fill(null)`,
    ).alias(`$tag_channel ${fn} [$tag_unit]`);
  const channels = unitOverrides(
    seriesPanel(
      'Channels in $unit',
      units.NoUnit,
      [perUnit('A', 'mean'), perUnit('B', 'min'), perUnit('C', 'max')],
      'Mean per interval, one series per channel of this unit, with min and max; formatted in the channel unit. Missing data is a gap, not a line.',
    ),
  )
    .repeat('unit')
    .repeatDirection('h')
    .maxPerRow(2);
  const unitless = (refId: string, fn: string) =>
    q(
      refId,
      `SELECT ${fn}("value") FROM "telemetry" ${device} AND "unit" = '' AND $timeFilter GROUP BY time($__interval), "channel" fill(null)`,
    ).alias(`$tag_channel ${fn}`);
  const noUnit = seriesPanel(
    'Channels without a unit',
    units.Short,
    [unitless('A', 'mean'), unitless('B', 'min'), unitless('C', 'max')],
    'Numeric channels whose descriptor gives no unit (counters, states as numbers): mean, min and max per interval.',
  ).noValue('no numeric channel without a unit');
  const bools = base(
    new statetimeline.PanelBuilder(),
    'Switches and flags',
    units.NoUnit,
    [q('A', `SELECT "state" FROM "telemetry" ${device} AND $timeFilter GROUP BY "channel"`).alias('$tag_channel')],
    'Bool channels (relays, LEDs, contacts): each state from the reading that set it until the next one.',
  )
    .mappings(BOOL_MAPPINGS)
    .mergeValues(true)
    .showValue(common.VisibilityMode.Auto)
    .noValue('no bool channels in this range');
  const presence = statPanel(
    'Presence',
    units.NoUnit,
    `SELECT last("state_code") FROM "device_status" ${device} AND $timeFilter AND ${STATUS}`,
    'no status: hub silent',
    'online: streaming; stale: connected but silent; offline: no session. Blank when the hub wrote no status in the last minute.',
  )
    .mappings(PRESENCE_MAPPINGS)
    .thresholds(steps('red', ['orange', 1], ['green', 2]));
  return dashboard({
    uid: DEVICE_DASHBOARD_UID,
    title: 'ESP32 device detail',
    description:
      'One device: every channel grouped by unit, min/mean/max per interval, bool states, presence and link health.',
    tags: ['device'],
    refresh: '10s',
    from: 'now-6h',
    links: [link('Fleet overview', 'fleet')],
    variables: [
      new QueryVariableBuilder('device')
        .label('Device')
        .datasource(DS)
        .query('SHOW TAG VALUES FROM "telemetry" WITH KEY = "device"')
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc)
        .multi(false)
        .includeAll(false),
      new QueryVariableBuilder('unit')
        .label('Unit')
        .datasource(DS)
        .query('SHOW TAG VALUES FROM "telemetry" WITH KEY = "unit" WHERE "device" =~ /^$device$/')
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc)
        .multi(true)
        .includeAll(true),
      staleVariable(),
    ],
    panels: [
      { w: 6, h: 4, panel: presence },
      deviceCounterStat('Sequence gaps', 'gaps_total', 'orange'),
      deviceCounterStat('Rejected frames', 'errors_total', 'red'),
      {
        w: 6,
        h: 4,
        panel: statPanel(
          'Readings in the range',
          units.Short,
          `SELECT count("value") FROM "telemetry" ${device} AND $timeFilter`,
          'none',
        ),
      },
      { w: 12, h: 9, panel: channels },
      { w: 24, h: 8, panel: noUnit },
      { w: 24, h: 6, panel: bools },
      {
        w: 24,
        h: 8,
        panel: latestValuesTable(
          'Latest value per channel',
          DEVICE_MATCH,
          'The last reading of each channel; "current" reads stale when it is older than $stale.',
        ),
      },
      {
        w: 24,
        h: 8,
        panel: base(new table.PanelBuilder(), 'Min / mean / max over the range', units.NoUnit, [
          q(
            'A',
            `SELECT min("value") AS "min", mean("value") AS "mean", max("value") AS "max", count("value") AS "samples" FROM "telemetry" ${device} AND $timeFilter GROUP BY "channel", "unit"`,
          ).table(),
        ]).overrideByName('Time', hideTime),
      },
    ],
  });
}

export function hubHealth() {
  const panel = (title: string, unit: string, targets: InfluxQLQuery[], description = ''): Placed => ({
    w: 8,
    h: 8,
    panel: seriesPanel(title, unit, targets, description),
  });
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
        ...panel('Ingest rate', units.OpsPerSecond, [
          q('A', hubSeries('frames_per_s')).alias('frames/s $tag_hub'),
          q('B', hubSeries('readings_per_s')).alias('readings/s $tag_hub'),
        ]),
        w: 12,
      },
      {
        ...panel('Device sessions and live clients', units.Short, [
          q('A', hubSeries('device_sessions', 'last')).alias('device sessions $tag_hub'),
          q('B', hubSeries('live_clients', 'last')).alias('live clients $tag_hub'),
        ]),
        w: 12,
      },
      panel('Local log depth (frames not yet in InfluxDB)', units.Short, [
        q('A', hubSeries('local_log_unforwarded_frames', 'last')).alias('$tag_hub'),
      ]),
      panel('Local log size', units.BytesIEC, [q('A', hubSeries('local_log_bytes', 'last')).alias('$tag_hub')]),
      panel(
        'Forwarder lag',
        units.Seconds,
        [q('A', hubSeries('forwarder_lag_s', 'max')).alias('$tag_hub')],
        'Age of the oldest reading not yet confirmed by InfluxDB (alert: above 30 s).',
      ),
      panel(
        'InfluxDB write failures',
        units.Short,
        [q('A', hubSeries('write_failures', 'last')).alias('$tag_hub')],
        'Failed write requests (all statuses), cumulative since the hub started.',
      ),
      panel(
        'Dead letters',
        units.Short,
        [
          q('A', hubSeries('dead_letter_lines', 'last')).alias('waiting $tag_hub'),
          q('B', hubSeries('dead_lettered', 'last')).alias('refused since start $tag_hub'),
        ],
        'Lines InfluxDB refused for good: waiting in the dead-letter store (alert: any) and refused since the hub started. npm run hub -- dead-letters list.',
      ),
      panel(
        'Ack latency p99',
        units.Milliseconds,
        [q('A', hubSeries('ack_p99_ms', 'max')).alias('$tag_hub')],
        'Frame arrival to ACK, including the durable commit.',
      ),
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
