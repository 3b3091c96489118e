import { describe, expect, it } from 'vitest';
import { parseCliOptions, type UsageError } from '../../firmware-sim/options.ts';

const base = ['--tokens-file', 'x.tokens'];
const problems = (argv: string[]) => {
  try {
    parseCliOptions([...base, ...argv], {});
    return [];
  } catch (err) {
    return (err as UsageError).problems;
  }
};

describe('simulator --transport', () => {
  it('defaults to WebSocket, and to the local broker over MQTT', () => {
    expect(parseCliOptions(base, {})).toMatchObject({ transport: 'ws', url: 'ws://localhost:8080/v1/device' });
    expect(parseCliOptions([...base, '--transport', 'mqtt'], {})).toMatchObject({
      transport: 'mqtt',
      url: 'mqtt://localhost:1883',
      mqttPrefix: 'esp32hub',
    });
    expect(
      parseCliOptions([...base, '--transport', 'mqtt', '--url', 'mqtts://b:8883', '--mqtt-prefix', 'site/a'], {}),
    ).toMatchObject({ url: 'mqtts://b:8883', mqttPrefix: 'site/a' });
  });

  it('refuses URLs and flags of the other transport', () => {
    expect(problems(['--transport', 'mqtt', '--url', 'ws://h/v1/device'])).toEqual([
      '--url must be a mqtt:// or mqtts:// URL',
    ]);
    expect(problems(['--url', 'mqtt://b:1883'])).toEqual(['--url must be a ws:// or wss:// URL']);
    expect(problems(['--mqtt-prefix', 'x'])).toEqual(['--mqtt-prefix needs --transport mqtt']);
    expect(problems(['--transport', 'mqtt', '--mqtt-prefix', 'a/#'])[0]).toMatch(/^--mqtt-prefix must be/);
    expect(problems(['--transport', 'udp'])[0]).toBe('--transport must be ws or mqtt');
    expect(problems(['--transport', 'mqtt', '--provision'])).toContain(
      '--provision with --transport mqtt needs --admin-url (the hub, not the broker)',
    );
  });
});
