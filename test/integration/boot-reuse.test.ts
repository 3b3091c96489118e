/**
 * A device that reuses a boot id across boots [PROTO-3.4.3] (a board that draws its boot id before its
 * entropy source is ready; a simulator started twice with one seed), over a real socket into the real
 * embedded store: the second boot's frames are stored with their own timestamps, not acknowledged as
 * duplicates of the first boot's; WELCOME names no last ACK of the old boot; the hub counts it. A plain
 * reconnect within one boot is not mistaken for a reuse.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTestHub, TEST_CHANNELS, TestDevice, type TestHub, telemetry } from './ingest-device-client.ts';

const DEVICE = 'reuse-dev';
const BOOT = 777;

let hub: TestHub | undefined;
afterEach(async () => {
  await hub?.stop();
  hub = undefined;
});

function temperatures(t: TestHub, fromMs: number): number[] {
  return t.hub
    .context()
    .log.queryHistory({ deviceId: DEVICE, fromMs, toMs: fromMs + 3_600_000, limit: 10_000, channel: 'temperature' })
    .readings.map((r) => r.value as number);
}

describe('a reused boot id', () => {
  it('stores the new boot, not duplicates; a reconnect within one boot stays a replay', async () => {
    // The hub's clock, moved forward by the test to stand for the minutes between two boots.
    let skewMs = 0;
    const now = () => Date.now() + skewMs;
    hub = await startTestHub({}, { now });
    const token = await hub.addDevice(DEVICE);
    const start = now();

    // First boot: up for 60 s, three frames stored.
    let dev = await TestDevice.connect(hub.url, { token });
    expect((await dev.hello(DEVICE, BOOT, { uptimeMs: 60_000 })).lastAck).toBeNull();
    dev.send({ type: 'descriptors', channels: TEST_CHANNELS });
    for (const seq of [1, 2, 3]) dev.send(telemetry(BOOT, seq, start - 50_000 + seq * 3000));
    await dev.ackOf(BOOT, 3);
    await dev.close();

    // The same boot reconnects (uptime grew with the wall clock): a replay of seq 3 is a duplicate.
    dev = await TestDevice.connect(hub.url, { token });
    const again = await dev.hello(DEVICE, BOOT, { uptimeMs: 60_000 + (now() - start) });
    expect(again.lastAck).toEqual({ bootId: BOOT, seq: 3 });
    dev.send(telemetry(BOOT, 3, start - 50_000 + 9000));
    await dev.ackOf(BOOT, 3);
    expect(await hub.metricValue('hub_duplicate_frames_total')).toBe(1);
    await dev.close();

    // Ten minutes later, a new boot under the same id: up for 2 s, so it started long after the first
    // boot's frames were stored.
    skewMs = 600_000;
    dev = await TestDevice.connect(hub.url, { token });
    const reused = await dev.hello(DEVICE, BOOT, { uptimeMs: 2000 });
    expect(reused.lastAck).toBeNull();
    for (const seq of [1, 2]) dev.send(telemetry(BOOT, seq, now() - 1000 + seq * 3000));
    await dev.ackOf(BOOT, 2);
    expect(await hub.metricValue('hub_boot_ids_reused_total')).toBe(1);
    expect(await hub.metricValue('hub_duplicate_frames_total')).toBe(1); // the new frames were stored
    await dev.close();

    // Both boots' readings are in the store: 3 frames of the first, 2 of the second, 3 samples each.
    expect(temperatures(hub, start - 60_000)).toHaveLength(15);
  });
});
