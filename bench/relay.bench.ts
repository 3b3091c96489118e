/**
 * Cost of the cluster relay (server/cluster/relay.ts) on the ingest path, per accepted frame, measured
 * on this process's CPU clock: the hub's bus emits `readings:accepted` with a real frame (4 channels
 * × 4 samples, as the simulator sends) to a no-op listener standing for the live view, then
 *
 *   1. without the relay (one instance: the baseline),
 *   2. with the relay started and no other instance watching live (the normal case: nothing of the
 *      relay listens on the ingest path),
 *   3. with another instance watching live: each frame is written into the open batch (descriptor
 *      check, one record), full batches are sealed and handed to the MQTT client (here a client that
 *      discards them: the broker's and the network's share is not in this figure).
 *
 * Reports ns per frame and the relay's share (row − baseline). `npm run bench -- relay`.
 */

import { createRelay } from '../server/cluster/relay.ts';
import { encodeFrame, ValueType } from '../server/codec/index.ts';
import { HubEventBus } from '../server/events.ts';
import { createLogger } from '../server/log/index.ts';
import { createMetrics } from '../server/metrics/index.ts';
import type { HubMqttClient, MessageHandler } from '../server/mqtt/client.ts';
import { AcceptedTelemetry } from '../server/pipeline/ingest.ts';
import { type BenchOptions, type BenchReport, consume, measureRate } from './run.ts';

export const name = 'relay';

const CHANNELS = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 250 },
  { index: 1, key: 'humidity', unit: '%', valueType: ValueType.U16, scaleExp: -1, periodMs: 250 },
  { index: 2, key: 'door', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
  { index: 3, key: 'voltage', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 250 },
];

/** A connected MQTT client that discards what is published and lets the bench feed subscriptions. */
function discardingClient(): HubMqttClient & { feed(topic: string, payload: string): void; bytes: number } {
  const subs = new Map<string, MessageHandler>();
  const c = {
    bytes: 0,
    start() {},
    async stop() {},
    status: () => ({ queued: 0 }) as ReturnType<HubMqttClient['status']>,
    isConnected: () => true,
    publish(topic: string, payload: Uint8Array | string) {
      if (topic.includes('/events/')) c.bytes += payload.length;
    },
    subscribe(filter: string, handler: MessageHandler) {
      subs.set(filter, handler);
    },
    onConnect() {},
    onReady() {},
    setWill() {},
    holdInput() {},
    releaseInput() {},
    feed(topic: string, payload: string) {
      for (const [filter, h] of subs)
        if (filter.endsWith('/+') && topic.startsWith(filter.slice(0, -1))) h(topic, Buffer.from(payload));
    },
  };
  return c;
}

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const deltas = [0, 250, 500, 750];
  const frames = Array.from({ length: 64 }, (_, i) =>
    encodeFrame({
      type: 'telemetry',
      unsynced: false,
      bootId: 1,
      seq: i + 1,
      descriptorHash: 0,
      baseTime: 1_716_200_000_000 + i * 1000,
      blocks: [
        { channel: 0, valueType: ValueType.I16, deltasMs: deltas, values: deltas.map((_, k) => 2000 + k) },
        { channel: 1, valueType: ValueType.U16, deltasMs: deltas, values: deltas.map((_, k) => 500 + k) },
        { channel: 2, valueType: ValueType.BOOL, deltasMs: deltas, values: deltas.map((_, k) => k % 2 === 1) },
        { channel: 3, valueType: ValueType.F32, deltasMs: deltas, values: deltas.map(() => 3.25) },
      ],
    }),
  );
  // 1,000 devices, frames by reference (the ingest creates one AcceptedTelemetry per frame: so do we).
  const ids = Array.from({ length: 1000 }, (_, i) => `esp-${i}`);
  const measure = (bus: HubEventBus) =>
    measureRate(
      (n) => {
        let x = 0;
        for (let i = 0; i < n; i++) {
          const id = ids[i % ids.length] as string;
          const f = new AcceptedTelemetry(id, frames[i & 63] as Uint8Array, CHANNELS, 0, 1_716_200_000_000 + i, 16);
          bus.emit('readings:accepted', id, f);
          x += f.samples;
        }
        return x;
      },
      { quick: options.quick, clock: 'cpu' },
    );

  const newBus = () => {
    const bus = new HubEventBus();
    let kept = 0;
    bus.on('readings:accepted', (_id, f) => {
      kept += f.samples; // the live view keeps a reference; this stands for it
    });
    consume(kept);
    return bus;
  };
  const logger = createLogger('silent');
  const withRelay = (live: boolean) => {
    const bus = newBus();
    const client = discardingClient();
    const relay = createRelay({
      instanceId: 'bench-a',
      topicPrefix: 'esp32hub',
      client,
      bus,
      metrics: createMetrics(),
      logger,
      channelsOf: () => CHANNELS,
      isLocalOnline: () => true,
      needsPresence: false,
    });
    relay.start();
    if (live)
      client.feed('esp32hub/cluster/v1/interest/bench-b', JSON.stringify({ live: true, presence: true, gen: 1 }));
    return { bus, relay, client };
  };

  const baseline = measure(newBus());
  const idle = withRelay(false);
  const idleRate = measure(idle.bus);
  const watched = withRelay(true);
  if (!watched.relay.stats().remoteLive) throw new Error('the relay did not take the remote interest');
  const watchedRate = measure(watched.bus);
  await idle.relay.stop();
  await watched.relay.stop();

  const ns = (rate: number) => 1e9 / rate;
  const base = ns(baseline.median);
  const bytesPerFrame = watched.client.bytes / Math.max(1, watched.relay.stats().recordsPublished);
  return {
    title: 'Cluster relay: cost per accepted frame on the ingest path',
    rows: [
      { metric: 'emit, no relay (one instance)', value: base, unit: 'ns/frame' },
      {
        metric: 'emit, relay idle (no other instance watching)',
        value: ns(idleRate.median),
        unit: 'ns/frame',
        note: `relay share ${(ns(idleRate.median) - base).toFixed(0)} ns`,
      },
      {
        metric: 'emit, relay with a remote live client',
        value: ns(watchedRate.median),
        unit: 'ns/frame',
        note: `relay share ${(ns(watchedRate.median) - base).toFixed(0)} ns (batching and handing batches to MQTT)`,
      },
      { metric: 'bytes per relayed record (batches published / records)', value: Math.round(bytesPerFrame), unit: 'B' },
    ],
    notes: [
      'CPU clock of this process; 1,000 devices, a 4-channel × 4-sample TELEMETRY frame (109 B; a relayed frame record adds 22 B plus the device id).',
      'The MQTT client here discards batches: the broker, the network and the receivers are not in these figures.',
    ],
  };
}
