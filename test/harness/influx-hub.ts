/**
 * The setup of the tests of a hub writing to a real InfluxDB: the harness's InfluxDB (1.x engine
 * behind nginx's `/api/v2/write`, see influx.ts) and a hub in this process (`startTestHub`: real
 * registry, real local log, devices on real sockets) whose forwarder writes to it with short
 * intervals. One per `describe` (or file): started in `beforeAll`, stopped in `afterAll`. Imported
 * directly, not through index.ts (it registers vitest hooks).
 */
import { afterAll, beforeAll } from 'vitest';
import type { EnvName } from '../../server/config/index.ts';
import { startTestHub, type TestHub } from '../integration/ingest-device-client.ts';
import { type InfluxServer, influxEnv, startInflux } from './influx.ts';

/** Partial batches out within 50 ms, retries within 0.5 s, no hub_stats points. */
export const QUICK_FORWARDER: Partial<Record<EnvName, string>> = {
  INFLUX_FLUSH_INTERVAL_MS: '50',
  INFLUX_MAX_RETRY_DELAY_MS: '500',
  INFLUX_STATS_INTERVAL_MS: '0',
};

/** Options for {@link useInfluxHub}. */
export interface InfluxHubOptions {
  /** The InfluxDB bucket (database) the hub writes to. */
  bucket: string;
  /** More hub settings (they win over the InfluxDB settings and {@link QUICK_FORWARDER}). */
  env?: Partial<Record<EnvName, string>>;
}

/** What {@link useInfluxHub} gives the tests (inside tests and later hooks; it throws before `beforeAll` ran). */
export interface InfluxHubFixture {
  readonly influx: InfluxServer;
  readonly hub: TestHub;
  /**
   * Another writer makes the field `value` a string in the shard of `timeMs` (7-day shards): the
   * engine then refuses the hub's numeric readings of that shard with its own field type conflict (400).
   */
  poisonValueField(timeMs: number): Promise<void>;
}

/** Registers the hooks that start InfluxDB and the hub before the tests and stop both after them. */
export function useInfluxHub(options: InfluxHubOptions): InfluxHubFixture {
  let influx: InfluxServer | undefined;
  let hub: TestHub | undefined;
  beforeAll(async () => {
    influx = await startInflux({ bucket: options.bucket });
    hub = await startTestHub({ ...influxEnv(influx), ...QUICK_FORWARDER, ...options.env });
  });
  afterAll(async () => {
    await hub?.stop();
    await hub?.dir.remove();
    await influx?.stop();
  });
  const fixture: InfluxHubFixture = {
    get influx() {
      if (!influx) throw new Error('InfluxDB is not started yet (use the fixture inside tests)');
      return influx;
    },
    get hub() {
      if (!hub) throw new Error('the hub is not started yet (use the fixture inside tests)');
      return hub;
    },
    async poisonValueField(timeMs) {
      const { url, org, bucket, token } = fixture.influx;
      const res = await fetch(`${url}/api/v2/write?org=${org}&bucket=${bucket}&precision=ms`, {
        method: 'POST',
        headers: { authorization: `Token ${token}` },
        body: `telemetry,channel=legacy,device=old-logger value="n/a" ${timeMs}`,
      });
      if (res.status !== 204) throw new Error(`the poisoning write got HTTP ${res.status}: ${await res.text()}`);
    },
  };
  return fixture;
}
