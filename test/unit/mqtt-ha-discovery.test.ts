/**
 * Home Assistant discovery payloads checked against schemas written from HA's MQTT discovery
 * documentation (test/unit/ha-discovery-schema.ts): required keys, no unknown keys, units valid for
 * their device class, topics the bridge and the hub actually use, unique ids.
 */
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { ValueType } from '../../server/codec/index.ts';
import { bridgeTopicsFor } from '../../server/mqtt/bridge.ts';
import {
  haCommandTopic,
  haConfigsFor,
  haNodeId,
  SAMPLE_INTERVAL_MAX_MS,
  SAMPLE_INTERVAL_MIN_MS,
} from '../../server/mqtt/ha-discovery.ts';
import { parseCommandRequest } from '../../server/pipeline/commands.ts';
import { channel as ch, DISCOVERY_TOPIC, HA_SCHEMAS, UNITS_BY_DEVICE_CLASS } from './ha-discovery-schema.ts';

/** The simulator's channel set, plus units HA has no class for. */
const CHANNELS = [
  ch(0, 'temperature', '°C', ValueType.I16),
  ch(1, 'humidity', '%', ValueType.U16),
  ch(2, 'pressure', 'hPa', ValueType.U32),
  ch(3, 'battery_v', 'V', ValueType.U16),
  ch(4, 'rssi_dbm', 'dBm', ValueType.I8),
  ch(5, 'heap_free', 'B', ValueType.U32),
  ch(6, 'uptime_s', 's', ValueType.U32),
  ch(7, 'led', '', ValueType.BOOL),
  ch(8, 'fan_speed', 'rpm', ValueType.F32),
  ch(9, 'count', '', ValueType.U32),
  ch(10, 'energy', 'kWh', ValueType.F32),
];

const naming = { topicPrefix: 'esp32hub', haPrefix: 'homeassistant', bridge: bridgeTopicsFor('esp32hub') };
const ajv = new Ajv({ allErrors: true, strict: true });
const validators = Object.fromEntries(Object.entries(HA_SCHEMAS).map(([k, s]) => [k, ajv.compile(s)]));

describe('Home Assistant discovery payloads', () => {
  const configs = haConfigsFor(naming, { deviceId: 'dev-1', firmwareVersion: '1.4.2', channels: CHANNELS });

  it('validate against the schema of their component, on a discovery topic', () => {
    expect(configs.length).toBe(CHANNELS.length + 2);
    for (const c of configs) {
      expect(c.topic).toMatch(DISCOVERY_TOPIC);
      expect(c.topic.split('/')[1]).toBe(c.component);
      const validate = validators[c.component];
      expect(validate, c.component).toBeDefined();
      const ok = validate?.(c.payload);
      expect(ajv.errorsText(validate?.errors), c.topic).toBe('No errors');
      expect(ok).toBe(true);
    }
  });

  it('give each channel the entity HA expects: device class and unit where known, bool as binary_sensor', () => {
    const byKey = new Map(configs.map((c) => [c.topic.split('/')[3], c]));
    const cls = (k: string) => byKey.get(k)?.payload.device_class;
    expect(cls('temperature')).toBe('temperature');
    expect(cls('humidity')).toBe('humidity');
    expect(cls('pressure')).toBe('pressure');
    expect(cls('battery_v')).toBe('voltage');
    expect(cls('rssi_dbm')).toBe('signal_strength');
    expect(cls('heap_free')).toBe('data_size');
    expect(cls('uptime_s')).toBe('duration');
    expect(cls('energy')).toBe('energy');
    expect(byKey.get('energy')?.payload.state_class).toBe('total_increasing');
    expect(cls('fan_speed')).toBeUndefined();
    expect(byKey.get('fan_speed')?.payload.unit_of_measurement).toBe('rpm');
    expect(byKey.get('count')?.payload).not.toHaveProperty('unit_of_measurement');
    expect(byKey.get('led')?.component).toBe('binary_sensor');
    for (const c of configs) {
      if (c.component !== 'sensor' || c.payload.device_class === undefined) continue;
      expect(UNITS_BY_DEVICE_CLASS[c.payload.device_class as string], c.topic).toContain(c.payload.unit_of_measurement);
    }
  });

  it('read the bridge’s state and status topics and command the topics the hub subscribes to', () => {
    for (const c of configs) {
      const p = c.payload as Record<string, unknown>;
      expect(p.availability).toEqual([
        { topic: 'esp32hub/v1/dev-1/status', payload_available: 'online', payload_not_available: 'offline' },
      ]);
      if (c.component === 'sensor' || c.component === 'binary_sensor') {
        expect(p.state_topic).toBe('esp32hub/v1/dev-1/state');
        expect(p.value_template).toContain(`value_json['channels']['${c.topic.split('/')[3]}']['value']`);
      }
    }
    const button = configs.find((c) => c.component === 'button')?.payload;
    const number = configs.find((c) => c.component === 'number')?.payload;
    expect(button?.command_topic).toBe(haCommandTopic('esp32hub', 'dev-1', 'identify'));
    expect(button?.device_class).toBe('identify');
    expect(number?.command_topic).toBe(haCommandTopic('esp32hub', 'dev-1', 'sample_interval_ms'));
    // The number's range is exactly what the hub's set_sample_interval accepts.
    expect([number?.min, number?.max]).toEqual([SAMPLE_INTERVAL_MIN_MS, SAMPLE_INTERVAL_MAX_MS]);
    for (const ms of [SAMPLE_INTERVAL_MIN_MS, SAMPLE_INTERVAL_MAX_MS]) {
      expect(() => parseCommandRequest({ name: 'set_sample_interval', args: { interval_ms: ms } })).not.toThrow();
    }
    for (const ms of [SAMPLE_INTERVAL_MIN_MS - 1, SAMPLE_INTERVAL_MAX_MS + 1]) {
      expect(() => parseCommandRequest({ name: 'set_sample_interval', args: { interval_ms: ms } })).toThrow();
    }
  });

  it('share one device block (model, firmware version) and use unique ids across devices', () => {
    const other = haConfigsFor(naming, { deviceId: 'dev-2', firmwareVersion: '2.0.0', channels: CHANNELS });
    for (const c of configs) {
      expect(c.payload.device).toEqual({
        identifiers: ['esp32hub.dev-1'],
        name: 'dev-1',
        manufacturer: 'esp32hub',
        model: expect.any(String),
        sw_version: '1.4.2',
      });
    }
    const ids = [...configs, ...other].map((c) => c.payload.unique_id);
    expect(new Set(ids).size).toBe(ids.length);
    const topics = [...configs, ...other].map((c) => c.topic);
    expect(new Set(topics).size).toBe(topics.length);
  });

  it('map device ids HA does not allow in a topic level to distinct node ids', () => {
    expect(haNodeId('esp32hub', 'dev-1')).toBe('esp32hub_dev-1');
    const dotted = haNodeId('esp32hub', 'a.b');
    expect(dotted).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(dotted).not.toBe(haNodeId('esp32hub', 'a_b'));
    for (const c of haConfigsFor(naming, { deviceId: 'a.b', firmwareVersion: '', channels: CHANNELS })) {
      expect(c.topic).toMatch(DISCOVERY_TOPIC);
    }
  });

  it('read channel values by subscript, so a channel named like a dict method (items, values) works in Jinja', () => {
    const [items] = haConfigsFor(naming, {
      deviceId: 'dev-1',
      firmwareVersion: '',
      channels: [ch(0, 'items', '', ValueType.U32)],
    });
    expect(items?.payload.value_template).toBe("{{ value_json['channels']['items']['value'] }}");
  });
});
