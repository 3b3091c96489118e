/**
 * Reconciliation: what the devices' ledgers say was acknowledged against what the store holds.
 *
 * For every (device, channel) the store's readings are fetched window by window and matched to the
 * sample times the device used:
 * - **lost**: an acknowledged reading with no stored point at its (device, channel, time);
 * - **duplicated**: more than one stored point at one (device, channel, time) (e.g. another series of
 *   the same channel, or the embedded store holding a frame twice);
 * - **changed**: a stored value that differs from the value sent. InfluxDB keeps one point per
 *   (series, time), so a frame stored twice with identical values is invisible there, but a replay
 *   that carried (or was mapped to) a different value overwrites the original: comparing values is
 *   what catches it;
 * - **unexpected**: a stored point at a time the device never sampled (e.g. a replay mapped to other
 *   timestamps). Where the store can count (InfluxDB), points outside the windows are counted too.
 * Readings sent but never acknowledged may or may not be stored; they are reported, not judged.
 */
import type { ChannelDescriptor } from '../../server/codec/index.ts';
import { ValueType } from '../../server/codec/index.ts';
import type { InfluxServer } from '../../test/harness/index.ts';
import type { DeviceLedger } from './ledger.ts';

/** One stored reading as a store returns it. */
export interface StoredReading {
  timeMs: number;
  value: number | boolean;
}

/** Read access to a store, per device and channel. */
export interface StoreReader {
  readonly name: string;
  /** Readings of one device and channel with `fromMs ≤ time ≤ toMs`, in any order. */
  read(deviceId: string, channel: ChannelDescriptor, fromMs: number, toMs: number): Promise<StoredReading[]>;
  /** All readings of one device and channel in the store, when the store can count them. */
  count?(deviceId: string, channel: ChannelDescriptor): Promise<number>;
}

export type DiscrepancyKind = 'lost' | 'duplicated' | 'changed' | 'unexpected';

export interface Discrepancy {
  kind: DiscrepancyKind;
  deviceId: string;
  channel: string;
  timeMs: number;
  expected?: number | boolean;
  stored?: number | boolean;
}

export interface ReconcileResult {
  store: string;
  /** Readings covered by ACKs. */
  ackedReadings: number;
  lost: number;
  duplicated: number;
  changed: number;
  unexpected: number;
  /** Readings sent but never acknowledged, and how many of them are stored anyway. */
  unackedReadings: number;
  unackedStored: number;
  /** The first discrepancies found, for the report. */
  examples: Discrepancy[];
}

/** Samples per query window (× 1 channel). */
const WINDOW_SAMPLES = 20_000;
/** The first and last windows reach this far beyond the device's samples, to see stray points. */
const MARGIN_MS = 10 * 60_000;
const MAX_EXAMPLES = 10;

export function reconcileIsClean(r: ReconcileResult): boolean {
  return r.lost === 0 && r.duplicated === 0 && r.changed === 0 && r.unexpected === 0;
}

export async function reconcile(ledgers: readonly DeviceLedger[], store: StoreReader): Promise<ReconcileResult> {
  const result: ReconcileResult = {
    store: store.name,
    ackedReadings: 0,
    lost: 0,
    duplicated: 0,
    changed: 0,
    unexpected: 0,
    unackedReadings: 0,
    unackedStored: 0,
    examples: [],
  };
  const note = (d: Discrepancy) => {
    if (result.examples.length < MAX_EXAMPLES) result.examples.push(d);
  };
  for (const ledger of ledgers) {
    const samples = ledger.framedSampleCount;
    const acked = ledger.ackedSamples;
    result.ackedReadings += acked * ledger.channels.length;
    result.unackedReadings += (samples - acked) * ledger.channels.length;
    await Promise.all(
      ledger.channels.map(async (channel, ch) => {
        const hits = new Uint8Array(samples);
        let seen = 0;
        for (let a = 0; a < samples; a += WINDOW_SAMPLES) {
          const b = Math.min(samples, a + WINDOW_SAMPLES);
          const from = a === 0 ? ledger.times.at(0) - MARGIN_MS : ledger.times.at(a);
          // Up to the next window's first sample (exclusive), so a stray point between windows is seen.
          const to = b === samples ? ledger.times.at(samples - 1) + MARGIN_MS : ledger.times.at(b) - 1;
          for (const p of await store.read(ledger.deviceId, channel, from, to)) {
            seen++;
            const i = ledger.times.indexOfSorted(p.timeMs);
            if (i < 0) {
              result.unexpected++;
              note({
                kind: 'unexpected',
                deviceId: ledger.deviceId,
                channel: channel.key,
                timeMs: p.timeMs,
                stored: p.value,
              });
              continue;
            }
            hits[i] = Math.min(255, (hits[i] as number) + 1);
            const expected = ledger.expected(ch, i);
            if (p.value !== expected) {
              result.changed++;
              note({
                kind: 'changed',
                deviceId: ledger.deviceId,
                channel: channel.key,
                timeMs: p.timeMs,
                expected,
                stored: p.value,
              });
            }
          }
        }
        for (let i = 0; i < samples; i++) {
          const n = hits[i] as number;
          if (i < acked) {
            if (n === 0) {
              result.lost++;
              note({
                kind: 'lost',
                deviceId: ledger.deviceId,
                channel: channel.key,
                timeMs: ledger.times.at(i),
                expected: ledger.expected(ch, i),
              });
            }
          } else if (n > 0) result.unackedStored++;
          if (n > 1) {
            result.duplicated += n - 1;
            note({ kind: 'duplicated', deviceId: ledger.deviceId, channel: channel.key, timeMs: ledger.times.at(i) });
          }
        }
        if (store.count) {
          const total = await store.count(ledger.deviceId, channel);
          if (total > seen) result.unexpected += total - seen;
        }
      }),
    );
  }
  return result;
}

const fieldOf = (channel: ChannelDescriptor) => (channel.valueType === ValueType.BOOL ? 'state' : 'value');
const literal = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;

/**
 * InfluxDB through InfluxQL (the schema in docs/storage.md: measurement `telemetry`, tags `device`,
 * `channel`, `unit`; field `value` or `state`; ms timestamps). Every series of the channel is read, so
 * the same reading stored under two series (e.g. another unit) counts as duplicated.
 */
export function influxReader(influx: Pick<InfluxServer, 'influxQL'>): StoreReader {
  return {
    name: 'InfluxDB (InfluxQL)',
    async read(deviceId, channel, fromMs, toMs) {
      const field = fieldOf(channel);
      const q =
        `SELECT "${field}" FROM "telemetry" WHERE "device" = ${literal(deviceId)} AND "channel" = ${literal(channel.key)}` +
        ` AND time >= ${Math.floor(fromMs)}ms AND time <= ${Math.floor(toMs)}ms`;
      const { rows } = await influx.influxQL(q);
      return rows.map((r) => ({ timeMs: r.time as number, value: r[field] as number | boolean }));
    },
    async count(deviceId, channel) {
      const field = fieldOf(channel);
      const { rows } = await influx.influxQL(
        `SELECT count("${field}") AS n FROM "telemetry" WHERE "device" = ${literal(deviceId)} AND "channel" = ${literal(channel.key)}`,
      );
      return (rows[0]?.n as number | undefined) ?? 0;
    },
  };
}

/**
 * The embedded store through the hub's history REST API (`GET /api/devices/:id/history`, admin
 * token): a window whose answer is truncated is split in halves until each half fits in one answer.
 */
export function historyReader(baseUrl: string, adminToken: string): StoreReader {
  const LIMIT = 10_000;
  const get = async (deviceId: string, channel: string, fromMs: number, toMs: number): Promise<StoredReading[]> => {
    const u = new URL(`/api/devices/${encodeURIComponent(deviceId)}/history`, baseUrl);
    u.searchParams.set('channel', channel);
    u.searchParams.set('from', String(Math.floor(fromMs)));
    u.searchParams.set('to', String(Math.floor(toMs)));
    u.searchParams.set('limit', String(LIMIT));
    const res = await fetch(u, {
      headers: { Authorization: `Bearer ${adminToken}` },
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`GET ${u.pathname}${u.search}: HTTP ${res.status} ${text.slice(0, 300)}`);
    const body = JSON.parse(text) as { truncated: boolean; readings: { timeMs: number; value: number | boolean }[] };
    if (!body.truncated) return body.readings.map((r) => ({ timeMs: r.timeMs, value: r.value }));
    if (toMs - fromMs < 1) throw new Error(`more than ${LIMIT} readings of ${deviceId}/${channel} at ${fromMs}`);
    const mid = Math.floor((fromMs + toMs) / 2);
    return [...(await get(deviceId, channel, fromMs, mid)), ...(await get(deviceId, channel, mid + 1, toMs))];
  };
  return {
    name: 'embedded store (history API)',
    read: (deviceId, channel, fromMs, toMs) => get(deviceId, channel.key, fromMs, toMs),
  };
}
