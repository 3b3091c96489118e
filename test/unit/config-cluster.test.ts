import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../server/config/index.ts';

const INFLUX = {
  INFLUX_URL: 'http://localhost:8086',
  INFLUX_TOKEN: 'tok',
  INFLUX_ORG: 'org',
  INFLUX_BUCKET: 'bucket',
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected loadConfig to refuse');
}

describe('cluster settings', () => {
  it('is off without CLUSTER_DATABASE_URL, and ACKs wait for the local log by default', () => {
    const config = loadConfig({});
    expect(config.cluster).toBeNull();
    expect(config.ackDurability).toBe('local');
  });

  it('needs the broker and InfluxDB, listing both at once', () => {
    const problems = problemsOf({ CLUSTER_DATABASE_URL: 'postgres://hub@db:5432/hub', ACK_DURABILITY: 'influx' });
    expect(problems).toEqual([
      'CLUSTER_DATABASE_URL: several instances need MQTT_URL (the bus)',
      'CLUSTER_DATABASE_URL: several instances need INFLUX_URL (the shared store)',
      'ACK_DURABILITY: influx needs INFLUX_URL',
    ]);
  });

  it('refuses ACK_DURABILITY=influx with LOG_FULL_POLICY=drop-oldest (an evicted frame would be ACKed)', () => {
    expect(problemsOf({ ...INFLUX, ACK_DURABILITY: 'influx', LOG_FULL_POLICY: 'drop-oldest' })).toEqual([
      'ACK_DURABILITY: influx needs LOG_FULL_POLICY=backpressure (drop-oldest would ACK evicted frames)',
    ]);
    expect(loadConfig({ ...INFLUX, ACK_DURABILITY: 'influx' }).ackDurability).toBe('influx');
  });

  it('refuses a URL that is not PostgreSQL and a bad instance id', () => {
    const problems = problemsOf({
      ...INFLUX,
      MQTT_URL: 'mqtt://localhost:1883',
      CLUSTER_DATABASE_URL: 'mysql://db/hub',
      HUB_INSTANCE_ID: 'a b',
    });
    expect(problems.some((p) => p.startsWith('CLUSTER_DATABASE_URL: must be a postgres://'))).toBe(true);
    expect(problems.some((p) => p.startsWith('HUB_INSTANCE_ID: must be 1-64 characters'))).toBe(true);
  });

  it('gives each instance its own broker session', () => {
    const config = loadConfig({
      ...INFLUX,
      MQTT_URL: 'mqtt://localhost:1883',
      CLUSTER_DATABASE_URL: 'postgres://hub:secret@db:5432/hub',
      HUB_INSTANCE_ID: 'hub-a',
    });
    expect(config.cluster).toEqual({ databaseUrl: 'postgres://hub:secret@db:5432/hub', instanceId: 'hub-a' });
    expect(config.mqtt?.clientId).toBe('esp32hub-hub-hub-a');
    expect(loadConfig({ ...INFLUX, MQTT_URL: 'mqtt://localhost:1883' }).mqtt?.clientId).toBe('esp32hub-hub');
  });

  it('names the instance after the host when HUB_INSTANCE_ID is unset', () => {
    const config = loadConfig({ ...INFLUX, MQTT_URL: 'mqtt://x:1883', CLUSTER_DATABASE_URL: 'postgres://db/hub' });
    expect(config.cluster?.instanceId).toMatch(/^[A-Za-z0-9_.-]{1,64}$/);
  });
});
