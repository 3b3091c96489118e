/**
 * The fleet firmware's provisioning and enrollment end to end, from the host build: `host_device
 * --enroll DIR` (the C++ core's ConfigStore, Improv service, EnrollClient and Session compiled natively;
 * DIR stands in for the board's NVS) starts unprovisioned; the test speaks Improv Serial to it with the
 * hub's own page sender (server/web/improv.ts): Wi-Fi, then SET_HUB with the hub URL. The board enrolls
 * on the real hub's /v1/enroll (real WebSocket), waits as pending, is approved with the real CLI
 * (`npm run hub -- devices approve`), stores the handed-over id and token, confirms, reconnects to
 * /v1/device with that token and streams readings the hub stores. With the fleet secret it is approved
 * at once; a rejected board stops for good (until a factory reset).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  type ImprovPacket,
  ImprovType,
  improvPacket,
  parseImprovStream,
  setHubPacket,
} from '../../server/web/improv.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { buildHostDevice, encodeRecord, RecordReader } from './host-device-build.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';
import { runCli } from './registry-cli.ts';

const WAIT_MS = 30_000;
const SECRET = 'fleet-secret-for-firmware-0123';

type DeviceEvent = { event: string } & Record<string, unknown>;

async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = WAIT_MS): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Runs host_device --enroll and carries its records: 'O' opens a WebSocket where the board says (its
 * JSON names the endpoint, subprotocol and, on /v1/device, the token it stored), 'S' frames go out, the
 * hub's frames come back as 'M', a close as 'C'; 'I' records are the board's serial port both ways.
 */
class FleetBoard {
  readonly events: DeviceEvent[] = [];
  /** Every connection the board asked for, as it asked. */
  readonly opens: { url: string; protocol: string; token?: string }[] = [];
  readonly packets: ImprovPacket[] = [];
  private serial: Uint8Array = new Uint8Array(0);
  private readonly proc: ChildProcess;
  private ws: WebSocket | null = null;
  private readonly records = new RecordReader((type, payload) => this.onRecord(type, payload));
  private stderr = '';
  readonly exited: Promise<number | null>;

  constructor(bin: string, args: string[]) {
    this.proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout?.on('data', (d: Buffer) => this.records.push(d));
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    this.proc.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  get log(): string {
    return this.stderr;
  }

  record(type: string, payload: Uint8Array = new Uint8Array(0)): void {
    this.proc.stdin?.write(encodeRecord(type, payload));
  }

  /** Bytes to the board's serial port (what a browser or ESP Web Tools would write). */
  serialWrite(bytes: Uint8Array): void {
    this.record('I', Uint8Array.from([...bytes, 0x0a]));
  }

  private onRecord(type: string, payload: Buffer): void {
    switch (type) {
      case 'E':
        this.events.push(JSON.parse(payload.toString('utf8')) as DeviceEvent);
        break;
      case 'I': {
        const joined = new Uint8Array(this.serial.length + payload.length);
        joined.set(this.serial);
        joined.set(payload, this.serial.length);
        const { packets, rest } = parseImprovStream(joined);
        this.packets.push(...packets);
        this.serial = rest;
        break;
      }
      case 'O': {
        const target = JSON.parse(payload.toString('utf8')) as { url: string; protocol: string; token?: string };
        this.opens.push(target);
        this.connect(target);
        break;
      }
      case 'S':
        this.ws?.send(payload);
        break;
      case 'C': {
        const ws = this.ws;
        this.ws = null;
        ws?.close();
        break;
      }
    }
  }

  private connect(target: { url: string; protocol: string; token?: string }): void {
    this.ws?.terminate();
    const headers: Record<string, string> = target.token ? { authorization: `Bearer ${target.token}` } : {};
    const ws = new WebSocket(target.url, target.protocol, { headers });
    this.ws = ws;
    let opened = false;
    ws.on('open', () => {
      if (this.ws !== ws) return;
      opened = true;
      this.record('O');
    });
    ws.on('message', (data: Buffer) => {
      if (this.ws === ws) this.record('M', data);
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.record('C');
      void opened;
    });
  }

  /** The first Improv RPC result for `command` after `from` packets. */
  async result(command: number, from: number): Promise<string[]> {
    const p = await waitFor(`Improv result for 0x${command.toString(16)}`, () =>
      this.packets.slice(from).find((x) => x.type === ImprovType.RPC_RESULT && x.data[0] === command),
    );
    const out: string[] = [];
    let i = 2;
    while (i < 2 + (p.data[1] as number)) {
      const n = p.data[i] as number;
      out.push(new TextDecoder().decode(p.data.slice(i + 1, i + 1 + n)));
      i += 1 + n;
    }
    return out;
  }

  event(pred: (e: DeviceEvent) => boolean): Promise<DeviceEvent> {
    return waitFor('a device event', () => this.events.find(pred));
  }

  async stop(): Promise<void> {
    this.record('Q');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
    this.ws?.terminate();
  }
}

/** Improv "send Wi-Fi settings" (RPC 0x01): ssid, password. */
function wifiPacket(ssid: string, password: string): Uint8Array {
  const s = new TextEncoder().encode(ssid);
  const p = new TextEncoder().encode(password);
  const data = [s.length, ...s, p.length, ...p];
  return improvPacket(ImprovType.RPC_COMMAND, Uint8Array.from([0x01, data.length, ...data]));
}

let bin: string;
const boards: FleetBoard[] = [];
const hubs: TestHub[] = [];
const dirs: TempDir[] = [];

beforeAll(() => {
  bin = buildHostDevice();
}, 600_000);

afterEach(async () => {
  for (const b of boards.splice(0)) await b.stop();
});

afterAll(async () => {
  for (const h of hubs.splice(0)) {
    await h.stop();
    await h.dir.remove();
  }
  for (const d of dirs.splice(0)) await d.remove();
});

async function hubWith(env: Record<string, string> = {}): Promise<TestHub> {
  const hub = await startTestHub(env);
  hubs.push(hub);
  return hub;
}

async function stateDir(): Promise<string> {
  const d = await tempDir('fw-enroll');
  dirs.push(d);
  return d.path;
}

function startBoard(state: string, args: string[] = []): FleetBoard {
  const b = new FleetBoard(bin, [
    '--enroll',
    state,
    '--interval-ms',
    '200',
    '--backoff-base-ms',
    '100',
    '--backoff-max-ms',
    '1000',
    ...args,
  ]);
  boards.push(b);
  return b;
}

const readings = (hub: TestHub, id: string) => hub.hub.context().log.lastReadings(id);

describe('fleet firmware (host build): Improv provisioning and enrollment against the real hub', () => {
  it('unprovisioned → Improv Wi-Fi + hub URL → pending → approved by the CLI → streams with the stored token', async () => {
    const hub = await hubWith();
    const state = await stateDir();
    const hw = 'esp32-00000000e101';
    const board = startBoard(state, ['--hardware-id', hw]);
    await board.event((e) => e.event === 'mode' && e.mode === 'unprovisioned');
    expect(board.opens).toHaveLength(0); // nothing to connect to yet

    // Wi-Fi over Improv: no hub URL yet, so the standard's result carries no redirect URL.
    let mark = board.packets.length;
    board.serialWrite(wifiPacket('host-net', 'password1'));
    expect(await board.result(0x01, mark)).toEqual([]);
    expect(board.packets.slice(mark).some((p) => p.type === ImprovType.CURRENT_STATE && p.data[0] === 0x04)).toBe(true);
    // The hub URL with the vendor command, as the "Add a board" page sends it.
    const hubUrl = `ws://127.0.0.1:${hub.port}`;
    mark = board.packets.length;
    board.serialWrite(setHubPacket(hubUrl));
    expect(await board.result(0x80, mark)).toEqual([`http://127.0.0.1:${hub.port}/#/device/${hw}`, hw]);

    // It enrolls: pending, no token, no registry entry, no readings.
    await board.event((e) => e.event === 'enroll' && e.state === 'pending');
    expect(board.opens[0]).toEqual({ url: `${hubUrl}/v1/enroll`, protocol: 'esp32hub.enroll.v1' });
    const pending = await runCli(['devices', 'pending', '--json', '--data-dir', hub.dir.path]);
    expect(pending.code).toBe(0);
    const requests = (JSON.parse(pending.stdout) as { requests: { hardwareId: string; state: string }[] }).requests;
    expect(requests.map((r) => [r.hardwareId, r.state])).toEqual([[hw, 'pending']]);
    expect(existsSync(join(state, 'token'))).toBe(false);
    expect(readings(hub, hw)).toBeNull();

    // An operator approves it under another id: the board stores id + token, confirms, and streams.
    const approved = await runCli(['devices', 'approve', hw, '--id', 'greenhouse-7', '--data-dir', hub.dir.path]);
    expect(approved.code).toBe(0);
    await board.event((e) => e.event === 'stored' && e.deviceId === 'greenhouse-7');
    await board.event((e) => e.event === 'mode' && e.mode === 'device');
    const stored = await waitFor('readings stored for greenhouse-7', () => readings(hub, 'greenhouse-7'));
    expect(stored.readings.length).toBeGreaterThan(0);
    const token = readFileSync(join(state, 'token'), 'utf8');
    expect(token).toMatch(/^\S{16,64}$/);
    expect(readFileSync(join(state, 'device_id'), 'utf8')).toBe('greenhouse-7');
    const deviceOpen = board.opens.find((o) => o.url.endsWith('/v1/device'));
    expect(deviceOpen).toEqual({ url: `${hubUrl}/v1/device`, protocol: 'esp32hub.v1', token });
    expect(board.log).not.toContain(token);
    const list = await runCli(['devices', 'pending', '--json', '--data-dir', hub.dir.path]);
    const after = (JSON.parse(list.stdout) as { requests: { hardwareId: string; state: string }[] }).requests;
    expect(after.filter((r) => r.hardwareId === hw && r.state === 'pending')).toEqual([]);

    // A restart (power cycle) goes straight to /v1/device with what it stored: no second enrollment.
    await board.stop();
    boards.splice(boards.indexOf(board), 1);
    const again = startBoard(state, ['--hardware-id', hw]);
    await again.event((e) => e.event === 'mode' && e.mode === 'device');
    const before = stored.receivedAtMs;
    await waitFor('new readings after the restart', () => {
      const r = readings(hub, 'greenhouse-7');
      return r !== null && r.receivedAtMs > before;
    });
    expect(again.opens.every((o) => o.url.endsWith('/v1/device'))).toBe(true);
  }, 120_000);

  it('the fleet secret (compiled-in defaults) auto-approves: no operator, it streams', async () => {
    const hub = await hubWith({ ENROLL_FLEET_SECRET: SECRET });
    const state = await stateDir();
    const hw = 'esp32-00000000e102';
    const board = startBoard(state, [
      ...['--hardware-id', hw, '--wifi-ssid', 'host-net'],
      ...['--hub-url', `ws://127.0.0.1:${hub.port}`, '--fleet-secret', SECRET],
    ]);
    await board.event((e) => e.event === 'stored' && e.deviceId === hw);
    expect(board.events.some((e) => e.event === 'enroll' && e.state === 'pending')).toBe(false);
    await waitFor('readings stored', () => readings(hub, hw));
    expect(board.log).not.toContain(SECRET);
  }, 120_000);

  it('a wrong fleet secret is refused and the board keeps no token; a rejected board stops until a factory reset', async () => {
    const hub = await hubWith({ ENROLL_FLEET_SECRET: SECRET });
    const wrong = startBoard(await stateDir(), [
      ...['--hardware-id', 'esp32-00000000e103', '--wifi-ssid', 'host-net'],
      ...['--hub-url', `ws://127.0.0.1:${hub.port}`, '--fleet-secret', 'not-the-fleet-secret-000'],
    ]);
    await wrong.event((e) => e.event === 'hub-error' && e.code === 800);
    await wrong.event((e) => e.event === 'enroll' && e.state === 'backoff');
    expect(wrong.events.some((e) => e.event === 'stored')).toBe(false);

    const state = await stateDir();
    const hw = 'esp32-00000000e104';
    const args = ['--hardware-id', hw, '--wifi-ssid', 'host-net', '--hub-url', `ws://127.0.0.1:${hub.port}`];
    const board = startBoard(state, args);
    await board.event((e) => e.event === 'enroll' && e.state === 'pending');
    expect((await runCli(['devices', 'reject', hw, '--data-dir', hub.dir.path])).code).toBe(0);
    await board.event((e) => e.event === 'mode' && e.mode === 'rejected');
    expect(existsSync(join(state, 'enroll_rej'))).toBe(true);
    expect(existsSync(join(state, 'token'))).toBe(false);
    expect(readings(hub, hw)).toBeNull();
    // Restarted, it does not ask again.
    await board.stop();
    boards.splice(boards.indexOf(board), 1);
    const again = startBoard(state, args);
    await again.event((e) => e.event === 'mode' && e.mode === 'rejected');
    expect(again.opens).toHaveLength(0);
    // A factory reset (the BOOT button) clears it: the board enrolls again (the compiled-in defaults
    // still name the network and hub) and is pending once more.
    again.record('F');
    await again.event((e) => e.event === 'factory-reset');
    await again.event((e) => e.event === 'enroll' && e.state === 'await-status');
    expect(existsSync(join(state, 'enroll_rej'))).toBe(false);
  }, 120_000);
});
