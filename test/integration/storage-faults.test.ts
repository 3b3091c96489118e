/**
 * Storage faults seen from a device on a real socket: a failed commit (injected at the storage
 * boundary) and a full disk (a real tmpfs mounted by the test, as root).
 *
 * - A failed commit: no ACK covers the failed frames or those queued behind them, the session closes
 *   with INTERNAL (1011), WELCOME of the next session reports only what is on disk, and the replay is
 *   stored.
 * - A full disk: the hub stays up, refuses frames with the non-fatal STORAGE_FULL (no close, no ACK),
 *   says so on /readyz and /metrics, and accepts the device's replay by itself once space returns.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../server/codec/index.ts';
import type { LocalLogOptions } from '../../server/storage/local-log.ts';
import { mountTmpfs, type TmpfsMount, tmpfsUnavailable } from '../harness/tmpfs.ts';
import { startTestHub, TestDevice, type TestHub, telemetry } from './ingest-device-client.ts';

const BOOT = 0x5eed;
const DEVICE = 'disk-dev';

let hub: TestHub | undefined;
let disk: TmpfsMount | undefined;
afterEach(async () => {
  await hub?.stop();
  hub = undefined;
  await disk?.remove();
  disk = undefined;
});

/** Holds every commit while `holding`, and lets the test fail or release the held ones. */
function commitGate() {
  const held: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const gate = {
    holding: false,
    held,
    faults: {
      beforeCommit: () => {
        if (!gate.holding) return;
        return new Promise<void>((resolve, reject) => held.push({ resolve, reject }));
      },
    } satisfies NonNullable<LocalLogOptions['faults']>,
  };
  return gate;
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const acks = (d: TestDevice) => d.history.filter((m): m is Extract<Message, { type: 'ack' }> => m.type === 'ack');

describe('a failed commit, seen by the device', () => {
  it('acknowledges nothing past the failed frame, closes 1011, and stores the replay', async () => {
    const gate = commitGate();
    hub = await startTestHub({}, { storageFaults: gate.faults });
    const token = await hub.addDevice(DEVICE);
    const base = Date.now(); // after the device's first sighting: stored times are the device's own
    let dev = await TestDevice.connect(hub.url, { token });
    expect((await dev.hello(DEVICE, BOOT)).lastAck).toBeNull();
    dev.send({ type: 'descriptors', channels: (await import('./ingest-device-client.ts')).TEST_CHANNELS });
    dev.send(telemetry(BOOT, 1, base));
    await dev.ackOf(BOOT, 1);

    gate.holding = true;
    dev.send(telemetry(BOOT, 2, base + 3000)); // held in commit
    await until(() => gate.held.length === 1, 'the commit of seq 2 to be held');
    dev.send(telemetry(BOOT, 3, base + 6000)); // queued behind it
    dev.send(telemetry(BOOT, 4, base + 9000));
    await until(
      async () => (await hub?.metricValue('hub_frames_received_total', { type: 'telemetry' })) === 4,
      'frames 3 and 4 to arrive',
    );
    gate.holding = false;
    gate.held.shift()?.reject(new Error('EIO: injected disk error'));

    const error = (await dev.next('error')) as Extract<Message, { type: 'error' }>;
    expect(await dev.closed()).toBe(1011);
    expect(error.fatal).toBe(true);
    expect(acks(dev).map((a) => a.seq)).toEqual([1]); // nothing covers 2..4
    expect(await hub.metricValue('hub_local_log_commit_failures_total')).toBe(1);

    dev = await TestDevice.connect(hub.url, { token });
    expect((await dev.hello(DEVICE, BOOT)).lastAck).toEqual({ bootId: BOOT, seq: 1 });
    for (const seq of [2, 3, 4]) dev.send(telemetry(BOOT, seq, base + (seq - 1) * 3000));
    await dev.ackOf(BOOT, 4);
    const stored = hub.hub.context().log.queryHistory({
      deviceId: DEVICE,
      fromMs: base - 1,
      toMs: base + 60_000,
      limit: 1000,
      channel: 'temperature',
    });
    expect(stored.readings.map((r) => r.value)).toEqual(
      [1, 2, 3, 4].flatMap((seq) => [0, 1, 2].map((i) => (2000 + seq * 10 + i) / 100)),
    );
    await dev.close();
  });
});

describe.skipIf(tmpfsUnavailable() !== null)(`a full disk (real tmpfs) ${tmpfsUnavailable() ?? ''}`, () => {
  it('refuses with STORAGE_FULL, stays up and unready, and takes the replay once space returns', async () => {
    const mounted = await mountTmpfs(48 * 1024 * 1024, 'disk-full');
    if (typeof mounted === 'string') throw new Error(mounted);
    disk = mounted;
    hub = await startTestHub(
      { LOG_MIN_FREE_BYTES: String(8 * 1024 * 1024) },
      {},
      { path: disk.path, remove: async () => undefined },
    );
    const token = await hub.addDevice(DEVICE);
    const dev = await TestDevice.connect(hub.url, { token });
    await dev.hello(DEVICE, BOOT);
    dev.send({ type: 'descriptors', channels: (await import('./ingest-device-client.ts')).TEST_CHANNELS });
    const base = Date.now() - 3_600_000;
    dev.send(telemetry(BOOT, 1, base));
    await dev.ackOf(BOOT, 1);
    expect((await fetch(`${hub.http}/readyz`)).status).toBe(200);

    // Another program fills the disk below the hub's reserve.
    const filler = await disk.fillTo(6 * 1024 * 1024);
    await until(
      async () => (await hub?.metricValue('hub_local_log_full', { reason: 'disk' })) === 1,
      'STORAGE_FULL (disk)',
    );
    dev.send(telemetry(BOOT, 2, base + 3000));
    const refusal = (await dev.next('error')) as Extract<Message, { type: 'error' }>;
    expect(refusal.fatal).toBe(false);
    const ready = await fetch(`${hub.http}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { localLog: { fullReason: string } }).localLog.fullReason).toBe('disk');
    dev.send(telemetry(BOOT, 3, base + 6000)); // refused silently: an ACK for it would cover seq 2
    expect(dev.closeCode).toBeNull();

    // Space returns: the device's replay (as a real one does after STORAGE_FULL) is stored.
    await disk.release(filler);
    await until(async () => (await fetch(`${hub?.http}/readyz`)).status === 200, 'ready again');
    dev.send(telemetry(BOOT, 2, base + 3000));
    dev.send(telemetry(BOOT, 3, base + 6000));
    await dev.ackOf(BOOT, 3);
    expect(acks(dev).map((a) => a.seq)).toEqual([1, 3]);
    expect(await hub.metricValue('hub_local_log_full_episodes_total', { reason: 'disk' })).toBe(1);
    await dev.close();
  });

  it('a commit that hits ENOSPC before the guard notices: the hub survives, acks nothing lost', async () => {
    const mounted = await mountTmpfs(32 * 1024 * 1024, 'enospc');
    if (typeof mounted === 'string') throw new Error(mounted);
    disk = mounted;
    // The smallest reserve, and a disk filled to just above it: lmdb's file growth hits ENOSPC first.
    hub = await startTestHub(
      { LOG_MIN_FREE_BYTES: String(1024 * 1024) },
      {},
      { path: disk.path, remove: async () => undefined },
    );
    const token = await hub.addDevice(DEVICE);
    const base = Date.now() - 3_600_000;
    const acked = new Set<number>();
    let seq = 0;
    let dev = await TestDevice.connect(hub.url, { token });
    await dev.hello(DEVICE, BOOT);
    dev.send({ type: 'descriptors', channels: (await import('./ingest-device-client.ts')).TEST_CHANNELS });
    dev.send(telemetry(BOOT, ++seq, base, 60));
    await dev.ackOf(BOOT, seq);
    acked.add(seq);
    await disk.fillTo(1024 * 1024 + 256 * 1024);

    // Stream until the hub refuses (STORAGE_FULL, non-fatal) or fails a commit (1011, then reconnect).
    let refused = false;
    for (let round = 0; round < 2000 && !refused; round++) {
      dev.send(telemetry(BOOT, ++seq, base + seq * 60_000, 60));
      const m = await dev.waitFor((x) => x.type === 'ack' || x.type === 'error', 20_000);
      if (m.type === 'ack') acked.add(m.seq);
      else if (m.type === 'error' && !m.fatal) refused = true;
      else {
        expect(await dev.closed()).toBe(1011);
        dev = await TestDevice.connect(hub.url, { token });
        const welcome = await dev.hello(DEVICE, BOOT);
        seq = welcome.lastAck?.seq ?? 0;
      }
    }
    expect(refused).toBe(true);
    expect((await fetch(`${hub.http}/healthz`)).status).toBe(200);
    const stored = hub.hub
      .context()
      .log.readAfter(0, 100_000)
      .map((e) => e.seq);
    for (const s of acked) expect(stored).toContain(s);
    await dev.close();
  });
});
