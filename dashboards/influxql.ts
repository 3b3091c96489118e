/**
 * The provisioned InfluxDB datasource and an InfluxQL target for Grafana's typed builders. The
 * foundation SDK ships no InfluxDB query type, so this is the one hand-written model: a raw InfluxQL
 * query (`rawQuery: true`) as Grafana's InfluxDB datasource stores it in panels and alert rules.
 */
import type * as cog from '@grafana/grafana-foundation-sdk/cog';

export const DATASOURCE_UID = 'esp32hub-influxql';
export const INFLUX_DATASOURCE = { type: 'influxdb', uid: DATASOURCE_UID } as const;

export interface InfluxQLTarget {
  refId: string;
  datasource: typeof INFLUX_DATASOURCE;
  rawQuery: true;
  resultFormat: 'time_series' | 'table';
  query: string;
  alias?: string;
}

export class InfluxQLQuery implements cog.Builder<cog.Dataquery> {
  private readonly target: InfluxQLTarget;

  constructor(refId: string, query: string) {
    this.target = { refId, datasource: INFLUX_DATASOURCE, rawQuery: true, resultFormat: 'time_series', query };
  }

  alias(alias: string): this {
    this.target.alias = alias;
    return this;
  }

  /** `table`: one row per series (tags as columns), for table panels. */
  table(): this {
    this.target.resultFormat = 'table';
    return this;
  }

  build(): cog.Dataquery {
    return { ...this.target, _implementsDataqueryVariant() {} };
  }
}
