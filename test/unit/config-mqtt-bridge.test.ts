import { describe, expect, it } from 'vitest';
import { type ConfigError, loadConfig } from '../../server/config/index.ts';

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('MQTT bridge and Home Assistant settings', () => {
  it('are off by default, and nothing MQTT is asked for without MQTT_URL', () => {
    expect(loadConfig({}).mqttBridge).toBeNull();
    expect(loadConfig({ MQTT_URL: 'mqtt://broker:1883' }).mqttBridge).toBeNull();
  });

  it('turn the bridge on with its interval, and discovery with its prefix', () => {
    const c = loadConfig({
      MQTT_URL: 'mqtt://broker:1883',
      MQTT_BRIDGE: 'on',
      MQTT_BRIDGE_INTERVAL_MS: '250',
      MQTT_HA_DISCOVERY: 'on',
      MQTT_HA_PREFIX: 'ha',
    });
    expect(c.mqttBridge).toEqual({ intervalMs: 250, haDiscovery: { prefix: 'ha' } });
    expect(loadConfig({ MQTT_URL: 'mqtt://b', MQTT_BRIDGE: 'on' }).mqttBridge).toEqual({
      intervalMs: 1000,
      haDiscovery: null,
    });
  });

  it('refuse settings that would do nothing', () => {
    expect(problems({ MQTT_BRIDGE: 'on' })).toEqual(['MQTT_BRIDGE: on needs MQTT_URL']);
    expect(problems({ MQTT_URL: 'mqtt://b', MQTT_HA_DISCOVERY: 'on' })[0]).toMatch(
      /^MQTT_HA_DISCOVERY: on needs MQTT_BRIDGE=on/,
    );
    expect(problems({ MQTT_URL: 'mqtt://b', MQTT_BRIDGE: 'on', MQTT_HA_PREFIX: 'home/#' })[0]).toMatch(
      /^MQTT_HA_PREFIX:/,
    );
    expect(problems({ MQTT_URL: 'mqtt://b', MQTT_BRIDGE: 'yes' })[0]).toMatch(/^MQTT_BRIDGE:/);
  });
});
