/**
 * MQTT ingest throughput: devices publish TELEMETRY frames (QoS 1) through a real Mosquitto (the test
 * harness's) to the hub, which decodes, commits durably to its local log (flushed) and publishes the
 * ACK back on each device's down topic. Measured as the SUSTAINED paced rate: the highest rate at
 * which the load generator keeps ≥ 95 % of the target and every frame is acknowledged within 1 s
 * after the step. In the same run, the same load against a bare `mqtt` subscriber to
 * `esp32hub/v1/+/up` that only counts gives the baseline and the ratio.
 *
 * Processes: the broker; the hub (`server/main.ts`, embedded mode, MQTT_URL set) or the bare
 * subscriber in a child (never both at once); the load generator (the devices' MQTT clients) in the
 * runner. Run as a child with the argument `bare`, this file is the bare subscriber.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import mqtt, { type MqttClient } from 'mqtt';
import { type ChannelDescriptor, descriptorHash, encodeFrame, ValueType } from '../server/codec/index.ts';
import { createLogger } from '../server/log/index.ts';
import { openDeviceRegistry } from '../server/registry/index.ts';
import { startMosquitto } from '../test/harness/index.ts';
import type { BenchOptions, BenchReport } from './run.ts';
import { benchHello, freePort, nextMessage, paced, sleep, waitReady } from './workers.ts';

export const name = 'mqtt';

const THIS_FILE = fileURLToPath(import.meta.url);
const ROOT = join(dirname(THIS_FILE), '..');
const DEVICES = 20;
const BOOT_ID = 77;
/** The codec bench's typical frame: 8 channels × 4 samples. */
const CHANNELS: ChannelDescriptor[] = Array.from({ length: 8 }, (_, i) => ({
  index: i,
  key: `ch${i}`,
  unit: i % 2 === 0 ? '°C' : 'V',
  valueType: i % 2 === 0 ? ValueType.I16 : ValueType.F32,
  scaleExp: i % 2 === 0 ? -2 : 0,
  periodMs: 250,
}));
const HASH = descriptorHash(CHANNELS);
const READINGS_PER_FRAME = CHANNELS.length * 4;

/** One TELEMETRY frame whose seq and base time are patched per send (CRC recomputed). */
function frameTemplate(): Buffer {
  const deltas = [0, 250, 500, 750];
  return Buffer.from(
    encodeFrame({
      type: 'telemetry',
      unsynced: false,
      bootId: BOOT_ID,
      seq: 1,
      descriptorHash: HASH,
      baseTime: Date.now(),
      blocks: CHANNELS.map((c) => ({
        channel: c.index,
        valueType: c.valueType,
        deltasMs: deltas,
        values: deltas.map((_, k) => (c.valueType === ValueType.F32 ? 3.25 : 2000 + k)),
      })),
    }),
  );
}

function patched(template: Buffer, seq: number, baseTime: number): Buffer {
  const b = Buffer.from(template);
  b.writeUInt32LE(seq, 12);
  b.writeBigUInt64LE(BigInt(baseTime), 20);
  b.writeUInt32LE(crc32(b.subarray(0, b.length - 4)), b.length - 4);
  return b;
}

interface Device {
  id: string;
  client: MqttClient;
  sent: number;
  acked: number;
  /** PUBLISH header (fixed header, topic, packet id slot, MQTT 5 properties) for this device's up topic. */
  head: Buffer;
  corked: boolean;
}

/**
 * A raw MQTT 5 PUBLISH (QoS 1) header for `topic` with a `payloadBytes` payload: the load generator
 * writes packets itself (mqtt.js's publish path would make the generator, not the receivers, the
 * bottleneck). Packet id at offset `head.length - 3`. The broker's PUBACKs reach mqtt.js, which
 * ignores ids it did not send.
 */
function publishHead(topic: string, payloadBytes: number): Buffer {
  const t = Buffer.from(topic);
  const remaining = 2 + t.length + 2 + 1 + payloadBytes;
  const len: number[] = [];
  let x = remaining;
  do {
    let byte = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) byte |= 0x80;
    len.push(byte);
  } while (x > 0);
  const head = Buffer.alloc(1 + len.length + 2 + t.length + 3);
  head[0] = 0x32;
  Buffer.from(len).copy(head, 1);
  head.writeUInt16BE(t.length, 1 + len.length);
  t.copy(head, 3 + len.length);
  return head;
}

/** The devices: one MQTT client each; with `hub`, HELLO + DESCRIPTORS and ACK tracking. */
async function connectDevices(url: string, hub: boolean, tag: string): Promise<Device[]> {
  const devices: Device[] = [];
  for (let i = 0; i < DEVICES; i++) {
    const id = `bench-mq-${i}`;
    const client = await mqtt.connectAsync(url, {
      protocolVersion: 5,
      clientId: `${id}-${tag}`,
      reconnectPeriod: 0,
      properties: { receiveMaximum: 1000 },
    });
    const d: Device = {
      id,
      client,
      sent: 0,
      acked: 0,
      head: publishHead(`esp32hub/v1/${id}/up`, frameTemplate().length),
      corked: false,
    };
    if (hub) {
      let welcomed: () => void = () => undefined;
      const welcome = new Promise<void>((r) => {
        welcomed = r;
      });
      client.on('message', (_t, p) => {
        if (p[3] === 0x05) d.acked = Math.max(d.acked, p.readUInt32LE(12));
        else if (p[3] === 0x02) welcomed();
      });
      await client.subscribeAsync(`esp32hub/v1/${id}/down`, { qos: 1 });
      await client.publishAsync(`esp32hub/v1/${id}/up`, Buffer.from(benchHello(id, BOOT_ID, HASH, 1000)), { qos: 1 });
      await welcome;
      await client.publishAsync(
        `esp32hub/v1/${id}/up`,
        Buffer.from(encodeFrame({ type: 'descriptors', channels: CHANNELS })),
        {
          qos: 1,
        },
      );
    }
    devices.push(d);
  }
  return devices;
}

interface StepResult {
  pass: boolean;
  achieved: number;
}

/**
 * Paced steps: doubles from `start` until a step fails, then bisects. `settled` says whether
 * everything sent so far was taken (acknowledged / counted).
 */
async function searchRate(
  devices: Device[],
  stepSeconds: number,
  settled: () => Promise<boolean>,
): Promise<{ rate: number; steps: string[] }> {
  const template = frameTemplate();
  let next = 0;
  let packetId = 0;
  const sendOne = () => {
    const d = devices[next++ % devices.length] as Device;
    d.sent++;
    packetId = (packetId % 60_000) + 1;
    const head = Buffer.from(d.head);
    head.writeUInt16BE(packetId, head.length - 3);
    const stream = d.client.stream;
    // One write per device per tick: the frames due in a tick leave as one segment.
    if (!d.corked) {
      d.corked = true;
      stream.cork();
      process.nextTick(() => {
        d.corked = false;
        stream.uncork();
      });
    }
    stream.write(head);
    stream.write(patched(template, d.sent, Date.now()));
  };
  const steps: string[] = [];
  const step = async (rate: number): Promise<StepResult> => {
    const { sent, seconds } = await paced(rate, stepSeconds, sendOne);
    const achieved = sent / seconds;
    const deadline = Date.now() + 1000;
    let ok = await settled();
    while (!ok && Date.now() < deadline) {
      await sleep(20);
      ok = await settled();
    }
    // Let a failed step drain before the next one, so each step starts from an empty backlog.
    if (!ok) for (let i = 0; i < 1500 && !(await settled()); i++) await sleep(20);
    const pass = ok && achieved >= rate * 0.95;
    steps.push(`${Math.round(rate)}:${pass ? 'ok' : ok ? `fail(sent ${Math.round(achieved)}/s)` : 'fail(backlog)'}`);
    return { pass, achieved };
  };
  let lo = 0;
  let hi = 0;
  for (let rate = 2000; rate <= 512_000; rate *= 2) {
    if ((await step(rate)).pass) lo = rate;
    else {
      hi = rate;
      break;
    }
  }
  if (hi === 0) return { rate: lo, steps };
  for (let i = 0; i < 3; i++) {
    const mid = Math.round((lo + hi) / 2);
    if ((await step(mid)).pass) lo = mid;
    else hi = mid;
  }
  return { rate: lo, steps };
}

async function closeAll(devices: Device[]): Promise<void> {
  await Promise.all(devices.map((d) => d.client.endAsync(true).catch(() => undefined)));
}

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const stepSeconds = options.quick ? 1.5 : 3;
  const broker = await startMosquitto({
    // Per-client QoS 1 windows and queues large enough not to be the bottleneck for either side.
    extraConfig: ['max_inflight_messages 1000', 'max_queued_messages 100000'],
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-mqtt-'));
  const children: ChildProcess[] = [];
  try {
    // ── bare: a subscriber that only counts ──
    const bare = fork(THIS_FILE, ['bare'], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_BROKER: broker.url },
    });
    children.push(bare);
    await nextMessage(bare, 'ready');
    const bareDevices = await connectDevices(broker.url, false, 'bare');
    const bareCount = async (): Promise<number> => {
      bare.send({ type: 'count' });
      return (await nextMessage<{ type: 'count'; n: number }>(bare, 'count')).n;
    };
    const bareResult = await searchRate(bareDevices, stepSeconds, async () => {
      const sent = bareDevices.reduce((s, d) => s + d.sent, 0);
      return (await bareCount()) >= sent;
    });
    await closeAll(bareDevices);
    bare.kill();

    // ── the hub: durable commit + ACK over MQTT ──
    const registry = openDeviceRegistry({ dataDir, logger: createLogger('silent'), watchIntervalMs: 0 });
    for (let i = 0; i < DEVICES; i++) await registry.add(`bench-mq-${i}`);
    await registry.close();
    const port = await freePort();
    const hub = fork(join(ROOT, 'server/main.ts'), [], {
      execArgv: ['--import', 'tsx'],
      env: {
        ...process.env,
        ENV_FILE: '/dev/null', // not a developer's own .env
        HUB_HOST: '127.0.0.1',
        HUB_PORT: String(port),
        HUB_DATA_DIR: dataDir,
        HUB_LOG_LEVEL: 'warn',
        HUB_LOG_FORMAT: 'json',
        MQTT_URL: broker.url,
        MQTT_CLIENT_ID: 'bench-hub',
      },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    children.push(hub);
    await waitReady(`http://127.0.0.1:${port}/readyz`);
    const hubDevices = await connectDevices(broker.url, true, 'hub');
    const hubResult = await searchRate(hubDevices, stepSeconds, async () => hubDevices.every((d) => d.acked >= d.sent));
    await closeAll(hubDevices);
    hub.kill('SIGTERM');
    await new Promise((r) => hub.once('exit', r));

    return {
      title: 'devices → Mosquitto → hub (decode + durable commit + ACK back over MQTT), sustained paced rate',
      rows: [
        {
          metric: 'hub MQTT ingest, sustained',
          value: hubResult.rate,
          unit: 'frames/s',
          note: `${READINGS_PER_FRAME} readings/frame; every frame ACKed within 1 s of its step`,
          baseline: { label: 'bare mqtt subscriber', value: bareResult.rate },
        },
        {
          metric: 'hub MQTT ingest, sustained',
          value: hubResult.rate * READINGS_PER_FRAME,
          unit: 'readings/s',
        },
        { metric: 'bare mqtt subscriber (counts only)', value: bareResult.rate, unit: 'frames/s' },
      ],
      notes: [
        `${DEVICES} device connections (MQTT 5, QoS 1) in the runner process, writing pre-encoded PUBLISH packets; broker: Debian mosquitto from the test harness, max_inflight_messages 1000`,
        `steps hub: ${hubResult.steps.join(' ')}`,
        `steps bare: ${bareResult.steps.join(' ')}`,
        'the broker is single-threaded and shares the 2 cores with the hub and the load generator: the bare figure is the ceiling of this setup',
      ],
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The bare subscriber: counts every message on the up topics; answers `count` over IPC. */
async function bareWorker(): Promise<void> {
  let n = 0;
  const client = await mqtt.connectAsync(process.env.BENCH_BROKER as string, {
    protocolVersion: 5,
    clientId: 'bench-bare',
    reconnectPeriod: 0,
    properties: { receiveMaximum: 1000 },
  });
  client.on('message', () => {
    n++;
  });
  await client.subscribeAsync('esp32hub/v1/+/up', { qos: 1 });
  process.on('message', (m: { type: string }) => {
    if (m.type === 'count') process.send?.({ type: 'count', n });
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ type: 'ready' });
}

if (process.argv[1] === THIS_FILE && process.argv[2] === 'bare') void bareWorker();
