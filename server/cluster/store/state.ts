/**
 * Session claims and the shared per-device state (boots with their time offsets and highest seqs, last
 * ACK, first seen, descriptor sets) in PostgreSQL. Every write is one statement or one short
 * transaction, batched with `unnest` arrays, and merges forward only: a stale writer can never move a
 * device's seq, ACK or first-seen backwards (docs/scaling.md "Shared state in PostgreSQL").
 */
import pg from 'pg';
import type { ChannelDescriptor } from '../../codec/index.ts';
import { HubError } from '../../errors.ts';
import { MAX_BOOTS_PER_DEVICE } from '../../storage/device-state.ts';
import type { Db } from './db.ts';
import { SESSIONS_CHANNEL } from './schema.ts';
import type { JoinRequest, JoinResult, SessionClaim, SharedBoot, SharedDeviceState } from './types.ts';

/** Devices per transaction of {@link saveDeviceStates}: bounds lock time and statement size. */
const SAVE_CHUNK_DEVICES = 2_000;

export async function claimSession(db: Db, deviceId: string, instanceId: string, nowMs: number): Promise<SessionClaim> {
  const { rows } = await db.run('claim_session', (q) =>
    q.query<{ epoch: number }>(
      `WITH e AS (SELECT nextval('esp32hub_session_epoch') AS epoch),
       up AS (
         INSERT INTO esp32hub_sessions AS s (device_id, instance_id, epoch, claimed_at_ms)
         SELECT $1, $2, e.epoch, $3 FROM e
         ON CONFLICT (device_id) DO UPDATE
           SET instance_id = EXCLUDED.instance_id, epoch = EXCLUDED.epoch, claimed_at_ms = EXCLUDED.claimed_at_ms
           WHERE s.epoch < EXCLUDED.epoch
       )
       SELECT e.epoch, pg_notify($4,
         json_build_object('deviceId', $1::text, 'instanceId', $2::text, 'epoch', e.epoch)::text)
       FROM e`,
      [deviceId, instanceId, nowMs, SESSIONS_CHANNEL],
    ),
  );
  return { deviceId, instanceId, epoch: rows[0]?.epoch as number };
}

export async function releaseSession(db: Db, claim: SessionClaim): Promise<void> {
  await db.run('release_session', (q) =>
    q.query('DELETE FROM esp32hub_sessions WHERE device_id = $1 AND epoch = $2', [claim.deviceId, claim.epoch]),
  );
}

/** Deletes the claims an earlier run of this instance left (it crashed holding them). */
export async function releaseInstanceSessions(db: Db, instanceId: string): Promise<number> {
  const { rowCount } = await db.run('release_instance_sessions', (q) =>
    q.query('DELETE FROM esp32hub_sessions WHERE instance_id = $1', [instanceId]),
  );
  return rowCount ?? 0;
}

export async function sessionHolder(db: Db, deviceId: string): Promise<SessionClaim | null> {
  const { rows } = await db.run('session_holder', (q) =>
    q.query<{ instance_id: string; epoch: number }>(
      'SELECT instance_id, epoch FROM esp32hub_sessions WHERE device_id = $1',
      [deviceId],
    ),
  );
  const row = rows[0];
  return row ? { deviceId, instanceId: row.instance_id, epoch: row.epoch } : null;
}

/** The claim a session notification carries, or null when the payload is not one. */
export function parseClaim(payload: string): SessionClaim | null {
  try {
    const v = JSON.parse(payload) as Partial<SessionClaim>;
    if (typeof v.deviceId === 'string' && typeof v.instanceId === 'string' && Number.isSafeInteger(v.epoch)) {
      return { deviceId: v.deviceId, instanceId: v.instanceId, epoch: v.epoch as number };
    }
  } catch {
    // not JSON
  }
  return null;
}

interface StateRow {
  first_seen_ms: number | null;
  last_ack_boot: number | null;
  last_ack_seq: number | null;
  descriptor_hash: number | null;
  boots: SharedBoot[];
  descriptors: { hash: number; channels: ChannelDescriptor[] }[];
}

export async function loadDeviceState(db: Db, deviceId: string): Promise<SharedDeviceState | null> {
  const { rows } = await db.run('load_state', (q) =>
    q.query<StateRow>(
      `SELECT d.first_seen_ms, d.last_ack_boot, d.last_ack_seq, d.descriptor_hash,
         (SELECT coalesce(json_agg(json_build_object('bootId', b.boot_id, 'highestSeq', b.highest_seq,
                   'timeOffsetMs', b.time_offset_ms, 'clockCorrectionMs', b.clock_correction_ms,
                   'firstSeenMs', b.first_seen_ms) ORDER BY b.first_seen_ms DESC, b.boot_id DESC), '[]'::json)
            FROM (SELECT * FROM esp32hub_device_boots WHERE device_id = $1
                  ORDER BY first_seen_ms DESC, boot_id DESC LIMIT $2) b) AS boots,
         (SELECT coalesce(json_agg(json_build_object('hash', x.hash, 'channels', x.channels) ORDER BY x.hash),
                   '[]'::json)
            FROM esp32hub_descriptors x WHERE x.device_id = $1) AS descriptors
       FROM (SELECT 1) AS one LEFT JOIN esp32hub_device_state d ON d.device_id = $1`,
      [deviceId, MAX_BOOTS_PER_DEVICE],
    ),
  );
  return stateFromRow(deviceId, rows[0]);
}

function stateFromRow(deviceId: string, row: StateRow | undefined): SharedDeviceState | null {
  if (!row || (row.first_seen_ms === null && row.boots.length === 0 && row.descriptors.length === 0)) return null;
  return {
    deviceId,
    lastAck:
      row.last_ack_boot !== null && row.last_ack_seq !== null
        ? { bootId: row.last_ack_boot, seq: row.last_ack_seq }
        : null,
    firstSeenMs: row.first_seen_ms ?? Math.min(...row.boots.map((b) => b.firstSeenMs)),
    descriptorHash: row.descriptor_hash ?? 0,
    boots: row.boots,
    descriptors: row.descriptors,
  };
}

/** Attempts of one join batch that PostgreSQL chose as a deadlock victim (two instances' batches). */
const JOIN_ATTEMPTS = 3;

/**
 * A batch of HELLO joins in one statement (docs/scaling.md "Shared state in PostgreSQL"): epochs drawn
 * in request order (the sorted subquery feeds nextval), the sessions upserted with the highest epoch of
 * each device (newest wins, also within the batch), one NOTIFY per request's claim, the HELLO boots'
 * offsets claimed first writer wins (within the batch the earliest request), and every device's state
 * read from the statement's snapshot (before its own writes, as the separate calls could). Rows are
 * written in device order, as the write-behind's, so that two instances' batches lock alike.
 */
export async function joinSessions(
  db: Db,
  requests: readonly JoinRequest[],
  instanceId: string,
  nowMs: number,
): Promise<JoinResult[]> {
  const sql = `WITH req AS MATERIALIZED (
       SELECT u.device_id, u.boot_id, u.offset_ms, u.ord, nextval('esp32hub_session_epoch') AS epoch
       FROM (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
               WITH ORDINALITY AS t(device_id, boot_id, offset_ms, ord) ORDER BY ord) u),
     claims AS (
       INSERT INTO esp32hub_sessions AS s (device_id, instance_id, epoch, claimed_at_ms)
       SELECT DISTINCT ON (device_id) device_id, $4, epoch, $5 FROM req ORDER BY device_id, epoch DESC
       ON CONFLICT (device_id) DO UPDATE
         SET instance_id = EXCLUDED.instance_id, epoch = EXCLUDED.epoch, claimed_at_ms = EXCLUDED.claimed_at_ms
         WHERE s.epoch < EXCLUDED.epoch),
     offsets AS (
       INSERT INTO esp32hub_device_boots AS b
         (device_id, boot_id, highest_seq, time_offset_ms, clock_correction_ms, first_seen_ms)
       SELECT DISTINCT ON (device_id, boot_id) device_id, boot_id, 0, offset_ms, NULL::bigint, $5
         FROM req ORDER BY device_id, boot_id, ord
       ON CONFLICT (device_id, boot_id) DO UPDATE
         SET time_offset_ms = coalesce(b.time_offset_ms, EXCLUDED.time_offset_ms)
       RETURNING b.device_id, b.boot_id, b.time_offset_ms)
     SELECT r.ord, r.epoch, o.time_offset_ms,
       pg_notify($6, json_build_object('deviceId', r.device_id, 'instanceId', $4::text, 'epoch', r.epoch)::text),
       d.first_seen_ms, d.last_ack_boot, d.last_ack_seq, d.descriptor_hash,
       (SELECT coalesce(json_agg(json_build_object('bootId', x.boot_id, 'highestSeq', x.highest_seq,
                 'timeOffsetMs', x.time_offset_ms, 'clockCorrectionMs', x.clock_correction_ms,
                 'firstSeenMs', x.first_seen_ms) ORDER BY x.first_seen_ms DESC, x.boot_id DESC), '[]'::json)
          FROM (SELECT * FROM esp32hub_device_boots WHERE device_id = r.device_id
                ORDER BY first_seen_ms DESC, boot_id DESC LIMIT $7) x) AS boots,
       (SELECT coalesce(json_agg(json_build_object('hash', y.hash, 'channels', y.channels) ORDER BY y.hash),
                 '[]'::json)
          FROM esp32hub_descriptors y WHERE y.device_id = r.device_id) AS descriptors
     FROM req r
     JOIN offsets o ON o.device_id = r.device_id AND o.boot_id = r.boot_id
     LEFT JOIN esp32hub_device_state d ON d.device_id = r.device_id
     ORDER BY r.ord`;
  const params = [
    requests.map((r) => r.deviceId),
    requests.map((r) => r.bootId),
    requests.map((r) => r.offsetMs),
    instanceId,
    nowMs,
    SESSIONS_CHANNEL,
    MAX_BOOTS_PER_DEVICE,
  ];
  const { rows } = await db.run('join_sessions', async (q) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await q.query<StateRow & { ord: number; epoch: number; time_offset_ms: number }>(sql, params);
      } catch (err) {
        const victim = err instanceof pg.DatabaseError && (err.code === '40P01' || err.code === '40001');
        if (!victim || attempt >= JOIN_ATTEMPTS) throw err;
      }
    }
  });
  if (rows.length !== requests.length) {
    throw new HubError('INTERNAL', `join batch answered ${rows.length} rows for ${requests.length} requests`);
  }
  return requests.map((r, i) => {
    const row = rows[i] as StateRow & { epoch: number; time_offset_ms: number };
    return {
      claim: { deviceId: r.deviceId, instanceId, epoch: row.epoch },
      state: stateFromRow(r.deviceId, row),
      bootOffsetMs: row.time_offset_ms,
    };
  });
}

/** First writer wins, atomically (an upsert that keeps a set offset): every instance gets the same value. */
export async function claimBootOffset(
  db: Db,
  deviceId: string,
  bootId: number,
  offsetMs: number,
  nowMs: number,
): Promise<number> {
  const { rows } = await db.run('claim_boot_offset', (q) =>
    q.query<{ time_offset_ms: number }>(
      `INSERT INTO esp32hub_device_boots AS b
         (device_id, boot_id, highest_seq, time_offset_ms, clock_correction_ms, first_seen_ms)
       VALUES ($1, $2, 0, $3, NULL, $4)
       ON CONFLICT (device_id, boot_id) DO UPDATE
         SET time_offset_ms = coalesce(b.time_offset_ms, EXCLUDED.time_offset_ms)
       RETURNING time_offset_ms`,
      [deviceId, bootId, offsetMs, nowMs],
    ),
  );
  return rows[0]?.time_offset_ms as number;
}

export async function putDescriptors(
  db: Db,
  deviceId: string,
  hash: number,
  channels: ChannelDescriptor[],
): Promise<void> {
  await db.run('put_descriptors', (q) =>
    q.query(
      `INSERT INTO esp32hub_descriptors (device_id, hash, channels) VALUES ($1, $2, $3::jsonb)
       ON CONFLICT (device_id, hash) DO NOTHING`,
      [deviceId, hash, JSON.stringify(channels)],
    ),
  );
}

/**
 * The write-behind's batched upsert. Per chunk of devices, one transaction of four statements:
 * boots (highest seq = max, offsets: first writer wins, first seen = min), devices (first seen = min;
 * last ACK replaced only by one of the same boot with a seq at least as high, or of a boot first seen
 * no earlier; the current descriptor hash taken with it, or from a state without ACK), descriptor sets (added), then the boots of each device that got a new one trimmed to the newest
 * MAX_BOOTS_PER_DEVICE. Returns the number of devices written.
 */
export async function saveDeviceStates(db: Db, states: readonly SharedDeviceState[], nowMs: number): Promise<number> {
  const devices = mergeByDevice(states);
  for (let i = 0; i < devices.length; i += SAVE_CHUNK_DEVICES) {
    const chunk = devices.slice(i, i + SAVE_CHUNK_DEVICES);
    await db.tx('save_states', async (q) => {
      const boots = chunk.flatMap((d) => mergeBoots(d.boots).map((b) => ({ ...b, deviceId: d.deviceId })));
      // Devices that got a new boot row: only they can hold more boots than kept (trimmed below).
      let grown: string[] = [];
      if (boots.length > 0) {
        const inserted = await q.query<{ device_id: string }>(
          `WITH up AS (
             INSERT INTO esp32hub_device_boots AS b
               (device_id, boot_id, highest_seq, time_offset_ms, clock_correction_ms, first_seen_ms)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
             ON CONFLICT (device_id, boot_id) DO UPDATE SET
               highest_seq = greatest(b.highest_seq, EXCLUDED.highest_seq),
               time_offset_ms = coalesce(b.time_offset_ms, EXCLUDED.time_offset_ms),
               clock_correction_ms = coalesce(b.clock_correction_ms, EXCLUDED.clock_correction_ms),
               first_seen_ms = least(b.first_seen_ms, EXCLUDED.first_seen_ms)
             RETURNING b.device_id, (b.xmax = 0) AS fresh)
           SELECT DISTINCT device_id FROM up WHERE fresh`,
          [
            boots.map((b) => b.deviceId),
            boots.map((b) => b.bootId),
            boots.map((b) => b.highestSeq),
            boots.map((b) => b.timeOffsetMs),
            boots.map((b) => b.clockCorrectionMs),
            boots.map((b) => b.firstSeenMs),
          ],
        );
        grown = inserted.rows.map((r) => r.device_id);
      }
      const bootSeen = `(SELECT first_seen_ms FROM esp32hub_device_boots x
                          WHERE x.device_id = d.device_id AND x.boot_id = %s)`;
      const takeAck = `EXCLUDED.last_ack_boot IS NOT NULL AND (
          d.last_ack_boot IS NULL
          OR (d.last_ack_boot = EXCLUDED.last_ack_boot AND EXCLUDED.last_ack_seq >= d.last_ack_seq)
          OR (d.last_ack_boot <> EXCLUDED.last_ack_boot
              AND coalesce(${bootSeen.replace('%s', 'EXCLUDED.last_ack_boot')}, 0)
                  >= coalesce(${bootSeen.replace('%s', 'd.last_ack_boot')}, 0)))`;
      await q.query(
        `INSERT INTO esp32hub_device_state AS d
           (device_id, first_seen_ms, last_ack_boot, last_ack_seq, descriptor_hash, updated_at_ms)
         SELECT *, $6::bigint FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
         ON CONFLICT (device_id) DO UPDATE SET
           first_seen_ms = least(d.first_seen_ms, EXCLUDED.first_seen_ms),
           last_ack_boot = CASE WHEN ${takeAck} THEN EXCLUDED.last_ack_boot ELSE d.last_ack_boot END,
           last_ack_seq = CASE WHEN ${takeAck} THEN EXCLUDED.last_ack_seq ELSE d.last_ack_seq END,
           descriptor_hash = CASE WHEN EXCLUDED.descriptor_hash <> 0
                                       AND (EXCLUDED.last_ack_boot IS NULL OR ${takeAck})
                                  THEN EXCLUDED.descriptor_hash ELSE d.descriptor_hash END,
           updated_at_ms = EXCLUDED.updated_at_ms`,
        [
          chunk.map((d) => d.deviceId),
          chunk.map((d) => d.firstSeenMs),
          chunk.map((d) => d.lastAck?.bootId ?? null),
          chunk.map((d) => d.lastAck?.seq ?? null),
          chunk.map((d) => d.descriptorHash),
          nowMs,
        ],
      );
      const sets = chunk.flatMap((d) => uniqueSets(d).map((s) => ({ ...s, deviceId: d.deviceId })));
      if (sets.length > 0) {
        await q.query(
          `INSERT INTO esp32hub_descriptors (device_id, hash, channels)
           SELECT t.d, t.h, t.c::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[]) AS t(d, h, c)
           ON CONFLICT (device_id, hash) DO NOTHING`,
          [sets.map((s) => s.deviceId), sets.map((s) => s.hash), sets.map((s) => JSON.stringify(s.channels))],
        );
      }
      if (grown.length === 0) return;
      await q.query(
        `DELETE FROM esp32hub_device_boots b USING (
           SELECT device_id, boot_id FROM (
             SELECT device_id, boot_id,
                    row_number() OVER (PARTITION BY device_id ORDER BY first_seen_ms DESC, boot_id DESC) AS n
             FROM esp32hub_device_boots WHERE device_id = ANY($1::text[])) ranked
           WHERE ranked.n > $2) old
         WHERE b.device_id = old.device_id AND b.boot_id = old.boot_id`,
        [grown, MAX_BOOTS_PER_DEVICE],
      );
    });
  }
  return devices.length;
}

/**
 * One entry per device (an upsert may not touch a row twice), sorted by id so that two instances'
 * batches lock rows in the same order. Entries of one device merge forward.
 */
function mergeByDevice(states: readonly SharedDeviceState[]): SharedDeviceState[] {
  const byId = new Map<string, SharedDeviceState>();
  for (const s of states) {
    const prev = byId.get(s.deviceId);
    if (!prev) {
      byId.set(s.deviceId, s);
      continue;
    }
    byId.set(s.deviceId, {
      deviceId: s.deviceId,
      firstSeenMs: Math.min(prev.firstSeenMs, s.firstSeenMs),
      lastAck: s.lastAck ?? prev.lastAck,
      descriptorHash: s.descriptorHash !== 0 ? s.descriptorHash : prev.descriptorHash,
      boots: [...prev.boots, ...s.boots],
      descriptors: [...prev.descriptors, ...s.descriptors],
    });
  }
  return [...byId.values()].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
}

function mergeBoots(boots: readonly SharedBoot[]): SharedBoot[] {
  const byId = new Map<number, SharedBoot>();
  for (const b of boots) {
    const prev = byId.get(b.bootId);
    byId.set(
      b.bootId,
      prev
        ? {
            bootId: b.bootId,
            highestSeq: Math.max(prev.highestSeq, b.highestSeq),
            timeOffsetMs: prev.timeOffsetMs ?? b.timeOffsetMs,
            clockCorrectionMs: prev.clockCorrectionMs ?? b.clockCorrectionMs,
            firstSeenMs: Math.min(prev.firstSeenMs, b.firstSeenMs),
          }
        : b,
    );
  }
  return [...byId.values()].sort((a, b) => a.bootId - b.bootId);
}

function uniqueSets(state: SharedDeviceState): SharedDeviceState['descriptors'] {
  const byHash = new Map(state.descriptors.map((d) => [d.hash, d]));
  return [...byHash.values()];
}
