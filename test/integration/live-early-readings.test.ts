// The live view shows what a device reported as soon as the hub accepted the frame, not after the
// durable commit: a real hub (buildHub + the live extension, real registry, real lmdb log) whose log
// is held back by the test — appends are queued in front of the log until the test lets them through,
// so the frames are provably neither committed nor acknowledged while a live client already has their
// readings. Then the commit goes through: ACK, `readings`, history. No timing assertions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { configFrom } from '../../server/config/index.ts';
import { liveExtension } from '../../server/live/index.ts';
import type { AppendCallback, LocalLog } from '../../server/storage/local-log.ts';
import type { RecordInput } from '../../server/storage/local-log-record.ts';
import type { Reading } from '../../server/storage/types.ts';
import {
  expectedReadings,
  startTestHub,
  TEST_CHANNELS,
  TestDevice,
  type TestHub,
  telemetry,
} from './ingest-device-client.ts';

const HOUR = 3_600_000;
const ID = 'esp-early';
const BOOT = 5;

let h: TestHub;
let token: string;

beforeAll(async () => {
  // The extension's own config only decides dashboard access: open mode, loopback clients.
  const live = liveExtension(configFrom({}));
  h = await startTestHub({}, { extensions: [live] });
  token = await h.addDevice(ID);
});

afterAll(async () => {
  await h?.stop();
  await h?.dir.remove();
});

/** Holds appends in front of the hub's local log until `release()`; the real log then takes them in order. */
function holdLog(log: LocalLog) {
  const real = log.append;
  const held: [RecordInput, AppendCallback][] = [];
  log.append = (entry, done) => void held.push([entry, done]);
  return {
    held,
    release() {
      log.append = real;
      for (const [entry, done] of held.splice(0)) real.call(log, entry, done);
    },
  };
}

interface LiveClient {
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  messages: any[];
  ws: WebSocket;
}

async function liveClient(): Promise<LiveClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/v1/live`);
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'subscribe', sub: 'dev', device: ID, mode: 'all' }));
  await until(() => messages.some((m) => m.type === 'snapshot'));
  return { ws, messages };
}

async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** `[timeMs, value]` of every sample of `channel` in the client's `data` messages. */
// biome-ignore lint/suspicious/noExplicitAny: JSON messages
function samples(messages: any[], channel: string): [number, number | boolean][] {
  const out: [number, number | boolean][] = [];
  for (const m of messages) if (m.type === 'data') out.push(...(m.updates[ID]?.[channel] ?? []));
  return out;
}

describe('live readings before the durable commit', () => {
  it('a live client gets the readings of frames whose commit is pending; ACK and `readings` wait for it', async () => {
    const client = await liveClient();
    const device = await TestDevice.connect(h.url, { token });
    const welcome = await device.hello(ID, BOOT, { uptimeMs: HOUR });
    if (!welcome.descriptorsKnown) device.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const committed: Reading[] = [];
    h.hub.bus.on('readings', (dev, rs) => {
      if (dev === ID) committed.push(...rs);
    });

    const hold = holdLog(h.hub.context().log);
    const base = Date.now() - 10 * 60_000;
    const N = 3;
    for (let s = 1; s <= N; s++) device.send(telemetry(BOOT, s, base + s * 10_000));
    const want = Array.from({ length: N }, (_, i) => expectedReadings(i + 1, base + (i + 1) * 10_000)).flat();
    const wantTemperature = want.filter((r) => r.channel === 'temperature').map((r) => [r.timeMs, r.value]);

    // The page has every sample of the three frames...
    await until(() => samples(client.messages, 'temperature').length >= wantTemperature.length);
    expect(samples(client.messages, 'temperature')).toEqual(wantTemperature);
    // ...while none of them has reached the log, been acknowledged, or been announced as stored.
    expect(hold.held).toHaveLength(N);
    expect(device.history.filter((m) => m.type === 'ack')).toEqual([]);
    expect(committed).toEqual([]);
    expect(
      h.hub.context().queryHistory({ deviceId: ID, fromMs: 0, toMs: Date.now() + HOUR, limit: 1000 }).readings,
    ).toEqual([]);

    // The commit goes through: the cumulative ACK, `readings` with the same values, the history.
    hold.release();
    await device.ackOf(BOOT, N);
    await until(() => committed.length >= want.length);
    const simplify = (rs: { timeMs: number; channel: string; value: number | boolean }[]) =>
      rs
        .map((r) => ({ timeMs: r.timeMs, channel: r.channel, value: r.value }))
        .sort((a, b) => a.timeMs - b.timeMs || a.channel.localeCompare(b.channel));
    expect(simplify(committed)).toEqual(simplify(want));
    const stored = h.hub.context().queryHistory({ deviceId: ID, fromMs: 0, toMs: Date.now() + HOUR, limit: 1000 });
    expect(stored.readings.filter((r) => r.channel === 'temperature').map((r) => [r.timeMs, r.value])).toEqual(
      wantTemperature,
    );
    // The commit added nothing on the live side: every sample was delivered once, when accepted.
    expect(samples(client.messages, 'temperature')).toEqual(wantTemperature);

    client.ws.close();
    await device.close();
  });
});
