/**
 * Grafana provisioning checked without a Grafana server: every dashboard validates against the
 * dashboard schema published in @grafana/schema (its TypeScript `Dashboard` type turned into a JSON
 * schema), every provisioning YAML parses and points at files and uids that exist, and the committed
 * files are exactly what dashboards/build.ts generates.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as sdkUnits from '@grafana/grafana-foundation-sdk/units';
import { Ajv } from 'ajv';
import { createGenerator } from 'ts-json-schema-generator';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CONTACT_POINT, CONTACT_POINT_ENV } from '../../dashboards/alerts.ts';
import {
  DATASOURCE_UID,
  DEVICE_DASHBOARD_UID,
  GRAFANA_DIR,
  ROW_DEVICE,
  renderAll,
  SERIES_DEVICE,
} from '../../dashboards/build.ts';
import { CHANNEL_UNITS, grafanaUnit } from '../../dashboards/units.ts';
import { CHANNELS } from '../../firmware-sim/index.ts';

const require = createRequire(import.meta.url);
const dashboardsDir = join(GRAFANA_DIR, 'dashboards');
const dashboardFiles = readdirSync(dashboardsDir).filter((f) => f.endsWith('.json'));

type Json = Record<string, unknown>;
const load = (file: string) => JSON.parse(readFileSync(join(dashboardsDir, file), 'utf8')) as Json;
/** How Grafana provisioning spells an environment variable reference. */
const interpolated = (name: string) => `\${${name}}`;
const panelsOf = (d: Json) => (d.panels as Json[]) ?? [];

describe('Grafana dashboards', () => {
  let validate: ReturnType<Ajv['compile']>;

  beforeAll(() => {
    // The classic dashboard JSON model (the one file provisioning loads) as Grafana publishes it.
    const typesFile = join(
      require.resolve('@grafana/schema/package.json'),
      '..',
      'dist/types/raw/dashboard/x/types.gen.d.ts',
    );
    const schema = createGenerator({
      path: typesFile,
      type: 'Dashboard',
      skipTypeCheck: true,
      expose: 'all',
    }).createSchema('Dashboard');
    const ajv = new Ajv({ allErrors: true, strict: false });
    validate = ajv.compile(schema);
  }, 60_000);

  it('has the three dashboards people expect', () => {
    expect(dashboardFiles.sort()).toEqual(['device-detail.json', 'fleet-overview.json', 'hub-health.json']);
  });

  it('committed files are what dashboards/build.ts generates', () => {
    for (const [rel, content] of renderAll()) {
      expect(readFileSync(join(GRAFANA_DIR, rel), 'utf8'), `dashboards/grafana/${rel} is stale`).toBe(content);
    }
  });

  it.each(dashboardFiles)('%s validates against the published dashboard schema', (file) => {
    const ok = validate(load(file));
    expect(validate.errors ?? [], `${file}: ${JSON.stringify(validate.errors, null, 1)}`).toEqual([]);
    expect(ok).toBe(true);
  });

  it('the schema check is not vacuous: a broken dashboard fails it', () => {
    const broken = { ...load('hub-health.json'), schemaVersion: 'thirty-nine', panels: [{ gridPos: 'top-left' }] };
    expect(validate(broken)).toBe(false);
  });

  it('uids are stable and unique; refresh and time range are set', () => {
    const uids = dashboardFiles.map((f) => load(f).uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const file of dashboardFiles) {
      const d = load(file);
      expect(d.uid).toMatch(/^esp32hub-[a-z-]+$/);
      expect(d.refresh).toMatch(/^\d+[smh]$/);
      expect((d.time as Json).from).toMatch(/^now-\d+[mhd]$/);
    }
  });

  it('every panel has a unit, the provisioned datasource and raw InfluxQL targets', () => {
    for (const file of dashboardFiles) {
      for (const panel of panelsOf(load(file))) {
        const where = `${file} / ${panel.title}`;
        const defaults = (panel.fieldConfig as Json).defaults as Json;
        expect(typeof defaults.unit, where).toBe('string');
        expect((defaults.unit as string).length, where).toBeGreaterThan(0);
        expect((panel.datasource as Json).uid, where).toBe(DATASOURCE_UID);
        const targets = panel.targets as Json[];
        expect(targets.length, where).toBeGreaterThan(0);
        for (const t of targets) {
          expect(t.rawQuery, where).toBe(true);
          expect(t.query, where).toMatch(/^(SELECT|SHOW) /);
          expect((t.datasource as Json).uid, where).toBe(DATASOURCE_UID);
        }
      }
    }
  });

  it('the device detail links back to the fleet and the fleet reaches the others', () => {
    const tagsLinked = (d: Json) => ((d.links as Json[]) ?? []).flatMap((l) => l.tags as string[]);
    expect(tagsLinked(load('device-detail.json'))).toContain('fleet');
    expect(tagsLinked(load('fleet-overview.json'))).toEqual(expect.arrayContaining(['device', 'hub']));
  });
});

describe('Grafana provisioning YAML', () => {
  const datasources = parseYaml(readFileSync(join(GRAFANA_DIR, 'provisioning/datasources/influxdb.yml'), 'utf8'));
  const providers = parseYaml(readFileSync(join(GRAFANA_DIR, 'provisioning/dashboards/esp32hub.yml'), 'utf8'));
  const compose = parseYaml(readFileSync(join(GRAFANA_DIR, '../../docker-compose.yml'), 'utf8'), { merge: true });

  it('the datasource is InfluxQL with the uid the dashboards use and the token from the environment', () => {
    expect(datasources.apiVersion).toBe(1);
    const [ds] = datasources.datasources;
    expect(ds.uid).toBe(DATASOURCE_UID);
    expect(ds.type).toBe('influxdb');
    expect(ds.jsonData.version ?? 'InfluxQL').toBe('InfluxQL');
    expect(ds.jsonData.dbName).toBe(interpolated('INFLUX_BUCKET'));
    expect(ds.jsonData.httpHeaderName1).toBe('Authorization');
    expect(ds.secureJsonData.httpHeaderValue1).toBe(`Token ${interpolated('INFLUX_TOKEN')}`);
  });

  it('the dashboard provider loads the folder compose mounts the dashboards into', () => {
    const [provider] = providers.providers;
    expect(provider.type).toBe('file');
    const mounts: string[] = compose.services.grafana.volumes;
    const mount = mounts.find((m) => m.startsWith('./dashboards/grafana/dashboards:'));
    expect(mount?.split(':')[1]).toBe(provider.options.path);
    const home: string = compose.services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    expect(home.startsWith(`${provider.options.path}/`)).toBe(true);
    expect(dashboardFiles).toContain(home.slice(provider.options.path.length + 1));
  });

  it('the variables Grafana interpolates are given to the Grafana container', () => {
    const env = compose.services.grafana.environment;
    for (const name of ['INFLUX_URL', 'INFLUX_BUCKET', 'INFLUX_TOKEN']) expect(env[name], name).toBeDefined();
  });
});

describe('Grafana alerting provisioning', () => {
  const alertingDir = join(GRAFANA_DIR, 'provisioning/alerting');
  const read = (file: string) => parseYaml(readFileSync(join(alertingDir, file), 'utf8'));
  const rulesDoc = read('rules.yaml');
  const contactDoc = read('contact-points.yaml');
  const policyDoc = read('policies.yaml');
  const compose = parseYaml(readFileSync(join(GRAFANA_DIR, '../../docker-compose.yml'), 'utf8'), { merge: true });
  const providers = parseYaml(readFileSync(join(GRAFANA_DIR, 'provisioning/dashboards/esp32hub.yml'), 'utf8'));
  const datasources = parseYaml(readFileSync(join(GRAFANA_DIR, 'provisioning/datasources/influxdb.yml'), 'utf8'));
  const envExample = readFileSync(join(GRAFANA_DIR, '../../.env.example'), 'utf8');
  const rules: Json[] = rulesDoc.groups.flatMap((g: Json) => g.rules as Json[]);
  /** Prometheus-style durations, as Grafana parses `for` and `interval`. */
  const DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;

  it('every file is provisioning apiVersion 1 with the top-level key Grafana reads', () => {
    expect(readdirSync(alertingDir).sort()).toEqual(['contact-points.yaml', 'policies.yaml', 'rules.yaml']);
    for (const [doc, key] of [
      [rulesDoc, 'groups'],
      [contactDoc, 'contactPoints'],
      [policyDoc, 'policies'],
    ] as const) {
      expect(doc.apiVersion).toBe(1);
      expect(Array.isArray(doc[key]), key).toBe(true);
      expect(doc[key].length, key).toBeGreaterThan(0);
    }
  });

  it('rule groups name a group, a folder apart from the dashboards and an interval', () => {
    for (const g of rulesDoc.groups) {
      expect(g.orgId).toBe(1);
      expect(g.name).toMatch(/\S/);
      // A folder of its own: alerting is provisioned first and would take the dashboards' folder title.
      expect(g.folder).toMatch(/\S/);
      expect(g.folder).not.toBe(providers.providers[0].folder);
      expect(g.interval).toMatch(DURATION);
      expect(g.rules.length).toBeGreaterThan(0);
    }
  });

  const datasourceUids = new Set([...datasources.datasources.map((d: Json) => d.uid), '__expr__']);

  /** What Grafana would refuse in a rule, or what would leave it without data; empty when fine. */
  function ruleProblems(r: Json): string[] {
    const problems: string[] = [];
    const check = (ok: boolean, what: string) => ok || problems.push(what);
    check(/^[a-zA-Z0-9_-]{1,40}$/.test(String(r.uid)), 'uid');
    check(/\S/.test(String(r.title ?? '')), 'title');
    check(['OK', 'Alerting', 'NoData', 'KeepLast'].includes(String(r.noDataState)), 'noDataState');
    check(['OK', 'Alerting', 'Error', 'KeepLast'].includes(String(r.execErrState)), 'execErrState');
    check(DURATION.test(String(r.for)), 'for');
    check(/\S/.test(String((r.annotations as Json | undefined)?.summary ?? '')), 'annotations.summary');
    const data = (r.data as Json[] | undefined) ?? [];
    check(data.length > 0, 'data');
    const refIds = data.map((q) => q.refId);
    check(refIds.includes(r.condition), `condition ${String(r.condition)} names no query`);
    for (const q of data) {
      const at = `data ${String(q.refId)}`;
      check(datasourceUids.has(q.datasourceUid), `${at}: datasourceUid ${String(q.datasourceUid)} is not provisioned`);
      const range = (q.relativeTimeRange as Json | undefined) ?? {};
      check(Number(range.from) > Number(range.to ?? 0), `${at}: relativeTimeRange`);
      const model = (q.model as Json | undefined) ?? {};
      check(model.refId === q.refId, `${at}: model.refId`);
      if (q.datasourceUid === '__expr__') {
        check(refIds.includes(model.expression), `${at}: expression ${String(model.expression)} names no query`);
      } else {
        check(model.rawQuery === true, `${at}: rawQuery`);
        check(
          /^SELECT .* WHERE .*\$timeFilter.* GROUP BY "(device|hub)"(, "hub")?$/.test(String(model.query)),
          `${at}: InfluxQL with $timeFilter, grouped by device, hub, or device and hub`,
        );
      }
    }
    return problems;
  }

  it('every rule has the fields Grafana requires, and its condition and datasources resolve', () => {
    const uids = rules.map((r) => r.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const r of rules) expect(ruleProblems(r), String(r.title)).toEqual([]);
  });

  it('the rule check is not vacuous: a broken rule fails it', () => {
    const [first] = rules as [Json];
    const data = (first.data as Json[]).map((q, i) => (i === 0 ? { ...q, datasourceUid: 'no-such-uid' } : q));
    expect(ruleProblems({ ...first, condition: 'Z', for: 'soon', data })).toEqual([
      'for',
      'condition Z names no query',
      'data A: datasourceUid no-such-uid is not provisioned',
    ]);
  });

  it('the contact point takes its webhook and email from the environment; the policy sends to it', () => {
    const [cp] = contactDoc.contactPoints;
    expect(cp.name).toBe(CONTACT_POINT);
    const byType = Object.fromEntries((cp.receivers as Json[]).map((r) => [r.type, r]));
    expect(Object.keys(byType).sort()).toEqual(['email', 'webhook']);
    expect(((byType.webhook?.settings ?? {}) as Json).url).toBe(interpolated('GRAFANA_ALERT_WEBHOOK_URL'));
    expect(((byType.email?.settings ?? {}) as Json).addresses).toBe(interpolated('GRAFANA_ALERT_EMAIL'));
    for (const r of cp.receivers as Json[]) expect(r.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    const [policy] = policyDoc.policies;
    expect(policy.receiver).toBe(cp.name);
  });

  it('unset contact point variables get placeholders Grafana accepts, naming the variable', () => {
    const env = compose.services.grafana.environment as Record<string, string>;
    /** The `${NAME:-default}` default compose uses when .env leaves NAME empty. */
    const fallback = (name: string) => new RegExp(`^\\$\\{${name}:-(.+)\\}$`).exec(env[name] ?? '')?.[1] ?? '';
    const url = new URL(fallback('GRAFANA_ALERT_WEBHOOK_URL'));
    expect(url.protocol).toBe('http:');
    expect(url.pathname).toContain('GRAFANA_ALERT_WEBHOOK_URL');
    expect(fallback('GRAFANA_ALERT_EMAIL')).toMatch(/^GRAFANA_ALERT_EMAIL[\w-]*@\w+$/);
  });

  it('every variable a provisioning file interpolates is documented in .env.example and given to Grafana', () => {
    const env = compose.services.grafana.environment as Record<string, string>;
    const files = [
      ...['rules.yaml', 'contact-points.yaml', 'policies.yaml'].map((f) => join(alertingDir, f)),
      join(GRAFANA_DIR, 'provisioning/datasources/influxdb.yml'),
    ];
    const names = new Set(
      files.flatMap((f) =>
        [...readFileSync(f, 'utf8').matchAll(/\$\{([A-Z][A-Z0-9_]*)\}/g)].map((m) => m[1] as string),
      ),
    );
    expect([...names]).toEqual(expect.arrayContaining([...CONTACT_POINT_ENV]));
    for (const name of names) {
      expect(env[name], `${name} passed to the grafana service`).toBeDefined();
      expect(envExample, `${name} in .env.example`).toMatch(new RegExp(`^${name}=`, 'm'));
    }
    // Email needs SMTP: the settings that make it deliver are passed too.
    for (const name of ['GF_SMTP_ENABLED', 'GF_SMTP_HOST', 'GF_SMTP_FROM_ADDRESS'])
      expect(env[name], name).toBeDefined();
  });
});

describe('Grafana dashboards: units, links, stale values, bool channels', () => {
  const fleet = load('fleet-overview.json');
  const device = load('device-detail.json');
  const allPanels = dashboardFiles.flatMap((f) => panelsOf(load(f)).map((p) => ({ file: f, p })));
  const queries = (p: Json) => ((p.targets as Json[]) ?? []).map((t) => String(t.query));
  const overrides = (p: Json) => ((p.fieldConfig as Json).overrides as Json[]) ?? [];
  /** Grafana's `/pattern/` matcher option as a RegExp. */
  const regex = (option: string) => new RegExp(option.slice(1, option.lastIndexOf('/')));
  const grafanaUnitIds = new Set<string>(Object.values(sdkUnits).filter((v) => typeof v === 'string'));

  it('every channel unit the boards declare has a Grafana unit id that exists', () => {
    for (const ch of CHANNELS) {
      if (ch.unit === '') continue;
      expect(CHANNEL_UNITS[ch.unit], ch.unit).toBeDefined();
      expect(grafanaUnitIds.has(grafanaUnit(ch.unit)), ch.unit).toBe(true);
    }
    for (const id of Object.values(CHANNEL_UNITS)) expect(grafanaUnitIds.has(id), id).toBe(true);
    expect(grafanaUnit('')).toBe('none');
    expect(grafanaUnit('furlong')).toBe('none');
  });

  it('the channel charts format each series in its channel unit', () => {
    const panel = panelsOf(device).find((p) => p.repeat === 'unit');
    if (!panel) throw new Error('no per-unit channel panel');
    // Series are named "<channel> <fn> [<unit>]" (the alias of every target).
    for (const t of panel.targets as Json[]) expect(t.alias).toMatch(/^\$tag_channel \w+ \[\$tag_unit\]$/);
    const unitFor = (name: string) =>
      overrides(panel)
        .filter((o) => (o.matcher as Json).id === 'byRegexp' && regex(String((o.matcher as Json).options)).test(name))
        .map((o) => (o.properties as Json[]).find((pr) => pr.id === 'unit')?.value);
    for (const ch of CHANNELS.filter((c) => c.unit !== '')) {
      expect(unitFor(`${ch.key} mean [${ch.unit}]`), ch.key).toEqual([grafanaUnit(ch.unit)]);
    }
    expect(unitFor('temperature mean [°F]')).toEqual(['fahrenheit']);
    expect(unitFor('power mean [furlong]')).toEqual([]);
  });

  it('every fleet panel that lists devices links each device to its dashboard, keeping the time range', () => {
    const deviceVar = ((device.templating as Json).list as Json[]).find((v) => v.name === 'device');
    expect(deviceVar).toBeDefined();
    expect(device.uid).toBe(DEVICE_DASHBOARD_UID);
    const listsDevices = panelsOf(fleet).filter((p) => queries(p).some((q) => /GROUP BY .*"device"/.test(q)));
    expect(listsDevices.map((p) => p.title)).toEqual(['Latest values', 'Devices', 'Battery', 'Wi-Fi signal']);
    for (const p of listsDevices) {
      const links = overrides(p).flatMap((o) => (o.properties as Json[]).filter((pr) => pr.id === 'links'));
      const urls = links.flatMap((l) => (l.value as Json[]).map((v) => String(v.url)));
      const table = p.type === 'table';
      expect(urls, String(p.title)).toEqual([
        `/d/${DEVICE_DASHBOARD_UID}?var-device=${table ? ROW_DEVICE : SERIES_DEVICE}&${interpolated('__url_time_range')}`,
      ]);
    }
  });

  it('no "current" panel shows a frozen value: stats and bars only count recent points, and say so when none', () => {
    for (const { file, p } of allPanels) {
      if (p.type !== 'stat' && p.type !== 'bargauge') continue;
      const where = `${file} / ${p.title}`;
      // A stat over the whole range (a count) is not a current value.
      if (queries(p).every((q) => q.startsWith('SELECT count('))) continue;
      for (const q of queries(p)) expect(q, where).toMatch(/ AND time > now\(\) - (1m|\$stale)/);
      expect(((p.fieldConfig as Json).defaults as Json).noValue, where).toMatch(/\S/);
    }
  });

  it('the latest-values tables show "stale" where no reading is newer than $stale', () => {
    const tables = allPanels.filter(({ p }) => String(p.title).startsWith('Latest value'));
    expect(tables).toHaveLength(2);
    for (const { p } of tables) {
      const [current, last] = queries(p);
      expect(current).toMatch(/AS "current" .* AND time > now\(\) - \$stale GROUP BY/);
      expect(last).toMatch(/AS "last value" /);
      expect(last).not.toMatch(/now\(\)/);
      expect(p.transformations).toEqual([{ id: 'merge', options: {} }]);
      const currentOverride = overrides(p).find((o) => (o.matcher as Json).options === 'current');
      const mappings = ((currentOverride?.properties ?? []) as Json[])[0]?.value as Json[];
      expect(mappings).toEqual([
        { type: 'special', options: { match: 'null+nan', result: { text: 'stale', color: 'orange', index: 0 } } },
      ]);
    }
  });

  it('time series break at missing data instead of drawing across it', () => {
    for (const { file, p } of allPanels.filter(({ p }) => p.type === 'timeseries')) {
      for (const q of queries(p))
        expect(q, `${file} / ${p.title}`).toMatch(/GROUP BY time\(\$__interval\).* fill\(null\)$/);
      expect((((p.fieldConfig as Json).defaults as Json).custom as Json).spanNulls, String(p.title)).toBe(false);
    }
  });

  it('bool channels are a state timeline of the `state` field, on/off', () => {
    const timeline = panelsOf(device).find((p) => p.type === 'state-timeline');
    if (!timeline) throw new Error('no state timeline');
    expect(queries(timeline)).toEqual([
      'SELECT "state" FROM "telemetry" WHERE "device" =~ /^$device$/ AND $timeFilter GROUP BY "channel"',
    ]);
    const [mapping] = ((timeline.fieldConfig as Json).defaults as Json).mappings as Json[];
    const options = (mapping as Json).options as Record<string, Json>;
    expect([options.true?.text, options.false?.text]).toEqual(['on', 'off']);
  });
});
