/**
 * Grafana provisioning checked without a Grafana server: every dashboard validates against the
 * dashboard schema published in @grafana/schema (its TypeScript `Dashboard` type turned into a JSON
 * schema), every provisioning YAML parses and points at files and uids that exist, and the committed
 * files are exactly what dashboards/build.ts generates.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { createGenerator } from 'ts-json-schema-generator';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DATASOURCE_UID, GRAFANA_DIR, renderAll } from '../../dashboards/build.ts';

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
