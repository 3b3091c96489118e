/**
 * The firmware's portable core end to end: `host_device` (the C++ Session, Outbox, TelemetryBuilder and
 * board channel table compiled natively with g++) speaks its byte stream over stdin/stdout; this test
 * carries it on a real WebSocket (`ws`, subprotocol esp32hub.v1, Bearer token from the real registry) to
 * the real hub, whose forwarder writes through the real `@influxdata/influxdb-client` to a real InfluxDB
 * engine (test/harness). Covered: HELLO → WELCOME → DESCRIPTORS → TELEMETRY → ACK, commands with
 * ACCEPTED/RESULT (and a duplicate command id), a disconnect with replay of frames the hub already
 * stored, a reboot that keeps its outbox — and every reading lands in InfluxDB exactly once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { decodeFrame, encodeFrame, type Message, SUBPROTOCOL } from '../../server/codec/index.ts';
import { type InfluxServer, startInflux, tempDir } from '../harness/index.ts';
import { buildHostDevice, encodeRecord, RecordReader } from './host-device-build.ts';
import { startTestHub, type TestHub } from './ingest-device-client.ts';

const ADMIN = 'e2e-admin-token-0123456789abcdef0123456789';
const DEVICE_ID = 'fw-host-e2e';

type DeviceEvent = { event: string } & Record<string, unknown>;

/**
 * Runs host_device and bridges its records to a WebSocket per connection it asks for. The bridge can
 * misbehave on purpose: swallow ACKs, hide WELCOME's last ack (so the device replays frames the hub
 * already stored), and repeat a COMMAND frame (a duplicate command id).
 */
class BridgedDevice {
  readonly events: DeviceEvent[] = [];
  /** Frames the device sent and the hub sent, decoded, in order. */
  readonly uplink: Message[] = [];
  readonly downlink: Message[] = [];
  dropAcks = false;
  hideLastAck = false;
  private readonly proc: ChildProcess;
  private ws: WebSocket | null = null;
  private wsGen = 0;
  private closedByDevice = new Set<number>();
  private readonly records = new RecordReader((type, payload) => this.onRecord(type, payload));
  private stderr = '';
  readonly exited: Promise<number | null>;
  private dead = false;

  constructor(
    bin: string,
    args: string[],
    private readonly url: string,
    private readonly token: string,
  ) {
    this.proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout?.on('data', (d: Buffer) => this.records.push(d));
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    // A board whose power was cut reads nothing more: writes to its closed pipe are dropped.
    this.proc.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code) => {
        this.dead = true;
        this.ws?.terminate(); // a dead board's TCP connection dies with it
        resolve(code);
      }),
    );
  }

  /** Power gone at an arbitrary moment: the process is killed outright (the flash file keeps its bytes). */
  async kill(): Promise<number | null> {
    this.proc.kill('SIGKILL');
    return this.exited;
  }

  log(): string {
    return this.stderr;
  }

  write(type: string, payload: Uint8Array = new Uint8Array(0)): void {
    if (this.dead) return;
    this.proc.stdin?.write(encodeRecord(type, payload));
  }

  /** Hands the device a frame as if the hub had sent it. */
  deliver(frame: Uint8Array): void {
    this.write('M', frame);
  }

  /** Kills the TCP connection without a close handshake (a Wi-Fi drop). */
  dropConnection(): void {
    this.ws?.terminate();
  }

  events$(name: string): DeviceEvent[] {
    return this.events.filter((e) => e.event === name);
  }

  async waitFor(what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}; last events:\n${JSON.stringify(this.events.slice(-15), null, 1)}\n${this.stderr.slice(-3000)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stats(): Promise<DeviceEvent> {
    const n = this.events$('stats').length;
    this.write('T');
    await this.waitFor('stats', () => this.events$('stats').length > n);
    return this.events$('stats').at(-1) as DeviceEvent;
  }

  async quit(): Promise<void> {
    this.write('Q');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
    this.ws?.terminate();
  }

  private onRecord(type: string, payload: Buffer): void {
    switch (type) {
      case 'E':
        this.events.push(JSON.parse(payload.toString('utf8')) as DeviceEvent);
        return;
      case 'O':
        this.open();
        return;
      case 'C':
        if (this.ws) {
          this.closedByDevice.add(this.wsGen);
          this.ws.close(1000);
        }
        return;
      case 'S':
        this.uplink.push(decodeFrame(payload));
        if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(payload, { binary: true });
        return;
    }
  }

  private open(): void {
    const gen = ++this.wsGen;
    this.ws?.terminate();
    const ws = new WebSocket(this.url, SUBPROTOCOL, {
      headers: { authorization: `Bearer ${this.token}` },
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.on('open', () => {
      if (gen === this.wsGen) this.write('O');
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (gen !== this.wsGen || !isBinary) return;
      let frame: Uint8Array = data;
      const msg = decodeFrame(frame);
      this.downlink.push(msg);
      if (msg.type === 'ack' && this.dropAcks) return;
      if (msg.type === 'welcome' && this.hideLastAck && msg.lastAck) {
        frame = encodeFrame({ ...msg, lastAck: null });
      }
      this.write('M', frame);
    });
    ws.on('error', () => {}); // 'close' follows and is what the device hears about
    ws.on('close', () => {
      // Only the current connection's end matters, and not when the device closed it itself.
      if (gen === this.wsGen && !this.closedByDevice.has(gen)) this.write('C');
    });
  }
}

interface CommandView {
  commandId: number;
  state: string;
  status: number | null;
  message: string | null;
}

describe('firmware core end to end: host device ↔ WebSocket ↔ real hub ↔ real InfluxDB', () => {
  let influx: InfluxServer;
  let h: TestHub;
  let dev: BridgedDevice;
  let bin: string;

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
    const res = await fetch(`${h.http}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: await res.json() };
  };

  const command = async (name: string, args?: Record<string, unknown>): Promise<CommandView> => {
    const sent = await api('POST', `/api/devices/${DEVICE_ID}/commands`, { name, ...(args ? { args } : {}) });
    expect(sent.status).toBe(202);
    const { commandId } = sent.json as { commandId: number };
    let view: CommandView | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      view = (await api('GET', `/api/devices/${DEVICE_ID}/commands/${commandId}`)).json as CommandView;
      if (view.state === 'done' || view.state === 'failed' || view.state === 'timeout') return view;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`command ${name} not done: ${JSON.stringify(view)}`);
  };

  /** Waits until the device has nothing unacknowledged and nothing collected but unqueued. */
  const drained = async (what: string) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const s = await dev.stats();
      if (s.outbox === 0 && s.builder === 0 && s.state === 'ready') return;
      if (Date.now() > deadline) throw new Error(`${what}: ${JSON.stringify(s)}\n${dev.log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    bin = buildHostDevice();
    influx = await startInflux();
    h = await startTestHub({
      HUB_ADMIN_TOKEN: ADMIN,
      INFLUX_URL: influx.url,
      INFLUX_TOKEN: influx.token,
      INFLUX_ORG: influx.org,
      INFLUX_BUCKET: influx.bucket,
      INFLUX_FLUSH_INTERVAL_MS: '50',
      INFLUX_STATS_INTERVAL_MS: '0',
    });
    const token = await h.addDevice(DEVICE_ID);
    dev = new BridgedDevice(
      bin,
      ['--device-id', DEVICE_ID, '--interval-ms', '150', '--backoff-base-ms', '200', '--backoff-max-ms', '2000'],
      h.url,
      token,
    );
  }, 180_000);

  afterAll(async () => {
    await dev?.quit();
    await h?.stop();
    await h?.dir.remove();
    await influx?.stop();
  });

  it('HELLO → WELCOME → DESCRIPTORS → TELEMETRY → cumulative ACKs', async () => {
    await dev.waitFor('session ready', () => dev.events$('link').some((e) => e.state === 'ready'));
    await dev.waitFor('10 frames acknowledged', () =>
      dev.events$('acked').some((e) => (e.framesAcked as number) >= 10),
    );
    const kinds = dev.uplink.map((m) => m.type);
    expect(kinds[0]).toBe('hello');
    expect(kinds.indexOf('descriptors')).toBeGreaterThan(0);
    expect(kinds.indexOf('descriptors')).toBeLessThan(kinds.indexOf('telemetry'));
    const hello = dev.uplink[0] as Extract<Message, { type: 'hello' }>;
    expect(hello).toMatchObject({ deviceId: DEVICE_ID, timeSynced: false, resetReason: 1, maxProtocolVersion: 1 });
    const welcome = dev.downlink.find((m) => m.type === 'welcome');
    expect(welcome).toMatchObject({ acceptedVersion: 1, lastAck: null, descriptorsKnown: false });
    // The device had no clock: it took the hub's time from WELCOME [PROTO-3.2]; frames made before are UNSYNCED.
    expect(dev.events$('clock')).toHaveLength(1);
    const tel = dev.uplink.filter((m): m is Extract<Message, { type: 'telemetry' }> => m.type === 'telemetry');
    expect(tel.some((t) => !t.unsynced)).toBe(true);
    expect(tel[0]?.seq).toBe(1);
    // No replay without a cause (no reconnect, no refusal): each frame went out once, in order. A clock
    // that moved inside one poll() used to fire the ACK timeout at once (see test_session.cpp).
    expect(tel.map((t) => t.seq)).toEqual(tel.map((_, i) => i + 1));
    expect(dev.downlink.filter((m) => m.type === 'ack').length).toBeGreaterThan(0);
    expect(h.hub.context().sessions.get(DEVICE_ID)).toBeDefined();
  });

  it('a command and its RESULT; a repeated command id is answered, not executed again', async () => {
    const interval = await command('set_sample_interval', { interval_ms: 200 });
    expect(interval).toMatchObject({ state: 'done', status: 0, message: 'sample interval 200 ms' });
    expect(dev.events$('interval').map((e) => e.ms)).toEqual([200]);
    // New periods → new descriptor set, announced before any frame that uses it.
    const descriptors = dev.uplink.filter((m) => m.type === 'descriptors');
    expect(descriptors).toHaveLength(2);

    const identify = await command('identify', { duration_ms: 300 });
    expect(identify).toMatchObject({ state: 'done', status: 0, message: 'identifying for 300 ms' });
    await dev.waitFor('LED back off', () => dev.events.filter((e) => e.channel === 'led').length >= 2);
    expect(dev.events.filter((e) => e.channel === 'led').map((e) => e.value)).toEqual([true, false]);

    // The hub's COMMAND frame for identify, delivered a second time (a retry after a lost RESULT).
    const cmd = dev.downlink.filter((m) => m.type === 'command').at(-1) as Extract<Message, { type: 'command' }>;
    const resultsBefore = dev.uplink.filter((m) => m.type === 'command_result' && m.commandId === cmd.commandId).length;
    dev.deliver(encodeFrame(cmd));
    await dev.waitFor('RESULT answered again', () => {
      const n = dev.uplink.filter((m) => m.type === 'command_result' && m.commandId === cmd.commandId).length;
      return n === resultsBefore + 1;
    });
    expect(dev.events$('identify')).toHaveLength(1);
    expect(dev.uplink.filter((m) => m.type === 'command_accepted' && m.commandId === cmd.commandId)).toHaveLength(1);
    expect((await dev.stats()).duplicateCommands).toBe(1);
  });

  it('a dropped connection with unacknowledged frames: reconnect with backoff, replay, hub deduplicates', async () => {
    const dupsBefore = await h.metricValue('hub_duplicate_frames_total');
    // ACKs stop reaching the device, so frames pile up as "sent, not acknowledged"...
    dev.dropAcks = true;
    const queuedAt = (await dev.stats()).framesQueued as number;
    await dev.waitFor(
      '5 more frames sent',
      () => dev.uplink.filter((m) => m.type === 'telemetry' && m.seq > queuedAt + 4).length > 0,
    );
    // ...then the link drops, and the next WELCOME hides its last ack: the device must replay frames
    // the hub already stored. The hub answers them with ACKs again and stores nothing twice.
    dev.hideLastAck = true;
    const connectsBefore = (await dev.stats()).connects as number;
    dev.dropAcks = false;
    dev.dropConnection();
    await dev.waitFor('reconnected', () => dev.events$('link').filter((e) => e.state === 'ready').length >= 2);
    const stats = await dev.stats();
    expect(stats.connects).toBe(connectsBefore + 1);
    const backoffs = dev.events$('link').filter((e) => e.state === 'backoff');
    expect(backoffs.length).toBeGreaterThanOrEqual(2);
    await drained('outbox drained after replay');
    const hellos = dev.uplink.filter((m): m is Extract<Message, { type: 'hello' }> => m.type === 'hello');
    expect(hellos.at(-1)?.bufferedFrames).toBeGreaterThanOrEqual(5);
    expect((await h.metricValue('hub_duplicate_frames_total')) - dupsBefore).toBeGreaterThanOrEqual(5);
    dev.hideLastAck = false;
  });

  it('a reboot command: RESULT first, then a new boot that replays the frames its outbox kept', async () => {
    // Unacknowledged frames at the moment of the reboot stay in the outbox (RTC memory on the board).
    dev.dropAcks = true;
    const firstBoot = dev.events$('boot')[0]?.bootId as number;
    const queuedAt = (await dev.stats()).framesQueued as number;
    await dev.waitFor('2 unacknowledged frames', () =>
      dev.uplink.some((m) => m.type === 'telemetry' && m.bootId === firstBoot && m.seq > queuedAt + 1),
    );
    dev.hideLastAck = true; // so the new boot replays them instead of just freeing them
    const rebootResult = await command('reboot');
    expect(rebootResult).toMatchObject({ state: 'done', status: 0, message: 'rebooting' });
    await dev.waitFor('second boot', () => dev.events$('boot').length === 2);
    dev.dropAcks = false;
    const boots = dev.events$('boot');
    expect(boots[1]?.resetReason).toBe(2); // software
    expect(boots[1]?.bootId).not.toBe(firstBoot);
    expect(boots[1]?.keptFrames).toBeGreaterThanOrEqual(2);
    await dev.waitFor('ready after reboot', () => dev.events$('link').filter((e) => e.state === 'ready').length >= 3);
    const helloAt = dev.uplink.findLastIndex((m) => m.type === 'hello');
    expect(dev.uplink[helloAt]).toMatchObject({ type: 'hello', resetReason: 2, bootId: boots[1]?.bootId });
    expect((dev.uplink[helloAt] as Extract<Message, { type: 'hello' }>).bufferedFrames).toBeGreaterThanOrEqual(2);
    await dev.waitFor('a frame of the new boot', () =>
      dev.uplink.some((m) => m.type === 'telemetry' && m.bootId === boots[1]?.bootId),
    );
    await drained('outbox drained after reboot');
    const after = dev.uplink.slice(helloAt);
    // Frames of the first boot went out again with their original (bootId, seq)...
    expect(after.some((m) => m.type === 'telemetry' && m.bootId === firstBoot)).toBe(true);
    // ...and the new boot numbers its own frames from 1 [PROTO-3.6, reboot].
    expect(after.find((m) => m.type === 'telemetry' && m.bootId === boots[1]?.bootId)).toMatchObject({ seq: 1 });
    dev.hideLastAck = false;
  });

  it('every reading the device made lands in InfluxDB exactly once', async () => {
    dev.write('P'); // stop sampling; what was sampled is queued
    await drained('everything acknowledged');
    const readings = dev.events$('reading');
    const expected = new Map<string, number>();
    for (const r of readings) expected.set(r.channel as string, (expected.get(r.channel as string) ?? 0) + 1);
    expect(readings.length).toBeGreaterThanOrEqual(20);

    const count = async (): Promise<Map<string, number>> => {
      const { rows } = await influx.influxQL(
        `SELECT COUNT("value") AS n, COUNT("state") AS s FROM "telemetry" WHERE "device" = '${DEVICE_ID}' GROUP BY "channel"`,
      );
      return new Map(rows.map((r) => [r.channel as string, ((r.n as number) ?? 0) + ((r.s as number) ?? 0)]));
    };
    const deadline = Date.now() + 30_000;
    let got = await count();
    while (JSON.stringify([...got].sort()) !== JSON.stringify([...expected].sort()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      got = await count();
    }
    expect(Object.fromEntries([...got].sort())).toEqual(Object.fromEntries([...expected].sort()));

    // heap_free is unique per reading: the stored values are exactly the device's, none twice.
    const { rows } = await influx.influxQL(
      `SELECT "value" FROM "telemetry" WHERE "device" = '${DEVICE_ID}' AND "channel" = 'heap_free'`,
    );
    const stored = rows.map((r) => r.value as number).sort((a, b) => a - b);
    const made = readings
      .filter((r) => r.channel === 'heap_free')
      .map((r) => r.value as number)
      .sort((a, b) => a - b);
    expect(stored).toEqual(made);
    expect(new Set(stored).size).toBe(stored.length);
    // Readings of both boots arrived.
    expect(new Set(readings.map((r) => r.bootId)).size).toBe(2);
    const s = await dev.stats();
    console.info(
      `firmware e2e: ${readings.length} readings, each in InfluxDB exactly once; ` +
        `${await h.metricValue('hub_duplicate_frames_total')} replayed duplicates deduplicated by the hub; ` +
        `second boot: ${s.framesQueued} frames queued, ${s.framesSent} sent (replays included)`,
    );
  });
  it('power cut mid-stream at random points, N times (flash outbox on a simulated NOR flash): the hub stores exactly what the board sampled', async () => {
    // The host device with --flash-file: its outbox is the FlashOutbox on a simulated NOR flash whose
    // bytes are a file, and every run is a new boot (--nvs-file: boot counter + key [PROTO-3.1.1]). A
    // power cut is either SIGKILL at a random moment or a cut after a random number of flash steps
    // (torn write, then the process ends with 75). ACKs are withheld in some runs, so unacknowledged
    // frames pile up in flash and must be replayed by a later boot.
    const id = 'fw-host-powercut';
    const token = await h.addDevice(id);
    const dir = await tempDir('fw-powercut');
    const seed = Date.now() % 2 ** 31;
    let state = seed;
    const random = (): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
    const CUTS = 8;
    const firstDevice = dev;
    const gapsBefore = await h.metricValue('hub_sequence_gap_frames_total');
    const readings: DeviceEvent[] = [];
    const maybe = new Set<string>(); // `${bootId}/${seq}` of the frame a cut may have caught mid-write
    const boots: number[] = [];
    const cuts: string[] = [];
    const start = (run: number): BridgedDevice =>
      new BridgedDevice(
        bin,
        [
          ...['--device-id', id, '--interval-ms', '40', '--backoff-base-ms', '100', '--backoff-max-ms', '400'],
          ...['--flash-file', join(dir.path, 'flash.bin'), '--flash-sectors', '16'],
          ...['--nvs-file', join(dir.path, 'nvs.bin'), '--heap-start', String(1_000_000 * (run + 1))],
        ],
        h.url,
        token,
      );
    let replayedFromEarlierBoots = 0;
    const collect = (d: BridgedDevice): void => {
      const boot = d.events$('boot')[0]?.bootId as number;
      boots.push(boot);
      readings.push(...d.events$('reading'));
      replayedFromEarlierBoots += d.uplink.filter((m) => m.type === 'telemetry' && m.bootId !== boot).length;
    };
    try {
      for (let run = 0; run < CUTS; run++) {
        const d = start(run);
        d.dropAcks = run === 0 || random() < 0.5;
        // Each boot says HELLO before its power goes: the hub anchors an UNSYNCED boot's uptime on its
        // HELLO [PROTO-3.4.1]. (A boot it never heard from gets estimated times, which may land on the
        // same timestamps as another boot's samples — InfluxDB keeps one point per time.)
        await d.waitFor('session ready', () => d.events$('link').some((e) => e.state === 'ready'));
        const target = d.events$('reading').length + 1 + Math.floor(random() * 30);
        await d.waitFor(`${target} readings`, () => d.events$('reading').length >= target);
        let code: number | null;
        if (random() < 0.5) {
          const steps = Math.floor(random() * 300);
          const k = Buffer.alloc(4);
          k.writeUInt32LE(steps);
          d.write('K', k);
          code = await d.exited;
          cuts.push(`steps+${steps}`);
          expect(code).toBe(75); // the flash cut the power, not anything else
        } else {
          code = await d.kill();
          cuts.push('kill');
        }
        collect(d);
        const bootId = d.events$('boot')[0]?.bootId as number;
        const last = Math.max(0, ...d.events$('reading').map((r) => r.seq as number));
        maybe.add(`${bootId}/${last}`);
      }
      // Power stays on: the last boot replays every frame the earlier boots left in flash.
      const d = start(CUTS);
      dev = d; // drained() reads `dev`
      await d.waitFor('session ready', () => d.events$('link').some((e) => e.state === 'ready'));
      d.write('P');
      await drained('the flash outbox drained after the power cuts');
      collect(d);
      const hellos = d.uplink.filter((m): m is Extract<Message, { type: 'hello' }> => m.type === 'hello');
      expect(hellos[0]?.droppedFrames).toBe(0);
      await d.quit();
    } finally {
      dev = firstDevice;
      await dir.remove();
    }

    // Every boot had its own id; frames written by earlier boots were sent by later ones.
    expect(new Set(boots).size).toBe(CUTS + 1);
    expect(replayedFromEarlierBoots).toBeGreaterThan(0);
    const expected = new Map<string, number>();
    const definite = new Map<string, number>();
    for (const r of readings) {
      const ch = r.channel as string;
      expected.set(ch, (expected.get(ch) ?? 0) + 1);
      if (!maybe.has(`${r.bootId}/${r.seq}`)) definite.set(ch, (definite.get(ch) ?? 0) + 1);
    }
    const heapMade = readings.filter((r) => r.channel === 'heap_free').map((r) => r.value as number);
    const heapMaybe = new Set(
      readings
        .filter((r) => r.channel === 'heap_free' && maybe.has(`${r.bootId}/${r.seq}`))
        .map((r) => r.value as number),
    );
    const stored = async (): Promise<number[]> => {
      const { rows } = await influx.influxQL(
        `SELECT "value" FROM "telemetry" WHERE "device" = '${id}' AND "channel" = 'heap_free'`,
      );
      return rows.map((r) => r.value as number).sort((a, b) => a - b);
    };
    const mustHave = heapMade.filter((v) => !heapMaybe.has(v)).sort((a, b) => a - b);
    const deadline = Date.now() + 30_000;
    let heapStored = await stored();
    while (mustHave.some((v) => !heapStored.includes(v)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      heapStored = await stored();
    }
    // Exactly what the board sampled: every reading of every frame it wrote to flash, once; at most the
    // frame a cut caught mid-write is missing (it was never buffered), and then all of it.
    expect(new Set(heapStored).size).toBe(heapStored.length);
    expect(heapStored.filter((v) => !heapMaybe.has(v))).toEqual(mustHave);
    expect(heapStored.every((v) => heapMade.includes(v))).toBe(true);
    const { rows } = await influx.influxQL(
      `SELECT COUNT("value") AS n, COUNT("state") AS s FROM "telemetry" WHERE "device" = '${id}' GROUP BY "channel"`,
    );
    for (const r of rows) {
      const n = ((r.n as number) ?? 0) + ((r.s as number) ?? 0);
      const ch = r.channel as string;
      expect(n).toBeGreaterThanOrEqual(definite.get(ch) ?? 0);
      expect(n).toBeLessThanOrEqual(expected.get(ch) ?? 0);
    }
    // No hole in any boot's sequence numbers at the hub.
    expect(await h.metricValue('hub_sequence_gap_frames_total')).toBe(gapsBefore);
    const lost = heapMade.length - heapStored.length;
    console.info(
      `firmware power cuts (seed ${seed}): ${CUTS} cuts (${cuts.join(', ')}), ${boots.length} boots, ` +
        `${readings.length} readings sampled, heap_free ${heapStored.length}/${heapMade.length} stored once each ` +
        `(${lost} in frames a cut caught mid-write), ${replayedFromEarlierBoots} frames sent again by a later boot`,
    );
  }, 180_000);
  it('deep sleep: timer wakes sample into the flash outbox, every 4th wake connects and flushes; one boot, and the hub stores each sample at the time it was taken', async () => {
    // host_device --deep-sleep: one run is one wake of the board's HUB_DEEP_SLEEP mode (its RTC memory
    // is a file). The test is the RTC timer: it starts the next wake when the requested sleep is over.
    const id = 'fw-host-sleep';
    const token = await h.addDevice(id);
    const dir = await tempDir('fw-sleep');
    const WAKES = 15;
    const FLUSH_EVERY = 4;
    const wakes: BridgedDevice[] = [];
    try {
      for (let wake = 0; wake < WAKES; wake++) {
        const last = wake === WAKES - 1; // the last wake flushes whatever is left
        const d = new BridgedDevice(
          bin,
          [
            ...['--device-id', id, '--interval-ms', '250', '--backoff-base-ms', '100', '--backoff-max-ms', '400'],
            ...[
              '--flash-file',
              join(dir.path, 'flash.bin'),
              '--flash-sectors',
              '8',
              '--nvs-file',
              join(dir.path, 'nvs'),
            ],
            ...['--deep-sleep', join(dir.path, 'rtc'), '--flush-every', last ? '1' : String(FLUSH_EVERY)],
            ...['--heap-start', '3000000'],
          ],
          h.url,
          token,
        );
        wakes.push(d);
        expect(await d.exited).toBe(0); // the wake ends by itself: it went to sleep
        const sleepMs = d.events$('sleep')[0]?.sleepMs as number;
        expect(sleepMs).toBeLessThanOrEqual(250);
        if (!last) await new Promise((r) => setTimeout(r, sleepMs)); // asleep until the RTC timer fires
      }
    } finally {
      await dir.remove();
    }

    // One boot across all wakes: its id, resetReason 1 then 6 (deep-sleep wake), consecutive seqs.
    const boots = wakes.map((d) => d.events$('boot')[0] as DeviceEvent);
    expect(new Set(boots.map((b) => b.bootId)).size).toBe(1);
    expect(boots.map((b) => b.resetReason)).toEqual([1, ...Array(WAKES - 1).fill(6)]);
    // Only every 4th wake (and the last) connected: the others never opened a connection.
    const connected = wakes.map((d, i) => (d.uplink.some((m) => m.type === 'hello') ? i : -1)).filter((i) => i >= 0);
    expect(connected).toEqual([0, 4, 8, 12, WAKES - 1]);
    expect(wakes.filter((d) => d.events$('flushed').length === 1).length).toBe(connected.length);
    const hellos = wakes.flatMap((d) =>
      d.uplink.filter((m): m is Extract<Message, { type: 'hello' }> => m.type === 'hello'),
    );
    expect(hellos.slice(1).every((m) => m.resetReason === 6 && m.uptimeMs >= (hellos[0]?.uptimeMs ?? 0))).toBe(true);
    const seqs = [
      ...new Set(wakes.flatMap((d) => d.uplink.filter((m) => m.type === 'telemetry').map((m) => m.seq))),
    ].sort((a, b) => a - b);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));

    // Every reading is stored once, at the time it was taken (samples of wakes that stayed offline
    // carry the RTC-kept wall clock; the first wake's, taken before its WELCOME, are UNSYNCED uptime
    // the hub maps on that wake's HELLO).
    const readings = wakes.flatMap((d) => d.events$('reading'));
    const synced = readings.filter((r) => typeof r.timeMs === 'number');
    expect(synced.length).toBeGreaterThan(readings.length / 2);
    const query = `SELECT "value", "state" FROM "telemetry" WHERE "device" = '${id}' GROUP BY "channel"`;
    let rows = (await influx.influxQL(query)).rows;
    const deadline = Date.now() + 30_000;
    while (rows.length < readings.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      rows = (await influx.influxQL(query)).rows;
    }
    expect(rows.length).toBe(readings.length);
    for (const r of synced) {
      const at = rows.filter(
        (row) => row.channel === r.channel && Math.abs((row.time as number) - (r.timeMs as number)) <= 2,
      );
      expect(at, `${r.channel} taken at ${r.timeMs}`).toHaveLength(1);
    }
    console.info(
      `firmware deep sleep: ${WAKES} wakes of one boot, ${connected.length} connections, ${seqs.length} frames, ` +
        `${readings.length} readings stored once (${synced.length} of them on the wall clock kept across sleeps, each stored at its time ±2 ms)`,
    );
  }, 120_000);
});
