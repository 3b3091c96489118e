/**
 * The cluster store's tables (docs/scaling.md "Shared state in PostgreSQL") and their versioned
 * migration: `esp32hub_schema` records each applied version; opening applies the missing ones in one
 * transaction under an advisory lock, so instances starting together migrate once and a second open
 * changes nothing.
 */
import { HubError } from '../../errors.ts';
import type { Db } from './db.ts';

/** NOTIFY channels: a registry change (payload: device id, or `*` for many) and a session claim (JSON). */
export const REGISTRY_CHANNEL = 'esp32hub_registry';
export const SESSIONS_CHANNEL = 'esp32hub_sessions';

/** Any fixed number both migrating instances agree on (pg_advisory_xact_lock takes a bigint). */
const MIGRATION_LOCK = 0x65_73_70_33_32; // "esp32"
/** Serialises registry additions so maxDevices holds across instances. */
export const REGISTRY_ADD_LOCK = 0x65_73_70_33_33;

const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
CREATE TABLE esp32hub_devices (
  id            text PRIMARY KEY,
  token_sha256  text,
  created_at_ms bigint NOT NULL,
  rotated_at_ms bigint,
  revoked_at_ms bigint
);
CREATE SEQUENCE esp32hub_session_epoch;
CREATE TABLE esp32hub_sessions (
  device_id     text PRIMARY KEY,
  instance_id   text NOT NULL,
  epoch         bigint NOT NULL,
  claimed_at_ms bigint NOT NULL
);
CREATE INDEX esp32hub_sessions_instance ON esp32hub_sessions (instance_id);
CREATE TABLE esp32hub_device_state (
  device_id       text PRIMARY KEY,
  first_seen_ms   bigint NOT NULL,
  last_ack_boot   bigint,
  last_ack_seq    bigint,
  descriptor_hash bigint NOT NULL DEFAULT 0,
  updated_at_ms   bigint NOT NULL
);
CREATE TABLE esp32hub_device_boots (
  device_id           text NOT NULL,
  boot_id             bigint NOT NULL,
  highest_seq         bigint NOT NULL,
  time_offset_ms      bigint,
  clock_correction_ms bigint,
  first_seen_ms       bigint NOT NULL,
  PRIMARY KEY (device_id, boot_id)
);
CREATE TABLE esp32hub_descriptors (
  device_id text NOT NULL,
  hash      bigint NOT NULL,
  channels  jsonb NOT NULL,
  PRIMARY KEY (device_id, hash)
);`,
  },
];

/** The newest schema version this code knows. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** Applies the missing migrations; returns the versions applied (empty when up to date). */
export async function migrate(db: Db, nowMs: number): Promise<number[]> {
  return db.tx('migrate', async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(
      'CREATE TABLE IF NOT EXISTS esp32hub_schema (version integer PRIMARY KEY, applied_at_ms bigint NOT NULL)',
    );
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM esp32hub_schema');
    const current = rows[0]?.v ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new HubError(
        'CONFIG_INVALID',
        `the cluster database ${db.where} has schema version ${current}, newer than this hub knows ` +
          `(${SCHEMA_VERSION}): upgrade this instance`,
      );
    }
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO esp32hub_schema (version, applied_at_ms) VALUES ($1, $2)', [m.version, nowMs]);
      applied.push(m.version);
    }
    return applied;
  });
}
