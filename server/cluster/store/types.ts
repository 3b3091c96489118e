/**
 * The contract of the PostgreSQL cluster store (docs/scaling.md "Shared state
 * in PostgreSQL"): what several hub instances share through one database. Sessions, membership and relay
 * code against these types; `openClusterStore` (./index.ts) implements them.
 */
import type { ChannelDescriptor } from '../../codec/index.ts';
import type { Logger } from '../../log/index.ts';
import type { Metrics } from '../../metrics/index.ts';
import type { DeviceRegistry } from '../../registry/registry.ts';

/** One (device, boot) as every instance must see it. */
export interface SharedBoot {
  bootId: number;
  highestSeq: number;
  timeOffsetMs: number | null;
  clockCorrectionMs: number | null;
  firstSeenMs: number;
}

export interface SharedDeviceState {
  deviceId: string;
  lastAck: { bootId: number; seq: number } | null;
  /** Earliest first-seen any instance recorded (LEAST on write). */
  firstSeenMs: number;
  /** 0 = none. */
  descriptorHash: number;
  /** At most MAX_BOOTS_PER_DEVICE newest (server/storage/device-state.ts). */
  boots: SharedBoot[];
  /** Every descriptor set the device announced. */
  descriptors: { hash: number; channels: ChannelDescriptor[] }[];
}

/** Who holds a device's session; `epoch` comes from a PostgreSQL sequence (higher = newer). */
export interface SessionClaim {
  deviceId: string;
  instanceId: string;
  epoch: number;
}

/** One HELLO's part of {@link ClusterStore.joinSessions}: the device, its HELLO boot and the proposed offset. */
export interface JoinRequest {
  deviceId: string;
  bootId: number;
  offsetMs: number;
}

/** What {@link ClusterStore.joinSessions} answers for one {@link JoinRequest}, in request order. */
export interface JoinResult {
  claim: SessionClaim;
  /** As `loadDeviceState` (read before this batch's own writes). */
  state: SharedDeviceState | null;
  /** As `claimBootOffset`: the offset every instance uses for (device, HELLO boot). */
  bootOffsetMs: number;
}

export interface ClusterStore {
  readonly instanceId: string;
  /** Same interface as server/registry/registry.ts, PG-backed. */
  readonly registry: DeviceRegistry;
  /** Newest wins: a new epoch from a sequence, row (device -> instance, epoch) upserted, NOTIFY sent in the same tx. */
  claimSession(deviceId: string): Promise<SessionClaim>;
  /**
   * Several HELLOs' joins in ONE statement (one round trip): per request, `claimSession` (epochs drawn
   * in request order, so of two requests of one device the later one wins; one NOTIFY per claim),
   * `loadDeviceState` and `claimBootOffset` (first writer wins; within the batch the earlier request).
   * Answers in request order; all or nothing.
   */
  joinSessions(requests: readonly JoinRequest[]): Promise<JoinResult[]>;
  /** Deletes the row only if it still holds this epoch. */
  releaseSession(claim: SessionClaim): Promise<void>;
  /**
   * Deletes every claim held by this instance id (what a previous run of this instance left behind:
   * it had no chance to release them); returns how many. Called once at start, before any session.
   */
  releaseInstanceClaims(): Promise<number>;
  sessionHolder(deviceId: string): Promise<SessionClaim | null>;
  /** Every claim made by any instance (LISTEN), including this one's. */
  onSessionClaimed(listener: (claim: SessionClaim) => void): () => void;
  /** After the LISTEN connection came back (notifications may have been missed): re-check what you hold. */
  onResync(listener: () => void): () => void;
  loadDeviceState(deviceId: string): Promise<SharedDeviceState | null>;
  /** First writer wins: returns the offset every instance must use for (device, boot). */
  claimBootOffset(deviceId: string, bootId: number, offsetMs: number): Promise<number>;
  /**
   * Batched upsert; seq/lastAck only move forward: per boot highestSeq = max, offsets first writer wins,
   * firstSeen = min; lastAck = the given one when it is of the stored ACK's boot with a seq >= stored, or
   * of a boot first seen no earlier than the stored ACK's boot (a late flush of an older boot is ignored);
   * descriptorHash goes with an accepted lastAck (or with a state without lastAck); descriptor sets add up.
   */
  saveDeviceStates(states: readonly SharedDeviceState[]): Promise<void>;
  putDescriptors(deviceId: string, hash: number, channels: ChannelDescriptor[]): Promise<void>;
  status(): { database: 'connected' | 'unreachable'; lastError: string | null };
  close(): Promise<void>;
}

/** Options of {@link OpenClusterStore}. */
export interface ClusterStoreOptions {
  databaseUrl: string;
  instanceId: string;
  dataDir: string;
  logger: Logger;
  metrics: Metrics;
  now?: () => number;
  /** How long opening retries an unreachable database before failing with CLUSTER_DB_UNAVAILABLE. Default 30 000. */
  openTimeoutMs?: number;
  /** Largest number of devices (active and revoked) the registry accepts. Default 100 000. */
  maxDevices?: number;
}

/** The signature of `openClusterStore` (./index.ts). */
export type OpenClusterStore = (opts: ClusterStoreOptions) => Promise<ClusterStore>;
