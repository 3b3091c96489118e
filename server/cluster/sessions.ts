/**
 * One session per device across hub instances, and the device state they share
 * (docs/scaling.md "One session per device, shared device state").
 *
 * - **Joining.** In cluster mode a session's HELLO waits (state `joining`) for {@link ClusterSessions.beforeHello}: the session claims the device
 *   (a new epoch from PostgreSQL: newest wins), the device's shared state is loaded and merged into the
 *   ingest (`ingest.adopt`), and the HELLO boot's time offset is claimed (first writer wins), so every
 *   instance maps that boot identically. The three go in ONE statement for a batch of HELLOs
 *   (`store.joinSessions`: collected for up to {@link JOIN_BATCH_WINDOW_MS} or {@link JOIN_BATCH_MAX},
 *   one round trip per batch). Only an unreachable database lets the HELLO go on locally (degraded:
 *   counted, logged once per episode); while it is connected a slow join keeps waiting (counted), up
 *   to {@link joinWaitMaxMs} (from DEVICE_HELLO_TIMEOUT_MS), so a reconnect storm slows joins instead
 *   of dropping the guarantees.
 * - **Newest wins.** Every claim anywhere reaches every instance (`store.onSessionClaimed`): a local
 *   session of that device with a lower epoch ends with REPLACED (4001) at once. A claim that lands
 *   while a session's own claim is pending is remembered and compared when it returns. After the
 *   store's LISTEN connection came back, each local session is checked against `sessionHolder`.
 *   A session that joined without a claim (database unreachable) claims when the database is back,
 *   unless another instance holds the device meanwhile (then it ends REPLACED).
 * - **Write-behind.** Each stored frame's commit notes (device, boot, seq) in a map keyed by device
 *   (`ingest.onDurable`): one entry per device, so it is bounded by the number of devices. Every
 *   {@link WRITE_BEHIND_INTERVAL_MS}, when a session ends and at stop, the map goes to
 *   `store.saveDeviceStates` in one batch: durable positions only (never a queued frame's), with the
 *   boots' offsets, corrections and first sightings. A failed batch goes back into the map (newer
 *   entries win) and is retried next tick; failures are counted and logged once per episode. Descriptor
 *   sets go to `store.putDescriptors` once committed locally.
 * - **Boots with no HELLO anchor.** The first unsynced frame of a boot whose offset nobody knows (an
 *   older boot's replay after a reboot) waits in its session for {@link ClusterSessions.agreeBootOffset}
 *   before it is stored: the offset is claimed first, and the frame is mapped with the one PostgreSQL
 *   answers. So no instance ever stores a frame of that boot under another offset.
 */

import { Counter, Gauge } from 'prom-client';
import type { ErrorCode } from '../errors.ts';
import type { HubEventBus } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { metricsPerRegistry } from '../metrics/per-registry.ts';
import type { ClusterIngest } from '../pipeline/ingest.ts';
import type { SessionCluster } from '../transport/device-session.ts';
import type {
  ClusterStore,
  JoinRequest,
  JoinResult,
  SessionClaim,
  SharedBoot,
  SharedDeviceState,
} from './store/types.ts';

/**
 * How long a HELLO waits for its join before the wait is counted as slow; it goes on locally (degraded)
 * only if the database is unreachable by then, else it keeps waiting, up to {@link joinWaitMaxMs}.
 */
export const JOIN_TIMEOUT_MS = 3000;
/** Share of the device HELLO timeout a HELLO may wait for its join in all (see {@link joinWaitMaxMs}). */
export const JOIN_WAIT_SHARE = 0.8;

/**
 * The generous bound of a HELLO's wait for its join batch while the database is connected: a storm
 * slows joins down instead of dropping the claim and the shared state. Derived from the device HELLO
 * timeout (DEVICE_HELLO_TIMEOUT_MS, `config.devices.helloTimeoutMs`), which is also how long a device
 * waits for WELCOME (firmware-sim `welcomeTimeoutMs`): the join gives up at {@link JOIN_WAIT_SHARE} of
 * it (8 s of the default 10 s), leaving the rest for WELCOME to reach the device, so the device gets an
 * answer rather than giving up and reconnecting into the storm.
 */
export function joinWaitMaxMs(helloTimeoutMs: number): number {
  return Math.floor(helloTimeoutMs * JOIN_WAIT_SHARE);
}
/** Longest a HELLO waits for others to share its join statement. */
export const JOIN_BATCH_WINDOW_MS = 5;
/** Joins per statement; a batch goes at once when this many are waiting. */
export const JOIN_BATCH_MAX = 200;
/** Join statements in flight at once (the pool has 4 connections; the write-behind needs one). */
const JOIN_BATCHES_IN_FLIGHT = 2;
/** Period of the write-behind of shared device state. */
export const WRITE_BEHIND_INTERVAL_MS = 250;
/** Device states per `saveDeviceStates` call; a larger backlog goes in several calls. */
export const WRITE_BEHIND_BATCH = 1000;
/** Claims retried per tick for sessions that joined while the database was unreachable. */
const LATE_CLAIMS_PER_TICK = 100;

/** What the cluster needs of a device session (DeviceSession satisfies it). */
export interface ClusterSessionHandle {
  readonly deviceId: string;
  end(code: ErrorCode, message: string): void;
}

export interface ClusterSessionsOptions {
  store: ClusterStore;
  ingest: ClusterIngest;
  bus: HubEventBus;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
  /**
   * The device HELLO timeout (`config.devices.helloTimeoutMs`): a HELLO's wait for its join ends at
   * {@link joinWaitMaxMs} of it, before the device would give up waiting for WELCOME.
   */
  helloTimeoutMs: number;
  /** First bound of a HELLO's wait (default {@link JOIN_TIMEOUT_MS}), never past {@link joinWaitMaxMs}. */
  joinTimeoutMs?: number;
  /** Default {@link WRITE_BEHIND_INTERVAL_MS}. */
  writeBehindIntervalMs?: number;
  /**
   * Where the positions ACKs cover come from, for the shared last ACK and highest seqs: by default the
   * ingest's durable commits; with ACK_DURABILITY=influx the ACK gate's releases (`onReleased`), so no
   * instance's WELCOME frees a device's outbox of frames InfluxDB has not confirmed.
   */
  acknowledged?: (listener: (deviceId: string, bootId: number, seq: number) => void) => () => void;
}

export interface ClusterSessionsStatus {
  /** Local sessions holding a claim. */
  claimed: number;
  /** Local sessions without a claim (joined while the database was unreachable, or still joining). */
  unclaimed: number;
  /** Devices whose state waits to be written behind. */
  writeBehindPending: number;
  /** The last write-behind batch failed (retried every tick). */
  writeBehindFailing: boolean;
}

/** The cluster side of device sessions: the hooks `DeviceSession` calls in cluster mode, and upkeep. */
export interface ClusterSessions extends SessionCluster {
  status(): ClusterSessionsStatus;
  /** Writes behind everything pending now; resolves when written (or failed: kept for the next try). */
  flush(): Promise<void>;
  /** Stops the timer, writes the rest behind and releases the claims still held (bounded). */
  stop(): Promise<void>;
}

const clusterSessionMetrics = metricsPerRegistry((registers) => ({
  hellos: new Counter({
    name: 'hub_cluster_hellos_total',
    help: 'HELLOs in cluster mode: joined (claimed, shared state merged), degraded (database unreachable, or no answer within 80 % of DEVICE_HELLO_TIMEOUT_MS, 8 s by default: went on locally), replaced (a newer claim elsewhere won while joining).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  slowJoins: new Counter({
    name: 'hub_cluster_slow_joins_total',
    help: 'HELLOs whose join batch had not answered within 3 s while the database was connected: they kept waiting (up to 80 % of DEVICE_HELLO_TIMEOUT_MS) instead of going on locally.',
    registers,
  }),
  joinsWaiting: new Gauge({
    name: 'hub_cluster_joins_waiting',
    help: 'HELLOs waiting for their join batch (queued or in a statement in flight).',
    registers,
  }),
  joinBatches: new Counter({
    name: 'hub_cluster_join_batches_total',
    help: 'Join statements sent (each claims, loads and anchors a batch of HELLOs in one round trip).',
    registers,
  }),
  replaced: new Counter({
    name: 'hub_cluster_sessions_replaced_total',
    help: 'Local device sessions ended with REPLACED because a newer session of the device was claimed (on any instance).',
    registers,
  }),
  claimErrors: new Counter({
    name: 'hub_cluster_claim_errors_total',
    help: 'Session claims, releases and holder checks that failed at the database.',
    labelNames: ['op'] as const,
    registers,
  }),
  bootOffsets: new Counter({
    name: 'hub_cluster_boot_offsets_total',
    help: 'Boot offsets agreed before a frame of a boot with no HELLO anchor was stored: agreed (ours), shared (another instance had set it), degraded (database unreachable: ours, not shared).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  stateWrites: new Counter({
    name: 'hub_cluster_state_writes_total',
    help: 'Device states written behind to the cluster database, by outcome (failed ones are retried).',
    labelNames: ['outcome'] as const,
    registers,
  }),
  statePending: new Gauge({
    name: 'hub_cluster_state_pending',
    help: 'Devices whose shared state waits to be written behind.',
    registers,
  }),
  descriptorWrites: new Counter({
    name: 'hub_cluster_descriptor_writes_total',
    help: 'Descriptor sets written to the cluster database, by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  }),
}));

/** One local session as the cluster sees it. */
interface Rec {
  session: ClusterSessionHandle;
  deviceId: string;
  claim: SessionClaim | null;
  /** A claim request is in flight. */
  claiming: boolean;
  /** Highest epoch announced for the device while this session's claim was pending. */
  seen: number;
  ended: boolean;
  /** Ended (or ending) because a newer session won. */
  replaced: boolean;
}

/** Durable positions of one device since its last write-behind. */
interface Pending {
  lastAck: { bootId: number; seq: number };
  /** bootId → highest durable seq. */
  boots: Map<number, number>;
}

class Timeout extends Error {}

/** A HELLO waiting for its join batch. */
interface Join {
  rec: Rec;
  req: JoinRequest;
  resolve: (r: JoinResult) => void;
  reject: (err: unknown) => void;
}

function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Timeout(`no answer within ${ms} ms`)), ms);
    timer.unref();
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

export function createClusterSessions(opts: ClusterSessionsOptions): ClusterSessions {
  const { store, ingest, bus, logger } = opts;
  const now = opts.now ?? Date.now;
  const joinTimeoutMs = opts.joinTimeoutMs ?? JOIN_TIMEOUT_MS;
  const joinWaitMs = joinWaitMaxMs(opts.helloTimeoutMs);
  const joinFirstWaitMs = Math.min(joinTimeoutMs, joinWaitMs);
  const joinWindowMs = JOIN_BATCH_WINDOW_MS;
  const m = clusterSessionMetrics(opts.metrics);
  const bySession = new Map<ClusterSessionHandle, Rec>();
  /** The newest local session of each device. */
  const byDevice = new Map<string, Rec>();
  /** Sessions that joined without a claim: claimed once the database answers. */
  const unclaimed = new Set<Rec>();
  let pending = new Map<string, Pending>();
  let saving: Promise<void> | null = null;
  let writeFailing = false;
  let degradedEpisode = false;
  let stopped = false;
  const inflight = new Set<Promise<unknown>>();

  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p);
    const forget = () => inflight.delete(p);
    p.then(forget, forget);
    return p;
  };

  function degraded(deviceId: string, why: string, err?: unknown): void {
    m.hellos.inc({ outcome: 'degraded' });
    if (degradedEpisode) return;
    degradedEpisode = true;
    logger.warn(
      { deviceId, reason: why, err },
      'cluster database did not answer a HELLO in time: the session goes on locally (no claim, no shared state; retried when it is back)',
    );
  }

  function replace(rec: Rec, by: SessionClaim | null): void {
    if (rec.replaced || rec.ended) return;
    rec.replaced = true;
    m.replaced.inc();
    logger.debug(
      { deviceId: rec.deviceId, epoch: rec.claim?.epoch ?? null, byEpoch: by?.epoch, byInstance: by?.instanceId },
      'device session replaced by a newer one',
    );
    const where = by ? ` on ${by.instanceId}` : '';
    rec.session.end('REPLACED', `a newer connection of this device${where} replaced this one`);
  }

  function release(claim: SessionClaim): void {
    track(store.releaseSession(claim)).catch((err: unknown) => {
      m.claimErrors.inc({ op: 'release' });
      logger.debug({ err, deviceId: claim.deviceId }, 'session claim not released (it stays until replaced)');
    });
  }

  /** A claim for `rec` landed (whenever it comes, even after the HELLO's wait gave up). */
  function claimLanded(rec: Rec, c: SessionClaim): void {
    rec.claiming = false;
    if (rec.ended) {
      release(c);
      return;
    }
    rec.claim = c;
    unclaimed.delete(rec);
    if (rec.seen > c.epoch) replace(rec, null);
  }

  function claimFailed(rec: Rec): void {
    rec.claiming = false;
    m.claimErrors.inc({ op: 'claim' });
    if (!rec.ended && rec.claim === null) unclaimed.add(rec);
  }

  /** Claims the device for `rec` alone (a late claim); the claim lands in `rec` whenever it comes. */
  function claim(rec: Rec): Promise<SessionClaim> {
    rec.claiming = true;
    const p = track(store.claimSession(rec.deviceId));
    p.then(
      (c) => claimLanded(rec, c),
      () => claimFailed(rec),
    );
    return p;
  }

  // Joins: HELLOs collected for up to JOIN_BATCH_WINDOW_MS (or JOIN_BATCH_MAX of them) go to the
  // database in one statement (`store.joinSessions`), at most JOIN_BATCHES_IN_FLIGHT at once. The
  // queue is bounded by the HELLOs in progress, i.e. by the handshake rate limit and the connection cap.
  const joinQueue: Join[] = [];
  let joinTimer: NodeJS.Timeout | null = null;
  let joinsInFlight = 0;
  let joinsWaiting = 0;

  function scheduleJoins(): void {
    if (joinQueue.length === 0 || joinsInFlight >= JOIN_BATCHES_IN_FLIGHT) return;
    if (joinQueue.length >= JOIN_BATCH_MAX) {
      sendJoins();
      return;
    }
    joinTimer ??= setTimeout(sendJoins, joinWindowMs);
  }

  function sendJoins(): void {
    if (joinTimer !== null) {
      clearTimeout(joinTimer);
      joinTimer = null;
    }
    if (joinsInFlight >= JOIN_BATCHES_IN_FLIGHT) return;
    const batch: Join[] = [];
    while (batch.length < JOIN_BATCH_MAX && joinQueue.length > 0) {
      const j = joinQueue.shift() as Join;
      if (j.rec.ended) j.reject(new Error('the session ended while waiting for its join'));
      else batch.push(j);
    }
    if (batch.length === 0) return;
    joinsInFlight++;
    m.joinBatches.inc();
    for (const j of batch) j.rec.claiming = true;
    track(store.joinSessions(batch.map((j) => j.req)))
      .then(
        (results) => {
          batch.forEach((j, i) => {
            const r = results[i] as JoinResult;
            claimLanded(j.rec, r.claim);
            j.resolve(r);
          });
        },
        (err: unknown) => {
          for (const j of batch) {
            claimFailed(j.rec);
            j.reject(err);
          }
        },
      )
      .finally(() => {
        joinsInFlight--;
        // Those queued meanwhile have waited already: they go at once.
        if (joinQueue.length > 0) sendJoins();
      });
    if (joinQueue.length > 0) scheduleJoins();
  }

  function join(rec: Rec, req: JoinRequest): Promise<JoinResult> {
    // Claiming from the moment it is queued: a claim elsewhere heard while it waits for its batch is
    // older than the one it is about to make (newest wins when it lands), not a reason to end it. Ending
    // it there would let its own claim, made next, end the other instance's session too: none left.
    rec.claiming = true;
    joinsWaiting++;
    m.joinsWaiting.set(joinsWaiting);
    const p = new Promise<JoinResult>((resolve, reject) => {
      joinQueue.push({ rec, req, resolve, reject });
    });
    const done = () => {
      joinsWaiting--;
      m.joinsWaiting.set(joinsWaiting);
    };
    p.then(done, done);
    scheduleJoins();
    return p;
  }

  /**
   * Waits for a join: past `joinTimeoutMs` it keeps waiting (counted) while the database is connected,
   * up to `joinWaitMs` in all; an unreachable database ends the wait (the HELLO goes on locally).
   */
  async function awaitJoin(p: Promise<JoinResult>): Promise<JoinResult> {
    try {
      return await bounded(p, joinFirstWaitMs);
    } catch (err) {
      if (!(err instanceof Timeout) || store.status().database !== 'connected') throw err;
      m.slowJoins.inc();
      return bounded(p, joinWaitMs - joinFirstWaitMs);
    }
  }

  /** A session that joined without a claim, now that the database answers. */
  async function lateClaim(rec: Rec): Promise<void> {
    rec.claiming = true;
    let holder: SessionClaim | null;
    try {
      holder = await track(store.sessionHolder(rec.deviceId));
    } catch {
      rec.claiming = false;
      m.claimErrors.inc({ op: 'holder' });
      return;
    }
    rec.claiming = false;
    if (rec.ended || rec.claim !== null) return;
    // Another instance claimed the device while this one could not: that session is the one that
    // went through the protocol's newest-wins, this one ends.
    if (holder && holder.instanceId !== store.instanceId) {
      unclaimed.delete(rec);
      replace(rec, holder);
      return;
    }
    await claim(rec).catch(() => undefined);
  }

  const offClaimed = store.onSessionClaimed((c) => {
    const rec = byDevice.get(c.deviceId);
    if (!rec || rec.ended) return;
    if (rec.claim !== null) {
      if (c.epoch > rec.claim.epoch) replace(rec, c);
    } else if (rec.claiming) {
      if (c.epoch > rec.seen) rec.seen = c.epoch;
    } else if (c.instanceId !== store.instanceId) replace(rec, c);
  });

  const offResync = store.onResync(() => {
    for (const rec of [...byDevice.values()]) {
      if (rec.ended) continue;
      const held = rec.claim;
      if (held === null) {
        if (!rec.claiming) void lateClaim(rec);
        continue;
      }
      track(store.sessionHolder(rec.deviceId)).then(
        (h) => {
          if (h && h.epoch > held.epoch && rec.claim === held) replace(rec, h);
        },
        () => m.claimErrors.inc({ op: 'holder' }),
      );
    }
  });

  const acknowledged = opts.acknowledged ?? ((l) => ingest.onDurable(l));
  const offDurable = acknowledged((deviceId, bootId, seq) => {
    const p = pending.get(deviceId);
    if (p === undefined) {
      pending.set(deviceId, { lastAck: { bootId, seq }, boots: new Map([[bootId, seq]]) });
      return;
    }
    p.lastAck.bootId = bootId;
    p.lastAck.seq = seq;
    const h = p.boots.get(bootId);
    if (h === undefined || seq > h) p.boots.set(bootId, seq);
  });

  const onDescriptors = (deviceId: string) => {
    const hash = ingest.deviceState(deviceId)?.record.descriptorHash ?? 0;
    const channels = ingest.currentChannels(deviceId);
    if (hash === 0 || !channels) return;
    track(store.putDescriptors(deviceId, hash, channels)).then(
      () => m.descriptorWrites.inc({ outcome: 'written' }),
      (err: unknown) => {
        // Self-healing: an instance that does not know the set says so in WELCOME and the device
        // sends it again [PROTO-3.3].
        m.descriptorWrites.inc({ outcome: 'failed' });
        logger.debug({ err, deviceId }, 'descriptor set not written to the cluster database');
      },
    );
  };
  bus.on('device:descriptors', onDescriptors);

  function toShared(deviceId: string, p: Pending): SharedDeviceState {
    const view = ingest.deviceState(deviceId);
    const boots: SharedBoot[] = [];
    for (const [bootId, highestSeq] of p.boots) {
      const b = view?.boots.get(bootId);
      boots.push({
        bootId,
        highestSeq,
        timeOffsetMs: b?.timeOffsetMs ?? null,
        clockCorrectionMs: b?.clockCorrectionMs ?? null,
        firstSeenMs: b?.firstSeenMs ?? now(),
      });
    }
    return {
      deviceId,
      lastAck: { bootId: p.lastAck.bootId, seq: p.lastAck.seq },
      firstSeenMs: view?.record.firstSeenMs ?? now(),
      descriptorHash: view?.record.descriptorHash ?? 0,
      boots,
      descriptors: [],
    };
  }

  /** Puts a batch that failed back, under what was noted since (newer positions win). */
  function restore(batch: Map<string, Pending>): void {
    for (const [deviceId, old] of batch) {
      const cur = pending.get(deviceId);
      if (!cur) {
        pending.set(deviceId, old);
        continue;
      }
      for (const [bootId, seq] of old.boots) {
        const h = cur.boots.get(bootId);
        if (h === undefined || seq > h) cur.boots.set(bootId, seq);
      }
    }
  }

  async function writeBehind(): Promise<void> {
    while (pending.size > 0) {
      let batch = pending;
      if (batch.size > WRITE_BEHIND_BATCH) {
        batch = new Map();
        for (const [id, p] of pending) {
          batch.set(id, p);
          pending.delete(id);
          if (batch.size >= WRITE_BEHIND_BATCH) break;
        }
      } else pending = new Map();
      const states = [...batch].map(([id, p]) => toShared(id, p));
      try {
        await track(store.saveDeviceStates(states));
      } catch (err) {
        restore(batch);
        m.stateWrites.inc({ outcome: 'failed' }, states.length);
        if (!writeFailing) {
          writeFailing = true;
          logger.warn(
            { err, devices: states.length },
            'shared device state not written to the cluster database (kept, retried every tick): another instance taking a device over meanwhile reports an older last ACK and the device replays a little more',
          );
        }
        return;
      }
      m.stateWrites.inc({ outcome: 'written' }, states.length);
      if (writeFailing) {
        writeFailing = false;
        logger.info({ devices: states.length }, 'shared device state written to the cluster database again');
      }
    }
  }

  function flush(): Promise<void> {
    if (saving) return saving.then(() => (pending.size > 0 && !writeFailing ? flush() : undefined));
    if (pending.size === 0) return Promise.resolve();
    saving = writeBehind().finally(() => {
      saving = null;
      m.statePending.set(pending.size);
    });
    return saving;
  }

  const timer = setInterval(() => {
    m.statePending.set(pending.size);
    if (store.status().database !== 'connected') return;
    degradedEpisode = false;
    void flush();
    let n = 0;
    for (const rec of unclaimed) {
      if (n++ >= LATE_CLAIMS_PER_TICK) break;
      if (rec.ended || rec.claim !== null) {
        unclaimed.delete(rec);
        continue;
      }
      if (!rec.claiming) void lateClaim(rec);
    }
  }, opts.writeBehindIntervalMs ?? WRITE_BEHIND_INTERVAL_MS);
  timer.unref();

  return {
    async beforeHello(session, hello, atMs) {
      const deviceId = session.deviceId;
      const rec: Rec = { session, deviceId, claim: null, claiming: false, seen: 0, ended: false, replaced: false };
      bySession.set(session, rec);
      byDevice.set(deviceId, rec);
      if (stopped || store.status().database !== 'connected') {
        unclaimed.add(rec);
        degraded(deviceId, stopped ? 'stopping' : 'unreachable');
        return null;
      }
      const proposal = ingest.deviceState(deviceId)?.boots.get(hello.bootId)?.timeOffsetMs ?? atMs - hello.uptimeMs;
      let shared: SharedDeviceState | null;
      let offset: number;
      try {
        ({ state: shared, bootOffsetMs: offset } = await awaitJoin(
          join(rec, { deviceId, bootId: hello.bootId, offsetMs: proposal }),
        ));
      } catch (err) {
        if (rec.ended) return null;
        if (rec.claim === null && !rec.claiming) unclaimed.add(rec);
        degraded(deviceId, err instanceof Timeout ? 'timeout' : 'error', err instanceof Timeout ? undefined : err);
        return null;
      }
      if (rec.ended || rec.replaced) {
        if (rec.replaced) m.hellos.inc({ outcome: 'replaced' });
        return null;
      }
      if (shared) ingest.adopt(deviceId, shared);
      m.hellos.inc({ outcome: 'joined' });
      return offset;
    },

    seedBootOffset(deviceId, bootId, offsetMs) {
      ingest.seedBootOffset(deviceId, bootId, offsetMs);
    },

    unanchoredBootOffset(deviceId, scan, receivedAtMs) {
      return ingest.unanchoredBootOffset(deviceId, scan, receivedAtMs);
    },

    async agreeBootOffset(deviceId, bootId, offsetMs) {
      if (store.status().database !== 'connected') {
        m.bootOffsets.inc({ outcome: 'degraded' });
        return offsetMs;
      }
      try {
        const agreed = await bounded(track(store.claimBootOffset(deviceId, bootId, offsetMs)), joinTimeoutMs);
        m.bootOffsets.inc({ outcome: agreed === offsetMs ? 'agreed' : 'shared' });
        return agreed;
      } catch (err) {
        m.bootOffsets.inc({ outcome: 'degraded' });
        logger.warn(
          { err, deviceId, bootId },
          'boot offset not agreed with the cluster database: this instance uses its own',
        );
        return offsetMs;
      }
    },

    ended(session) {
      const rec = bySession.get(session);
      if (!rec) return;
      bySession.delete(session);
      rec.ended = true;
      unclaimed.delete(rec);
      if (byDevice.get(rec.deviceId) === rec) byDevice.delete(rec.deviceId);
      if (rec.claim) release(rec.claim);
      if (!stopped && pending.has(rec.deviceId)) void flush();
    },

    status() {
      let claimed = 0;
      for (const rec of bySession.values()) if (rec.claim !== null) claimed++;
      return {
        claimed,
        unclaimed: bySession.size - claimed,
        writeBehindPending: pending.size,
        writeBehindFailing: writeFailing,
      };
    },

    flush,

    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (joinTimer !== null) clearTimeout(joinTimer);
      joinTimer = null;
      for (const j of joinQueue.splice(0)) j.reject(new Error('the hub is stopping'));
      offClaimed();
      offResync();
      offDurable();
      bus.off('device:descriptors', onDescriptors);
      for (const rec of bySession.values()) {
        rec.ended = true;
        if (rec.claim) release(rec.claim);
      }
      bySession.clear();
      byDevice.clear();
      unclaimed.clear();
      const done = (async () => {
        await flush();
        await Promise.allSettled([...inflight]);
      })();
      await bounded(done, joinTimeoutMs).catch(() => {
        logger.warn({ pending: pending.size }, 'cluster database did not take the last device states in time');
      });
      m.statePending.set(pending.size);
    },
  };
}
