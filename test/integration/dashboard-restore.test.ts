/**
 * After a hub restart the fleet view is not blank: every device's last values and last-seen time
 * come back from the store (the local log) before any board reconnects. A real hub (buildHub + the
 * live extension, real registry and local log) and simulated boards on real sockets; the hub is
 * stopped and a new one started on the same data directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimDevice } from '../../firmware-sim/device.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import type { DeviceView } from '../../server/live/state.ts';
import { createLogger } from '../../server/log/index.ts';

const IDS = ['keep-1', 'keep-2'];
let dataDir: string;
let hub: Hub | undefined;

function startHub(): Promise<{ port: number }> {
  const config = configFrom({ HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dataDir, HUB_LOG_LEVEL: 'warn' });
  const live = liveExtension(config);
  hub = buildHub(config, {
    logger: createLogger('warn'),
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  return hub.start();
}

async function devices(port: number): Promise<DeviceView[]> {
  const res = await fetch(`http://127.0.0.1:${port}/api/devices`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { devices: DeviceView[] }).devices;
}

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'dashboard-restore-'));
});

afterAll(async () => {
  await hub?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('fleet state after a hub restart', () => {
  it('restores last values and last seen from the store before boards reconnect', async () => {
    const { port } = await startHub();
    const registry = hub!.context().registry!;
    const sims: SimDevice[] = [];
    for (const [index, id] of IDS.entries()) {
      const { token } = await registry.add(id);
      sims.push(new SimDevice({ id, token, url: `ws://127.0.0.1:${port}/v1/device`, seed: 3, index }));
    }
    for (const s of sims) s.start();
    // Wait until each board's readings are acked (durable) and shown.
    const deadline = Date.now() + 60_000;
    let before: DeviceView[] = [];
    for (;;) {
      before = await devices(port);
      const ready = IDS.every((id) => before.find((d) => d.id === id)?.channels.some((c) => c.last !== null));
      if (ready && sims.every((s) => s.stats.framesAcked >= 2)) break;
      if (Date.now() > deadline) throw new Error(`boards never reported: ${JSON.stringify(before)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await Promise.all(sims.map((s) => s.stop()));
    // The last values the hub stored (what a restart must bring back): read them before stopping.
    const stored = new Map<string, DeviceView>();
    for (const d of await devices(port)) stored.set(d.id, d);
    await hub!.stop();

    const again = await startHub();
    const after = await devices(again.port);
    for (const id of IDS) {
      const d = after.find((x) => x.id === id);
      expect(d, id).toBeDefined();
      expect(d!.state).toBe('offline');
      expect(d!.lastSeenMs, `${id} last seen`).not.toBeNull();
      expect(d!.lastSeenMs!).toBeGreaterThan(0);
      const temperature = d!.channels.find((c) => c.key === 'temperature');
      expect(temperature?.last, `${id} temperature`).not.toBeNull();
      // The newest stored sample: the one the page showed last, or a newer one acked after it.
      const shown = stored.get(id)!.channels.find((c) => c.key === 'temperature')!.last!;
      expect(temperature!.last![0]).toBeGreaterThanOrEqual(shown[0]);
      expect(typeof temperature!.last![1]).toBe('number');
    }
  }, 120_000);
});
