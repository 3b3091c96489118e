/**
 * kill -9 under load [DESIGN: Reliability], made able to fail.
 *
 * kill -9 keeps the page cache, so a commit that was written but not flushed survives it: killing a
 * hub at a random moment cannot tell "ACK after the durable commit" from "ACK before it". The hub here
 * (crash-hub-child.ts: `buildHub` with the real configuration and the storage fault seam) is told to
 * HOLD its commits; frames keep arriving into the held group; the test then makes sure every ACK the
 * hub sent has reached the devices (a ping round trip on each socket, answered in order after any ACK)
 * and SIGKILLs it. Frames of the held group were never written: if any of them had been acknowledged,
 * the devices (which free a frame on ACK, like the firmware) would never replay it and it is lost.
 * After a restart the devices replay what was not acknowledged, and every acknowledged reading is
 * looked up in the real InfluxDB with its value (tests/chaos reconciliation, scripts/chaos/reconcile.ts):
 * lost, stored twice, stored with another value, or stored at a time never sampled all fail the test.
 *
 * Checked against mutations (see docs/testing.md): acknowledging at append time (before the commit)
 * makes the first test fail (WELCOME behind an ACK, acknowledged readings lost).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChaosFleet, waitFor } from '../../scripts/chaos/fleet.ts';
import { CHAOS_CHANNELS } from '../../scripts/chaos/ledger.ts';
import { influxReader, reconcile } from '../../scripts/chaos/reconcile.ts';
import { createLogger } from '../../server/log/index.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import {
  freePort,
  type InfluxServer,
  influxEnv,
  registerCleanup,
  type ServerProcess,
  startInflux,
  startProcess,
  type TempDir,
  tempDir,
  waitForReady,
} from '../harness/index.ts';
import { readTail } from '../harness/process.ts';
import { metricFromText, TestDevice } from './ingest-device-client.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const DEVICES = 6;

interface HubChild {
  proc: ChildProcess;
  logFile: string;
  /** Resolves with the first held commit that holds frames. */
  heldFrames(): Promise<number>;
  hold(at: 'commit' | 'flush'): void;
  kill9(): Promise<void>;
}

describe('hub killed with SIGKILL while a commit is held', () => {
  let influx: InfluxServer;
  let dir: TempDir;
  let port: number;
  const devices: { id: string; token: string }[] = [];
  let fleet: ChaosFleet | null = null;
  let child: HubChild | null = null;

  beforeAll(async () => {
    influx = await startInflux({ bucket: 'crash' });
    dir = await tempDir('ingest-crash');
    port = await freePort();
    const registry = openDeviceRegistry({ dataDir: dir.path, logger: createLogger('silent'), watchIntervalMs: 0 });
    for (let i = 0; i < DEVICES; i++) {
      const id = `esp-crash-${i}`;
      devices.push({ id, token: (await registry.add(id)).token });
    }
    await registry.close();
  });
  afterAll(async () => {
    await fleet?.close();
    await child?.kill9();
    await influx?.stop();
    await dir?.remove();
  });

  const hubEnv = (): NodeJS.ProcessEnv => ({
    ...process.env,
    ENV_FILE: '/dev/null', // a developer's own .env stays out of the run
    HUB_HOST: '127.0.0.1',
    HUB_PORT: String(port),
    HUB_DATA_DIR: dir.path,
    HUB_LOG_LEVEL: 'warn',
    ...influxEnv(influx),
    INFLUX_FLUSH_INTERVAL_MS: '50',
    INFLUX_STATS_INTERVAL_MS: '0',
  });

  async function startChild(label: string): Promise<HubChild> {
    const logFile = join(dir.path, `hub-${label}.log`);
    const fd = openSync(logFile, 'a');
    const proc = fork(join(ROOT, 'test/integration/crash-hub-child.ts'), [], {
      cwd: ROOT,
      env: hubEnv(),
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', fd, fd, 'ipc'],
    });
    closeSync(fd);
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    const unregister = registerCleanup({
      label: `crash hub ${label}`,
      stop: async () => {
        proc.kill('SIGKILL');
        await exited;
      },
      killSync: () => proc.kill('SIGKILL'),
    });
    const held: number[] = [];
    let heldWaiter: ((frames: number) => void) | null = null;
    const ready = new Promise<void>((resolve, reject) => {
      proc.on('message', (m: { type: string; frames?: number }) => {
        if (m.type === 'ready') resolve();
        if (m.type === 'held' && (m.frames ?? 0) > 0) {
          held.push(m.frames as number);
          heldWaiter?.(m.frames as number);
        }
      });
      void exited.then(() => reject(new Error(`hub ${label} exited while starting:\n${readTail(logFile, 30)}`)));
    });
    await ready;
    return {
      proc,
      logFile,
      heldFrames: () =>
        held.length > 0
          ? Promise.resolve(held[0] as number)
          : new Promise((resolve) => {
              heldWaiter = resolve;
            }),
      hold: (at) => proc.send({ type: 'hold', at }),
      async kill9() {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await exited;
        unregister();
      },
    };
  }

  const metric = async (name: string) =>
    metricFromText(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), name);

  // Held before the commit, the frames are lost with the process (an early ACK loses them for real);
  // held before the flush, they survive kill -9 in the page cache but would not survive a power cut,
  // so there the check is that none of them was acknowledged.
  it.each(['commit', 'flush'] as const)(
    'acknowledges only durable frames (held at the %s): every acknowledged reading is stored once with its value',
    async (at) => {
      await child?.kill9(); // the previous variant's hub: its readings go, so each variant reconciles its own
      await influx.influxQL('DROP MEASUREMENT "telemetry"');
      child = await startChild(`${at}-first`);
      const f = new ChaosFleet({ url: `ws://127.0.0.1:${port}/v1/device`, devices, readingsPerSec: 3000 });
      fleet = f;
      f.start();
      f.mark();
      await waitFor(() => f.allAckedSinceMark() !== null, 'every device acknowledged', 60_000);
      const warm = f.ackedReadings() + 6000;
      await waitFor(() => f.ackedReadings() >= warm, '2 s of readings acknowledged', 60_000);

      // Hold commits; wait until a held group holds frames, and until every ACK sent so far arrived.
      child.hold(at);
      const heldFrames = await child.heldFrames();
      await f.roundTrip();
      const unackedAtKill = f.unackedFrames();
      await child.kill9();

      // Restart; devices reconnect, WELCOME must not be behind any ACK, and they replay the rest.
      child = await startChild(`${at}-second`);
      f.mark();
      await waitFor(() => f.allAckedSinceMark() !== null, 'every device acknowledged after the restart', 60_000);
      f.stopSampling();
      await waitFor(() => f.unackedFrames() === 0, 'every frame acknowledged', 60_000);
      await waitFor(
        async () => (await metric('hub_local_log_unforwarded_frames')) === 0,
        'the forwarder wrote the local log to InfluxDB',
        90_000,
        100,
      );
      await f.close();

      const r = await reconcile(f.ledgers, influxReader(influx));
      console.log(
        `[ingest-crash] held commit: ${heldFrames} frames; unacknowledged at the kill: ${unackedAtKill} frames; ` +
          `acknowledged readings checked: ${r.ackedReadings}`,
      );
      // Soft: a failure shows every symptom at once (readings lost, WELCOME behind an ACK, held frames acked).
      expect.soft({ lost: r.lost, duplicated: r.duplicated, changed: r.changed, unexpected: r.unexpected }).toEqual({
        lost: 0,
        duplicated: 0,
        changed: 0,
        unexpected: 0,
      });
      expect.soft(r.examples).toEqual([]);
      expect.soft(r.unackedReadings).toBe(0);
      expect.soft(f.counters.welcomeBehindAck, 'WELCOMEs whose last ack is behind an ACK received').toBe(0);
      expect.soft(f.counters.ackBeyondSent, 'ACKs for frames never sent').toBe(0);
      // The window was real: frames reached the hub and sat, unacknowledged, in a commit that never happened.
      expect(heldFrames).toBeGreaterThan(0);
      expect(
        unackedAtKill,
        'frames of the held commit were acknowledged before they were durable',
      ).toBeGreaterThanOrEqual(heldFrames);
    },
  );

  it('the duplicate check sees a value that InfluxDB overwrote (a count cannot)', async () => {
    const f = fleet as ChaosFleet;
    const ledger = f.ledgers[0]!;
    const channel = CHAOS_CHANNELS[0]!;
    const i = Math.floor(ledger.ackedSamples / 2);
    const timeMs = ledger.times.at(i);
    const sent = ledger.expected(0, i) as number;
    const count = async () =>
      (
        await influx.influxQL(
          `SELECT count("value") AS n FROM "telemetry" WHERE "device" = '${ledger.deviceId}' AND "channel" = '${channel.key}'`,
        )
      ).rows[0]?.n;
    const before = await count();
    // The same series and time as the stored reading, another value: what a replay with a changed
    // value (or a frame mapped onto another frame's timestamps) does.
    const line = `telemetry,channel=${channel.key},device=${ledger.deviceId},unit=${channel.unit} value=${sent + 1} ${timeMs}`;
    const res = await fetch(`${influx.url}/api/v2/write?org=${influx.org}&bucket=${influx.bucket}&precision=ms`, {
      method: 'POST',
      body: line,
    });
    expect(res.status).toBe(204);
    expect(await count()).toBe(before); // overwritten: counting points sees nothing

    const r = await reconcile(f.ledgers, influxReader(influx));
    expect({ lost: r.lost, duplicated: r.duplicated, changed: r.changed, unexpected: r.unexpected }).toEqual({
      lost: 0,
      duplicated: 0,
      changed: 1,
      unexpected: 0,
    });
    expect(r.examples).toEqual([
      { kind: 'changed', deviceId: ledger.deviceId, channel: channel.key, timeMs, expected: sent, stored: sent + 1 },
    ]);
    await child?.kill9();
    child = null;
  });

  it('SIGTERM: device sessions get ERROR SHUTTING_DOWN and close 1001, the process exits 0', async () => {
    await child?.kill9(); // left running when an earlier test failed
    child = null;
    const hub: ServerProcess = startProcess({
      name: 'hub-sigterm',
      command: process.execPath,
      args: ['--import', 'tsx', 'server/main.ts'],
      cwd: ROOT,
      logFile: join(dir.path, 'hub-sigterm.log'),
      env: hubEnv(),
    });
    await waitForReady(
      hub,
      async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.ok ?? false,
      {
        what: 'GET /readyz',
      },
    );
    const d = await TestDevice.connect(`ws://127.0.0.1:${port}/v1/device`, { token: devices[0]!.token });
    await d.hello(devices[0]!.id, 100, { uptimeMs: 3_600_000 });
    await hub.stop({ signal: 'SIGTERM' });
    expect(await d.closed()).toBe(1001);
    expect(d.history.at(-1)).toMatchObject({ type: 'error', code: 302 });
    expect(await hub.exited).toMatchObject({ code: 0 });
  });
});
