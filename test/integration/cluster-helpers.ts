/**
 * Helpers of the several-instances tests (cluster*.test.ts): a live-API client, which instance a
 * device's session landed on, and the exactly-once check of acknowledged readings against InfluxDB.
 */
import { WebSocket } from 'ws';
import type { SimDevice } from '../../firmware-sim/device.ts';
import type { RecordedReading } from '../../firmware-sim/recorder.ts';
import type { Cluster, ClusterInstance, TelemetryPoint } from '../harness/cluster.ts';
import { until } from '../harness/until.ts';

/** A `/v1/live` client (docs/live-api.md) keeping every message it received. */
export interface LiveClient {
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  readonly messages: any[];
  send(message: unknown): void;
  /** Waits for a message `pred` accepts (among those received so far, then new ones). */
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  waitFor(what: string, pred: (m: any) => boolean, timeoutMs?: number): Promise<any>;
  close(): void;
}

/** Connects to an instance's live endpoint (loopback, open mode: viewer) and waits for `hello`. */
export async function liveClient(instance: ClusterInstance): Promise<LiveClient> {
  const ws = new WebSocket(instance.liveUrl);
  // biome-ignore lint/suspicious/noExplicitAny: JSON messages
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const client: LiveClient = {
    messages,
    send: (m) => ws.send(JSON.stringify(m)),
    waitFor: (what, pred, timeoutMs = 30_000) =>
      until(`${what} (live client on instance ${instance.id})`, () => messages.find(pred), timeoutMs),
    close: () => ws.close(),
  };
  await client.waitFor('hello', (m) => m.type === 'hello');
  return client;
}

/**
 * Starts `devices` one at a time and finds where each session landed: after a device's WELCOME, the
 * instance whose session count went up holds it. Returns device id → instance id.
 */
export async function startAndPlace(cluster: Cluster, devices: readonly SimDevice[]): Promise<Map<string, string>> {
  const placement = new Map<string, string>();
  let before = await cluster.sessions();
  for (const d of devices) {
    const online = new Promise<void>((resolve) => d.once('online', () => resolve()));
    d.start();
    await Promise.race([
      online,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${d.id} got no WELCOME within 60 s`)), 60_000)),
    ]);
    const total = (s: Record<string, number>) => Object.values(s).reduce((a, b) => a + b, 0);
    const after = await until(
      `the session of ${d.id} to show in an instance's /readyz`,
      async () => {
        const s = await cluster.sessions();
        return total(s) === total(before) + 1 ? s : null;
      },
      30_000,
    );
    const grew = Object.keys(after).filter((id) => (after[id] ?? 0) > (before[id] ?? 0));
    if (grew.length !== 1) throw new Error(`cannot tell where ${d.id} landed: ${JSON.stringify({ before, after })}`);
    placement.set(d.id, grew[0] as string);
    before = after;
  }
  return placement;
}

/** What the comparison of acknowledged readings with InfluxDB found; every list empty = exactly once. */
export interface ExactlyOnceReport {
  /** Acked readings InfluxDB does not hold (at their time, with their value). */
  lost: string[];
  /** Points InfluxDB holds that no acked reading explains: duplicates at another time, or foreign. */
  extra: string[];
  /** Unsynced boots whose readings were not all stored with one time offset. */
  offsets: string[];
  /**
   * Frames whose readings sit at another time than expected, with the shift that finds them among the
   * unexplained points (e.g. one frame of a boot stored with another instance's offset).
   */
  shiftedFrames: string[];
  acked: number;
  points: number;
}

const keyOf = (device: string, channel: string, timeMs: number) => `${device}|${channel}|${timeMs}`;

/**
 * Compares the readings the devices saw acknowledged with InfluxDB's points of those devices.
 *
 * Synced readings must be stored at the device's own time. Unsynced ones (uptime based) at the
 * device time plus ONE offset per (device, boot) [PROTO-3.4.1], whichever instance stored them: the
 * offset is found from the data (the one that places most of the boot's readings on stored points
 * with their values); a boot stored with two offsets (two instances mapping it differently) leaves
 * points no acked reading explains (`extra`) and readings not at the chosen offset (`lost`). InfluxDB
 * overwrites a point with the same series and time, so a replay stored twice at the same time is one
 * point: duplicates can only show as points at another time, which `extra` lists.
 */
export function compareExactlyOnce(
  acked: readonly RecordedReading[],
  points: readonly TelemetryPoint[],
): ExactlyOnceReport {
  const stored = new Map<string, number | boolean>();
  const byDeviceChannelValue = new Map<string, number[]>();
  for (const p of points) {
    stored.set(keyOf(p.device, p.channel, p.timeMs), p.value);
    const k = `${p.device}|${p.channel}|${String(p.value)}`;
    const list = byDeviceChannelValue.get(k) ?? [];
    list.push(p.timeMs);
    byDeviceChannelValue.set(k, list);
  }
  // One entry per distinct reading (a frame acked twice, e.g. after a replay, is one reading).
  const distinct = new Map<string, RecordedReading>();
  for (const r of acked) distinct.set(`${r.deviceId}|${r.bootId}|${r.seq}|${r.channel}|${r.deviceTimeMs}`, r);

  const boots = new Map<string, RecordedReading[]>();
  const expected = new Map<string, { r: RecordedReading; timeMs: number }>();
  for (const r of distinct.values()) {
    if (!r.unsynced) {
      expected.set(keyOf(r.deviceId, r.channel, r.deviceTimeMs), { r, timeMs: r.deviceTimeMs });
      continue;
    }
    const k = `${r.deviceId}|${r.bootId}`;
    const list = boots.get(k) ?? [];
    list.push(r);
    boots.set(k, list);
  }
  const offsets: string[] = [];
  for (const [boot, readings] of boots) {
    // Candidate offsets: where the boot's readings' values sit in the store.
    const votes = new Map<number, number>();
    for (const r of readings) {
      for (const t of byDeviceChannelValue.get(`${r.deviceId}|${r.channel}|${String(r.value)}`) ?? []) {
        const off = t - r.deviceTimeMs;
        votes.set(off, (votes.get(off) ?? 0) + 1);
      }
    }
    const ranked = [...votes].sort((x, y) => y[1] - x[1]);
    const best = ranked[0]?.[0] ?? 0;
    const fits = ranked[0]?.[1] ?? 0;
    if (fits !== readings.length) {
      const others = ranked
        .slice(1, 4)
        .map(([o, n]) => `${n} at offset ${o} ms`)
        .join(', ');
      offsets.push(
        `${boot}: ${fits} of ${readings.length} unsynced readings stored at offset ${best} ms${others ? `; ${others}` : ''}`,
      );
    }
    for (const r of readings)
      expected.set(keyOf(r.deviceId, r.channel, r.deviceTimeMs + best), { r, timeMs: r.deviceTimeMs + best });
  }

  const lost: string[] = [];
  for (const [key, { r, timeMs }] of expected) {
    const v = stored.get(key);
    if (v === undefined || v !== r.value) {
      lost.push(
        `${r.deviceId} boot ${r.bootId} seq ${r.seq} ${r.channel}=${String(r.value)} at ${timeMs}` +
          `${r.unsynced ? ' (unsynced)' : ''}: ${v === undefined ? 'not stored' : `stored as ${String(v)}`}`,
      );
    }
  }
  const extra: string[] = [];
  const unexplained = new Map<string, number[]>();
  for (const p of points) {
    if (expected.has(keyOf(p.device, p.channel, p.timeMs))) continue;
    extra.push(`${p.device} ${p.channel}=${String(p.value)} at ${p.timeMs}`);
    const k = `${p.device}|${p.channel}|${String(p.value)}`;
    unexplained.set(k, [...(unexplained.get(k) ?? []), p.timeMs]);
  }
  // Where the missing readings went: the shift (stored time − expected time) per frame, when the
  // unexplained points hold their values.
  const shifts = new Map<string, Map<number, number>>();
  for (const [key, { r, timeMs }] of expected) {
    if (stored.get(key) === r.value) continue;
    const frame = `${r.deviceId} boot ${r.bootId} seq ${r.seq}${r.unsynced ? ' (unsynced)' : ''}`;
    const votes = shifts.get(frame) ?? new Map<number, number>();
    for (const t of unexplained.get(`${r.deviceId}|${r.channel}|${String(r.value)}`) ?? []) {
      votes.set(t - timeMs, (votes.get(t - timeMs) ?? 0) + 1);
    }
    shifts.set(frame, votes);
  }
  const shiftedFrames = [...shifts].map(([frame, votes]) => {
    const [shift, n] = [...votes].sort((x, y) => y[1] - x[1])[0] ?? [null, 0];
    return shift === null ? `${frame}: not stored` : `${frame}: stored ${shift} ms off (${n} readings)`;
  });
  return { lost, extra, offsets, shiftedFrames, acked: expected.size, points: points.length };
}

/** The first few entries of a list, for a readable failure. */
export function firstOf(list: readonly string[], n = 10): string[] {
  return list.length <= n ? [...list] : [...list.slice(0, n), `… and ${list.length - n} more`];
}
