/**
 * kill -9 under load [DESIGN: Reliability]: the hub runs as a child process (`tsx server/main.ts`, the
 * same entry point as `npm start`) on a temp data dir, forwarding to a real InfluxDB from the harness.
 * Devices stream and keep their unacknowledged frames, like the firmware's outbox. The hub is SIGKILLed
 * mid-stream and restarted; then:
 *   - WELCOME reports a last ack at or beyond every ACK the devices received (no ack is forgotten);
 *   - the devices replay what was not acknowledged;
 *   - InfluxDB ends up with every reading exactly once (nothing acked is lost, nothing duplicated).
 * The time from restart to the first WELCOME is printed (a figure, not an assertion).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import {
  freePort,
  type InfluxServer,
  type ServerProcess,
  startInflux,
  startProcess,
  type TempDir,
  tempDir,
  waitForReady,
} from '../harness/index.ts';
import { TEST_CHANNELS, TestDevice, telemetry } from './ingest-device-client.ts';

const HOUR = 3_600_000;
const DEVICES = 8;
const READINGS_PER_FRAME = 4; // telemetry(..., n = 1): one sample of each of the four channels

describe('hub killed with SIGKILL under load', () => {
  let influx: InfluxServer;
  let dir: TempDir;
  let port: number;
  let hub: ServerProcess | null = null;
  const tokens: string[] = [];

  beforeAll(async () => {
    influx = await startInflux({ bucket: 'crash' });
    dir = await tempDir('ingest-crash');
    port = await freePort();
    const registry = openDeviceRegistry({ dataDir: dir.path, logger: createLogger('silent'), watchIntervalMs: 0 });
    for (let i = 0; i < DEVICES; i++) tokens.push((await registry.add(`esp-crash-${i}`)).token);
    await registry.close();
  });
  afterAll(async () => {
    await hub?.stop();
    await influx?.stop();
    await dir?.remove();
  });

  async function startHub(label: string): Promise<ServerProcess> {
    const proc = startProcess({
      name: `hub-${label}`,
      command: process.execPath,
      args: ['--import', 'tsx', 'server/main.ts'],
      cwd: join(import.meta.dirname, '..', '..'),
      logFile: join(dir.path, `hub-${label}.log`),
      env: {
        ...process.env,
        HUB_HOST: '127.0.0.1',
        HUB_PORT: String(port),
        HUB_DATA_DIR: dir.path,
        HUB_LOG_LEVEL: 'warn',
        INFLUX_URL: influx.url,
        INFLUX_TOKEN: influx.token,
        INFLUX_ORG: influx.org,
        INFLUX_BUCKET: influx.bucket,
        INFLUX_FLUSH_INTERVAL_MS: '50',
        INFLUX_STATS_INTERVAL_MS: '0',
      },
    });
    await waitForReady(
      proc,
      async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.ok ?? false,
      {
        what: 'GET /readyz',
      },
    );
    return proc;
  }

  it('loses no acknowledged reading and duplicates none', async () => {
    const url = `ws://127.0.0.1:${port}/v1/device`;
    const base = Date.now() - 30 * 60_000;
    const frame = (dev: number, seq: number) => telemetry(100 + dev, seq, base + seq * 10, 1);
    hub = await startHub('first');

    // ── Phase 1: stream until killed. Each device remembers the highest ACK it received.
    const acked = new Array<number>(DEVICES).fill(0);
    const sent = new Array<number>(DEVICES).fill(0);
    const devices: TestDevice[] = [];
    for (let i = 0; i < DEVICES; i++) {
      const d = await TestDevice.connect(url, { token: tokens[i] as string });
      await d.hello(`esp-crash-${i}`, 100 + i, { uptimeMs: HOUR });
      d.send({ type: 'descriptors', channels: TEST_CHANNELS });
      d.ws.on('message', () => {
        for (const m of d.received.splice(0)) if (m.type === 'ack') acked[i] = Math.max(acked[i] as number, m.seq);
      });
      devices.push(d);
    }
    const pump = setInterval(() => {
      devices.forEach((d, i) => {
        if (d.ws.readyState !== d.ws.OPEN) return;
        for (let k = 0; k < 10; k++) d.send(frame(i, ++(sent[i] as number)));
      });
    }, 10);
    while (Math.min(...acked) < 1000) await new Promise((r) => setTimeout(r, 20));
    await hub.stop({ signal: 'SIGKILL' });
    clearInterval(pump);
    const ackedAtKill = [...acked];
    await Promise.all(devices.map((d) => d.closed()));
    expect(Math.min(...ackedAtKill)).toBeGreaterThanOrEqual(1000);

    // ── Phase 2: restart; devices reconnect and replay their outbox from the hub's last ack.
    const restartAt = Date.now();
    hub = await startHub('second');
    const finalSeq = Math.max(...sent) + 50;
    let firstWelcomeMs: number | null = null;
    for (let i = 0; i < DEVICES; i++) {
      const d = await TestDevice.connect(url, { token: tokens[i] as string });
      const w = await d.hello(`esp-crash-${i}`, 100 + i, { uptimeMs: HOUR + 60_000 });
      firstWelcomeMs ??= Date.now() - restartAt;
      expect(w.descriptorsKnown).toBe(true);
      expect(w.lastAck?.bootId).toBe(100 + i);
      // Never behind an ACK the device got: an ACK is only sent after the durable commit.
      expect(w.lastAck?.seq).toBeGreaterThanOrEqual(ackedAtKill[i] as number);
      for (let s = (w.lastAck?.seq ?? 0) + 1; s <= finalSeq; s++) d.send(frame(i, s));
      await d.ackOf(100 + i, finalSeq, 60_000);
      await d.close();
    }
    console.log(
      `[ingest-crash] acked at kill: ${ackedAtKill.join(', ')}; sent: ${sent.join(', ')}; ` +
        `restart → first WELCOME ${firstWelcomeMs} ms (includes process start)`,
    );

    // ── Phase 3: InfluxDB holds every reading of frames 1..finalSeq of every device, once.
    const expected = DEVICES * finalSeq * READINGS_PER_FRAME;
    const deadline = Date.now() + 90_000;
    let count = 0;
    while (Date.now() < deadline) {
      const r = await influx.influxQL(`SELECT count(value) AS n FROM telemetry WHERE device =~ /^esp-crash-/`);
      const b = await influx.influxQL(`SELECT count(state) AS n FROM telemetry WHERE device =~ /^esp-crash-/`);
      count = ((r.rows[0]?.n as number) ?? 0) + ((b.rows[0]?.n as number) ?? 0);
      if (count >= expected) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(count).toBe(expected);
    for (let i = 0; i < DEVICES; i++) {
      const per = await influx.influxQL(
        `SELECT count(value) AS n FROM telemetry WHERE device = 'esp-crash-${i}' AND channel = 'temperature'`,
      );
      expect(per.rows[0]?.n).toBe(finalSeq);
    }
  });

  it('SIGTERM: device sessions get ERROR SHUTTING_DOWN and close 1001, the process exits 0', async () => {
    const running = hub as ServerProcess;
    const d = await TestDevice.connect(`ws://127.0.0.1:${port}/v1/device`, { token: tokens[0] as string });
    await d.hello('esp-crash-0', 100, { uptimeMs: HOUR + 120_000 });
    await running.stop({ signal: 'SIGTERM' });
    expect(await d.closed()).toBe(1001);
    expect(d.history.at(-1)).toMatchObject({ type: 'error', code: 302 });
    expect(await running.exited).toMatchObject({ code: 0 });
    hub = null;
  });
});
