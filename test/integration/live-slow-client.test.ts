// Slow live clients with real sockets: a client that stops reading (its TCP socket paused, so the
// kernel buffers fill and the hub's `bufferedAmount` grows) is evicted after the drain timeout, while
// another client on the same stream receives every single update, in order, with nothing skipped.
// The hub is the real one (buildHub + the live extension); readings enter through its event bus,
// exactly where the ingest path emits them once it has accepted a frame (`readings:accepted`).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension, readingsFrame } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import type { Reading } from '../../server/storage/types.ts';

const HIGH_WATER = 256 * 1024;
const DRAIN_TIMEOUT_MS = 500;
/** Devices × channels the generator cycles through; each event is one device's frame. */
const DEVICES = 40;
const CHANNELS = 8;
const SAMPLES_PER_CHANNEL = 50;

let hub: Hub;
let port: number;
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'live-slow-'));
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    LIVE_HIGH_WATER_BYTES: String(HIGH_WATER),
    LIVE_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
  });
  hub = buildHub(config, {
    extensions: [liveExtension(config)],
    authenticate: () => null, // no devices in this test
    logger: createLogger('silent'),
  });
  ({ port } = await hub.start());
});

afterAll(async () => {
  await hub?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Client {
  ws: WebSocket;
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  messages: any[];
  closed: Promise<number>;
}

async function connect(): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/live`, { headers: { origin: `http://127.0.0.1:${port}` } });
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'subscribe', sub: 'fleet', mode: 'all' }));
  await until(() => messages.some((m) => m.type === 'snapshot'));
  return { ws, messages, closed };
}

async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 5));
}

async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await hub.metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

/**
 * Sequence-numbered readings: event `e` is device `dev-(e mod DEVICES)`, each of its channels gets
 * SAMPLES_PER_CHANNEL consecutive values. Spread over devices and channels so no (device, channel)
 * comes near the per-tick sample cap: every sample must reach a client that keeps up.
 */
class Generator {
  events = 0;
  samples = 0;
  /** Last value emitted per `device/channel`. */
  readonly last = new Map<string, number>();
  emit(): void {
    const deviceId = `dev-${this.events % DEVICES}`;
    const readings: Reading[] = [];
    for (let c = 0; c < CHANNELS; c++) {
      for (let i = 0; i < SAMPLES_PER_CHANNEL; i++) {
        const value = this.samples++;
        readings.push({ deviceId, channel: `ch_${c}`, unit: '', timeMs: 1_700_000_000_000 + value, value });
        this.last.set(`${deviceId}/ch_${c}`, value);
      }
    }
    this.events++;
    hub.bus.emit('readings:accepted', deviceId, readingsFrame(deviceId, readings));
  }
}

// biome-ignore lint/suspicious/noExplicitAny: JSON messages
function values(messages: any[]): number[] {
  const out: number[] = [];
  for (const m of messages) {
    if (m.type !== 'data') continue;
    for (const channels of Object.values(m.updates) as Record<string, [number, number][]>[]) {
      for (const samples of Object.values(channels)) for (const [, v] of samples) out.push(v);
    }
  }
  return out;
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));

describe('a live client that stops reading', () => {
  it('is evicted after the drain timeout while another client on the same stream gets every update', async () => {
    const fast = await connect();
    const slow = await connect();
    // Stop reading (ws keeps its socket paused): the kernel's receive buffer fills, then the hub's
    // send buffer, then the hub's bufferedAmount.
    slow.ws.pause();
    const evictionsBefore = await counter('hub_live_evictions_total', { reason: 'drain_timeout' });

    // Stream until the slow client is cut off, then a little more.
    const gen = new Generator();
    let extra = 0;
    const started = Date.now();
    let evicted = false;
    while (extra < 200) {
      gen.emit();
      // The paused client cannot see its connection end (the FIN waits behind unread data): ask the hub.
      if (
        evicted ||
        (gen.events % 20 === 0 &&
          (await counter('hub_live_evictions_total', { reason: 'drain_timeout' })) > evictionsBefore)
      ) {
        evicted = true;
        extra++;
      }
      await yieldToLoop();
      if (Date.now() - started > 90_000) throw new Error(`slow client never evicted after ${gen.samples} samples`);
    }

    expect(await counter('hub_live_evictions_total', { reason: 'drain_timeout' })).toBe(evictionsBefore + 1);
    expect(await counter('hub_live_clients')).toBe(1);

    // The fast client: every sample exactly once, each (device, channel) in order, nothing skipped.
    await until(() => values(fast.messages).length >= gen.samples);
    const got = values(fast.messages);
    expect(fast.messages.filter((m) => m.type === 'skipped')).toEqual([]);
    expect(got.length).toBe(gen.samples);
    expect([...got].sort((a, b) => a - b).every((v, i) => v === i)).toBe(true);
    // In order per (device, channel), across ticks too.
    const lastSeen = new Map<string, number>();
    let outOfOrder = 0;
    for (const m of fast.messages) {
      if (m.type !== 'data') continue;
      for (const [device, channels] of Object.entries(m.updates) as [string, Record<string, [number, number][]>][]) {
        for (const [channel, samples] of Object.entries(channels)) {
          for (const [, v] of samples) {
            const key = `${device}/${channel}`;
            if (v <= (lastSeen.get(key) ?? -1)) outOfOrder++;
            lastSeen.set(key, v);
          }
        }
      }
    }
    expect(outOfOrder).toBe(0);
    fast.ws.close();
    slow.ws.terminate();
  });

  it('that only lags gets a skipped marker, then the latest value of every (device, channel)', async () => {
    const lagging = await connect();
    lagging.ws.pause();
    const coalescedBefore = await counter('hub_live_coalesced_updates_total');
    const gen = new Generator();
    gen.samples = 10_000_000; // distinct from the first test's values
    // Push until the hub starts coalescing for this client (well within the drain timeout), then stop.
    while ((await counter('hub_live_coalesced_updates_total')) === coalescedBefore) {
      gen.emit();
      await yieldToLoop();
    }
    for (let i = 0; i < DEVICES; i++) {
      gen.emit(); // every device once more while behind
      await yieldToLoop();
    }
    lagging.ws.resume();
    // The client ends up with the latest value of every (device, channel), whatever it skipped.
    const shown = new Map<string, number>();
    let folded = 0;
    await until(() => {
      for (; folded < lagging.messages.length; folded++) {
        const m = lagging.messages[folded];
        if (m.type !== 'data') continue;
        for (const [device, channels] of Object.entries(m.updates) as [string, Record<string, [number, number][]>][]) {
          for (const [channel, samples] of Object.entries(channels)) {
            shown.set(`${device}/${channel}`, (samples.at(-1) as [number, number])[1]);
          }
        }
      }
      return [...gen.last].every(([k, v]) => shown.get(k) === v);
    });
    // It fell behind at least once; each time it caught up it got the marker, then one sample per
    // (device, channel): the latest it had missed.
    const markers = lagging.messages.flatMap((m, i) => (m.type === 'skipped' ? [i] : []));
    expect(markers.length).toBeGreaterThan(0);
    for (const i of markers) {
      const skipped = lagging.messages[i];
      expect(skipped.samples).toBeGreaterThan(0);
      expect(skipped.toTick).toBeGreaterThanOrEqual(skipped.fromTick);
      const catchUp = lagging.messages[i + 1];
      expect(catchUp.type).toBe('data');
      for (const channels of Object.values(catchUp.updates) as Record<string, [number, number][]>[]) {
        for (const samples of Object.values(channels)) expect(samples).toHaveLength(1);
      }
    }
    expect(lagging.ws.readyState).toBe(WebSocket.OPEN);
    lagging.ws.close();
  });
});
