/**
 * Live events and presence across hub instances, over the broker (docs/scaling.md
 * "Live view and commands across instances"). Each instance:
 *
 * - announces its interest, retained, on `<prefix>/cluster/v1/interest/<instanceId>`: `live` while it
 *   has live clients (the page), `presence` while its offline alert rule needs to know where devices
 *   are. `gen` changes with every announcement, so publishers send descriptor sets again.
 * - publishes its local live events on `<prefix>/cluster/v1/events/<instanceId>` in binary batches
 *   (relay-codec.ts), QoS 0, one batch at most every `flushMs` (or as soon as one is full): accepted
 *   frames (raw, with what decoding them needs) only while another instance is `live`; presence,
 *   descriptor sets, command updates and alerts while another instance is `live` or `presence`.
 *   With no interest anywhere nothing listens on the ingest path at all: a frame costs nothing here.
 *   Bounded: at most `maxPendingBytes` of sealed batches wait (while the hub's MQTT queue has a
 *   backlog); beyond that, and while the broker is unreachable, batches are dropped, counted
 *   (`hub_cluster_relay_batches_total{direction="out",outcome}`) and logged (rate-limited).
 * - receives the others' batches and feeds them to its bus as `remote:*` events (events.ts): the
 *   live view and the offline alert rule take them; local-only consumers never see them.
 * - answers RPC requests (MQTT 5 request/response) on `<prefix>/cluster/v1/rpc/<instanceId>`: a
 *   presence snapshot here; commands are added by remote-commands.ts. Replies go to the asker's
 *   `responseTopic` with its `correlationData`.
 *
 * Presence of remote devices: a table device → holding instance, from ONLINE/OFFLINE records and
 * snapshots (asked when this instance joins, when its broker link comes back, when its interest
 * rises, when a member appears, and when a frame comes from an instance the table does not name). A
 * member that leaves (membership: its last will) has its devices reported offline (`instance_lost`)
 * unless another instance announced them meanwhile. While this instance's own broker link is down its
 * remote devices are reported `remote:unknown` (the page shows them stale).
 */
import { randomBytes } from 'node:crypto';
import { Counter, Gauge } from 'prom-client';
import { type ChannelDescriptor, decodeFrame, descriptorHash, encodeFrame } from '../codec/index.ts';
import { peekDescriptorHash } from '../codec/telemetry-scan.ts';
import { ERRORS, type ErrorCode, HubError } from '../errors.ts';
import type { AcceptedFrame, HubEventBus, HubEvents, RemotePresence } from '../events.ts';
import type { Logger } from '../log/index.ts';
import { createLogLimiter } from '../log/rate-limit.ts';
import type { Metrics } from '../metrics/index.ts';
import { metricsPerRegistry } from '../metrics/per-registry.ts';
import type { HubMqttClient, ResponseProperties } from '../mqtt/client.ts';
import { AcceptedTelemetry } from '../pipeline/ingest.ts';
import { BatchWriter, decodeBatch, type RelayRecord } from './relay-codec.ts';

/** What the relay needs from membership (server/cluster/membership.ts): the live members. */
export interface MemberSource {
  /** Live members' instance ids (this one included). */
  members(): readonly string[];
  onChange(listener: (change: { readonly restarted: readonly string[] }) => void): () => void;
}

export interface RelayOptions {
  instanceId: string;
  /** MQTT_TOPIC_PREFIX. */
  topicPrefix: string;
  client: HubMqttClient;
  bus: HubEventBus;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
  /** A device's current descriptor set (the ingest's): sent before its first relayed frame. */
  channelsOf(deviceId: string): ChannelDescriptor[] | undefined;
  /** Whether a device has a ready local session (presence snapshots list only those). */
  isLocalOnline(deviceId: string): boolean;
  /** Live members; without it every instance that announced interest counts as a member, none is lost. */
  members?: MemberSource | null;
  /** This instance's offline alert rule needs cluster presence (ALERT_OFFLINE_AFTER_SEC > 0). */
  needsPresence: boolean;
  /** Longest wait of an event before its batch is published (ms). Default 50. */
  flushMs?: number;
  /** Bytes per batch at most (the hub's MQTT client takes messages up to 16 KiB). Default 15 KiB. */
  maxBatchBytes?: number;
  /** Sealed batches waiting for the MQTT client at most (bytes); beyond it they are dropped. Default 1 MiB. */
  maxPendingBytes?: number;
  /** A device's descriptor set is sent again at least this often while its frames are relayed (ms). Default 60 s. */
  descriptorRefreshMs?: number;
  /** RPC answer wait (ms). Default 5000. */
  rpcTimeoutMs?: number;
}

export type RpcHandler = (params: unknown, from: string | null) => Promise<unknown> | unknown;

export interface RelayStats {
  batchesPublished: number;
  recordsPublished: number;
  batchesReceived: number;
  remoteLive: boolean;
  remotePresence: boolean;
}

export interface Relay {
  readonly instanceId: string;
  start(): void;
  /** Clears this instance's interest and stops (call before the MQTT client stops). */
  stop(): Promise<void>;
  /** This instance has live clients (the live view says so through the bus `live:watching`). */
  setLocalLive(live: boolean): void;
  /** Calls `method` on another instance (MQTT 5 request/response). Throws HubError (CLUSTER_RPC_TIMEOUT, or the remote's code). */
  call(instanceId: string, method: string, params: unknown, timeoutMs?: number): Promise<unknown>;
  /** Serves `method` for other instances. */
  handle(method: string, handler: RpcHandler): void;
  /** The instance holding a device's session as relayed presence says (null: none known, or this one). */
  holderOf(deviceId: string): string | null;
  /** Whether relayed presence shows the device online on another live instance. */
  onlineElsewhere(deviceId: string): boolean;
  /** Instances known alive (members, or announced interest), this one excluded. */
  peers(): string[];
  stats(): RelayStats;
  /** For `/readyz` `checks.cluster.relay`. */
  status(): Record<string, unknown>;
}

const relayMetrics = metricsPerRegistry((registers) => ({
  batches: new Counter({
    name: 'hub_cluster_relay_batches_total',
    help: 'Relay batches between instances, by direction (out, in) and outcome: out sent, dropped_overflow (the bounded buffer was full), dropped_disconnected (broker unreachable); in applied, ignored (no local interest), malformed, lost (sequence gaps).',
    labelNames: ['direction', 'outcome'] as const,
    registers,
  }),
  records: new Counter({
    name: 'hub_cluster_relay_records_total',
    help: 'Live events relayed between instances, by direction (out, in) and kind (frame, descriptors, online, offline, command, alert); out counts records written into a batch.',
    labelNames: ['direction', 'kind'] as const,
    registers,
  }),
  dropped: new Counter({
    name: 'hub_cluster_relay_dropped_total',
    help: 'Relayed events not shown, by reason: overflow and disconnected (sender side, records of dropped batches), unknown_descriptors (receiver: a frame whose descriptor set it has not received yet), not_relayable (a frame not from the ingest).',
    labelNames: ['reason'] as const,
    registers,
  }),
  interest: new Gauge({
    name: 'hub_cluster_relay_remote_interest',
    help: "Other instances interested in this instance's live events, by kind (live: they have live clients; presence: their offline alert rule).",
    labelNames: ['kind'] as const,
    registers,
  }),
  rpc: new Counter({
    name: 'hub_cluster_rpc_total',
    help: 'RPC between instances, by side (client, server), method and outcome (ok, error, timeout).',
    labelNames: ['side', 'method', 'outcome'] as const,
    registers,
  }),
}));

interface Interest {
  live: boolean;
  presence: boolean;
  gen: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
  method: string;
}

interface LocalOnline {
  firmwareVersion: string;
  bootId: number;
  timeSynced: boolean;
  atMs: number;
}

/** A presence snapshot (RPC `presence`). */
export interface PresenceSnapshot {
  devices: (LocalOnline & { deviceId: string; channels: ChannelDescriptor[] | null })[];
}

/** Pending RPCs at most; beyond it calls fail at once. */
const MAX_PENDING_RPC = 1000;
/** Descriptor sets kept per remote device (a device switching between sets finds the old one). */
const SETS_PER_DEVICE = 4;
/** A frame from an instance the presence table does not name asks it for a snapshot at most this often. */
const RESYNC_EVERY_MS = 5000;

export function createRelay(opts: RelayOptions): Relay {
  const { instanceId, client, bus } = opts;
  const now = opts.now ?? Date.now;
  const logger = opts.logger.child({ component: 'cluster-relay' });
  const metrics = relayMetrics(opts.metrics);
  const limiter = createLogLimiter({ logger });
  const flushMs = opts.flushMs ?? 50;
  const maxBatchBytes = opts.maxBatchBytes ?? 15 * 1024;
  const maxPendingBytes = opts.maxPendingBytes ?? 1024 * 1024;
  const refreshMs = opts.descriptorRefreshMs ?? 60_000;
  const rpcTimeoutMs = opts.rpcTimeoutMs ?? 5000;
  const base = `${opts.topicPrefix}/cluster/v1`;
  const eventsTopic = `${base}/events/${instanceId}`;
  const interestTopic = `${base}/interest/${instanceId}`;
  const rpcTopic = `${base}/rpc/${instanceId}`;
  const replyTopic = `${base}/rpc-reply/${instanceId}`;

  // ── local interest ──
  let localLive = false;
  let gen = 0;
  const localInterest = (): Interest => ({ live: localLive, presence: opts.needsPresence, gen });

  // ── remote interest and members ──
  const remoteInterest = new Map<string, Interest>();
  /** Instances known alive (from membership, else from interest records and batches). */
  let alive = new Set<string>();
  let remoteLive = false;
  let remotePresence = false;

  // ── publisher ──
  const writer = new BatchWriter(maxBatchBytes);
  let batchOpen = false;
  let seq = 0;
  let timer: NodeJS.Timeout | null = null;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let pendingRecords: number[] = [];
  /** Per device: the descriptor hash last sent, when, and under which interest generation. */
  const descSent = new Map<string, { hash: number; atMs: number }>();
  const encodedSets = new WeakMap<ChannelDescriptor[], Uint8Array>();
  const stats = { batchesPublished: 0, recordsPublished: 0, batchesReceived: 0 };

  // ── receiver ──
  const remoteSets = new Map<string, Map<number, ChannelDescriptor[]>>();
  const table = new Map<string, RemotePresence>();
  const expectedSeq = new Map<string, number>();
  const resyncAt = new Map<string, number>();
  const localOnline = new Map<string, LocalOnline>();

  // ── RPC ──
  const handlers = new Map<string, RpcHandler>();
  const calls = new Map<string, Pending>();
  let callCounter = 0;
  const callPrefix = randomBytes(4);

  let started = false;
  let connected = false;
  let linkTimer: NodeJS.Timeout | null = null;
  let unsubscribeMembers: (() => void) | null = null;

  // ────────────────────────── publisher ──────────────────────────

  function open(): void {
    if (batchOpen) return;
    writer.begin(instanceId, ++seq >>> 0);
    batchOpen = true;
    if (timer === null) {
      timer = setTimeout(flush, flushMs);
      timer.unref();
    }
  }

  /** Records written since the last seal, by kind: added to the counter once per batch (hot path). */
  const written: Record<string, number> = {};
  let framesWritten = 0;

  /** Writes a record, sealing the batch first when it is full. */
  function write(kind: string, add: (w: BatchWriter) => boolean): void {
    open();
    if (!add(writer)) {
      seal();
      open();
      if (!add(writer)) {
        metrics.dropped.inc({ reason: 'overflow' });
        return;
      }
    }
    written[kind] = (written[kind] ?? 0) + 1;
  }

  function countWritten(): void {
    if (framesWritten > 0) metrics.records.inc({ direction: 'out', kind: 'frame' }, framesWritten);
    framesWritten = 0;
    for (const kind in written) {
      metrics.records.inc({ direction: 'out', kind }, written[kind] as number);
      delete written[kind];
    }
  }

  function seal(): void {
    if (!batchOpen) return;
    batchOpen = false;
    countWritten();
    if (writer.records === 0) return;
    const records = writer.records;
    const buf = writer.take();
    if (pendingBytes + buf.length > maxPendingBytes) {
      dropBatch('dropped_overflow', 'overflow', records);
      return;
    }
    pending.push(buf);
    pendingRecords.push(records);
    pendingBytes += buf.length;
    pump();
  }

  function dropBatch(outcome: string, reason: string, records: number): void {
    metrics.batches.inc({ direction: 'out', outcome });
    metrics.dropped.inc({ reason }, records);
    limiter.hit('relay-drop', reason, {
      level: 'warn',
      msg:
        reason === 'overflow'
          ? 'cluster relay buffer full: live events for other instances dropped'
          : 'broker unreachable: live events for other instances dropped',
      fields: { code: 'CLUSTER_RELAY_DROPPED', reason, maxPendingBytes },
      sums: { records },
    });
  }

  /** Publishes the sealed batches while the MQTT client has no backlog; drops them while it is down. */
  function pump(): void {
    if (pending.length === 0) return;
    if (!client.isConnected()) {
      for (const r of pendingRecords) dropBatch('dropped_disconnected', 'disconnected', r);
      pending = [];
      pendingRecords = [];
      pendingBytes = 0;
      return;
    }
    let i = 0;
    // QoS 0 shares the client's bounded queue with device downlinks: never add to a backlog there.
    while (i < pending.length && client.status().queued === 0) {
      const buf = pending[i] as Buffer;
      client.publish(eventsTopic, buf, { qos: 0 });
      metrics.batches.inc({ direction: 'out', outcome: 'sent' });
      stats.batchesPublished++;
      stats.recordsPublished += pendingRecords[i] as number;
      pendingBytes -= buf.length;
      i++;
    }
    if (i > 0) {
      pending = pending.slice(i);
      pendingRecords = pendingRecords.slice(i);
    }
    if (pending.length > 0 && timer === null) {
      timer = setTimeout(flush, flushMs);
      timer.unref();
    }
  }

  function flush(): void {
    timer = null;
    seal();
    pump();
  }

  function sendDescriptors(deviceId: string, channels: ChannelDescriptor[], hash: number, atMs: number): void {
    let bytes = encodedSets.get(channels);
    if (bytes === undefined) {
      bytes = encodeFrame({ type: 'descriptors', channels });
      encodedSets.set(channels, bytes);
    }
    const frame = bytes;
    write('descriptors', (w) => w.addDescriptors(deviceId, frame));
    descSent.set(deviceId, { hash, atMs });
  }

  /** Per accepted frame while another instance is live: a few writes into the open batch. */
  const onAccepted = (deviceId: string, f: AcceptedFrame): void => {
    if (!(f instanceof AcceptedTelemetry)) {
      metrics.dropped.inc({ reason: 'not_relayable' });
      return;
    }
    const hash = peekDescriptorHash(f.frame);
    const sent = descSent.get(deviceId);
    if (sent === undefined || sent.hash !== hash || f.receivedAtMs - sent.atMs >= refreshMs) {
      sendDescriptors(deviceId, f.channels, hash, f.receivedAtMs);
    }
    // Inline (no closure per frame): the common case writes into the open batch.
    open();
    if (!writer.addFrame(deviceId, f.receivedAtMs, f.timeOffsetMs, f.samples, f.frame)) {
      seal();
      open();
      if (!writer.addFrame(deviceId, f.receivedAtMs, f.timeOffsetMs, f.samples, f.frame)) return;
    }
    framesWritten++;
  };

  const localListeners: { [K in keyof HubEvents]?: (...args: HubEvents[K]) => void } = {
    // The live view's first client arrived, or its last one left.
    'live:watching': (watching) => relay.setLocalLive(watching),
    'device:online': (info) => {
      localOnline.set(info.deviceId, {
        firmwareVersion: info.firmwareVersion,
        bootId: info.bootId,
        timeSynced: info.timeSynced,
        atMs: info.atMs,
      });
      if (!remotePresence) return;
      write('online', (w) => w.addOnline(info.deviceId, info.atMs, info.bootId, info.timeSynced, info.firmwareVersion));
    },
    'device:offline': (info) => {
      // A session replaced by a newer local one: the newer one's online stands.
      if (!opts.isLocalOnline(info.deviceId)) localOnline.delete(info.deviceId);
      if (!remotePresence) return;
      write('offline', (w) => w.addOffline(info.deviceId, info.atMs, info.reason));
    },
    'device:descriptors': (deviceId) => {
      if (!remotePresence) return;
      const channels = opts.channelsOf(deviceId);
      if (channels) sendDescriptors(deviceId, channels, descriptorHash(channels), now());
    },
    'command:update': (u) => {
      if (remotePresence) write('command', (w) => w.addCommand(u));
    },
    alert: (event) => {
      // Alerts adopted from another instance carry `instance`: never sent back.
      if (remotePresence && event.instance === undefined) write('alert', (w) => w.addAlert(JSON.stringify(event)));
    },
  };

  let acceptedAttached = false;
  function recomputeInterest(): void {
    let live = 0;
    let presence = 0;
    for (const [id, i] of remoteInterest) {
      if (!alive.has(id)) continue;
      if (i.live) live++;
      if (i.live || i.presence) presence++;
    }
    metrics.interest.set({ kind: 'live' }, live);
    metrics.interest.set({ kind: 'presence' }, presence);
    remoteLive = live > 0;
    remotePresence = presence > 0;
    // The ingest path pays for the relay only while someone elsewhere watches live.
    if (remoteLive && !acceptedAttached && started) {
      bus.on('readings:accepted', onAccepted);
      acceptedAttached = true;
    } else if ((!remoteLive || !started) && acceptedAttached) {
      bus.off('readings:accepted', onAccepted);
      acceptedAttached = false;
    }
  }

  function publishInterest(): void {
    gen++;
    client.publish(interestTopic, JSON.stringify(localInterest()), { qos: 1, retain: true });
  }

  // ────────────────────────── receiver ──────────────────────────

  function onInterest(topic: string, payload: Buffer): void {
    const from = topic.slice(`${base}/interest/`.length);
    if (from === instanceId || from.length === 0) return;
    if (payload.length === 0) {
      remoteInterest.delete(from);
      recomputeInterest();
      return;
    }
    let parsed: Interest;
    try {
      const v = JSON.parse(payload.toString('utf8')) as Partial<Interest>;
      parsed = { live: v.live === true, presence: v.presence === true, gen: Number(v.gen) || 0 };
    } catch {
      logger.warn({ from }, 'cluster relay: unreadable interest record ignored');
      return;
    }
    const before = remoteInterest.get(from);
    remoteInterest.set(from, parsed);
    // A new announcement: that instance may have missed descriptor sets; send them again.
    if (before?.gen !== parsed.gen) descSent.clear();
    if (!opts.members && !alive.has(from)) {
      alive.add(from);
      resync(from);
    }
    recomputeInterest();
  }

  function wantsEvents(): boolean {
    return localLive || opts.needsPresence;
  }

  function onEvents(topic: string, payload: Buffer): void {
    const from = topic.slice(`${base}/events/`.length);
    if (from === instanceId) return;
    if (!wantsEvents()) {
      metrics.batches.inc({ direction: 'in', outcome: 'ignored' });
      return;
    }
    let batch: ReturnType<typeof decodeBatch>;
    try {
      batch = decodeBatch(payload);
      if (batch.instanceId !== from) throw new Error(`batch of ${batch.instanceId} on the topic of ${from}`);
    } catch (err) {
      metrics.batches.inc({ direction: 'in', outcome: 'malformed' });
      limiter.hit('relay-malformed', from, {
        level: 'warn',
        msg: 'cluster relay: malformed batch dropped',
        fields: { code: 'CLUSTER_RELAY_DROPPED', from, cause: (err as Error).message },
      });
      return;
    }
    const expected = expectedSeq.get(from);
    if (expected !== undefined && batch.seq > expected) {
      metrics.batches.inc({ direction: 'in', outcome: 'lost' }, batch.seq - expected);
    }
    expectedSeq.set(from, (batch.seq + 1) >>> 0);
    metrics.batches.inc({ direction: 'in', outcome: 'applied' });
    stats.batchesReceived++;
    if (!opts.members && !alive.has(from)) {
      alive.add(from);
      recomputeInterest();
    }
    for (const r of batch.records) {
      try {
        apply(from, r);
      } catch (err) {
        logger.error({ err, from, kind: r.kind }, 'cluster relay: applying a record failed');
      }
    }
  }

  function apply(from: string, r: RelayRecord): void {
    metrics.records.inc({ direction: 'in', kind: r.kind });
    switch (r.kind) {
      case 'frame': {
        if (!localLive) return;
        const channels = remoteSets.get(r.deviceId)?.get(peekDescriptorHash(r.frame));
        if (table.get(r.deviceId)?.instanceId !== from) resync(from, true);
        if (channels === undefined) {
          // Its DESCRIPTORS record was lost (QoS 0) or sent before this instance listened: the
          // sender's snapshot carries every held device's set.
          metrics.dropped.inc({ reason: 'unknown_descriptors' });
          resync(from, true);
          return;
        }
        const frame = new AcceptedTelemetry(r.deviceId, r.frame, channels, r.timeOffsetMs, r.receivedAtMs, r.samples);
        bus.emit('remote:accepted', r.deviceId, frame);
        return;
      }
      case 'descriptors': {
        const m = decodeFrame(r.frame);
        if (m.type !== 'descriptors') return;
        learnSet(r.deviceId, m.channels, true);
        return;
      }
      case 'online':
        online({
          deviceId: r.deviceId,
          firmwareVersion: r.firmwareVersion,
          bootId: r.bootId,
          timeSynced: r.timeSynced,
          atMs: r.atMs,
          instanceId: from,
        });
        return;
      case 'offline':
        offline(r.deviceId, from, r.reason, r.atMs);
        return;
      case 'command':
        bus.emit('remote:command', r.update, from);
        return;
      case 'alert': {
        const event = JSON.parse(r.json) as HubEvents['alert'][0];
        if (typeof event?.rule !== 'string' || typeof event.device !== 'string' || typeof event.seq !== 'number') {
          return;
        }
        bus.emit('remote:alert', event, from);
        return;
      }
    }
  }

  function learnSet(deviceId: string, channels: ChannelDescriptor[], announce: boolean): void {
    const hash = descriptorHash(channels);
    let sets = remoteSets.get(deviceId);
    if (sets === undefined) {
      sets = new Map();
      remoteSets.set(deviceId, sets);
    }
    const known = sets.has(hash);
    sets.delete(hash);
    sets.set(hash, channels);
    if (sets.size > SETS_PER_DEVICE) sets.delete(sets.keys().next().value as number);
    if (!known && announce) {
      bus.emit(
        'remote:descriptors',
        deviceId,
        channels.map((c) => ({ key: c.key, unit: c.unit, periodMs: c.periodMs })),
      );
    }
  }

  function online(info: RemotePresence): void {
    table.set(info.deviceId, info);
    bus.emit('remote:online', info);
  }

  function offline(deviceId: string, from: string, reason: string, atMs: number): void {
    if (table.get(deviceId)?.instanceId === from) table.delete(deviceId);
    bus.emit('remote:offline', { deviceId, reason, atMs, instanceId: from });
  }

  /** Asks `from` for its presence snapshot (at most every RESYNC_EVERY_MS when `limited`). */
  function resync(from: string, limited = false): void {
    if (!started || !wantsEvents()) return;
    const t = now();
    if (limited && t - (resyncAt.get(from) ?? Number.NEGATIVE_INFINITY) < RESYNC_EVERY_MS) return;
    resyncAt.set(from, t);
    call(from, 'presence', {})
      .then((answer) => applySnapshot(from, answer as PresenceSnapshot))
      .catch((err: unknown) => {
        logger.warn(
          { code: (err as HubError).code ?? 'INTERNAL', instance: from },
          'cluster relay: presence snapshot not received; remote devices of that instance may show an old state',
        );
      });
  }

  function applySnapshot(from: string, snap: PresenceSnapshot): void {
    if (!Array.isArray(snap?.devices)) return;
    const listed = new Set<string>();
    for (const d of snap.devices) {
      if (typeof d?.deviceId !== 'string') continue;
      listed.add(d.deviceId);
      if (Array.isArray(d.channels)) learnSet(d.deviceId, d.channels, true);
      const held = table.get(d.deviceId);
      if (held?.instanceId === from && held.bootId === d.bootId && held.atMs === d.atMs) continue;
      online({
        deviceId: d.deviceId,
        firmwareVersion: String(d.firmwareVersion),
        bootId: Number(d.bootId),
        timeSynced: d.timeSynced === true,
        atMs: Number(d.atMs),
        instanceId: from,
      });
    }
    for (const [id, p] of table) {
      if (p.instanceId === from && !listed.has(id)) offline(id, from, 'disconnected', now());
    }
  }

  function memberLost(id: string): void {
    remoteInterest.delete(id);
    expectedSeq.delete(id);
    const t = now();
    for (const [deviceId, p] of table) {
      if (p.instanceId === id) offline(deviceId, id, 'instance_lost', t);
    }
    bus.emit('remote:lost', id, t);
    logger.warn({ instance: id }, 'cluster member left: its devices are shown offline until they reconnect elsewhere');
  }

  function onMembers(change?: { readonly restarted: readonly string[] }): void {
    const members = opts.members;
    if (!members) return;
    const next = new Set(members.members());
    next.delete(instanceId);
    const before = alive;
    alive = next;
    for (const id of before) if (!next.has(id)) memberLost(id);
    // A new member, or one that restarted (its sessions are new): what does it hold now?
    for (const id of next) if (!before.has(id) || change?.restarted.includes(id)) resync(id);
    recomputeInterest();
  }

  /** Polls the broker link: while down, remote devices are unknown (this instance cannot hear them). */
  function checkLink(): void {
    const up = client.isConnected();
    if (up === connected) return;
    connected = up;
    if (up) return; // the connect hook resyncs
    const t = now();
    for (const p of table.values())
      bus.emit('remote:unknown', { deviceId: p.deviceId, atMs: t, instanceId: p.instanceId });
  }

  // ────────────────────────── RPC ──────────────────────────

  function onReply(_topic: string, payload: Buffer, props?: ResponseProperties): void {
    const id = props?.correlationData?.toString('hex');
    if (id === undefined) return;
    const p = calls.get(id);
    if (!p) return; // late (timed out) or not ours
    calls.delete(id);
    clearTimeout(p.timer);
    let answer: { ok?: boolean; result?: unknown; error?: { code?: string; message?: string } };
    try {
      answer = JSON.parse(payload.toString('utf8'));
    } catch {
      metrics.rpc.inc({ side: 'client', method: p.method, outcome: 'error' });
      p.reject(new HubError('INTERNAL', 'unreadable answer from another instance'));
      return;
    }
    if (answer.ok === true) {
      metrics.rpc.inc({ side: 'client', method: p.method, outcome: 'ok' });
      p.resolve(answer.result);
      return;
    }
    metrics.rpc.inc({ side: 'client', method: p.method, outcome: 'error' });
    const code = (answer.error?.code ?? 'INTERNAL') as ErrorCode;
    p.reject(new HubError(code in ERRORS ? code : 'INTERNAL', answer.error?.message ?? 'failed on another instance'));
  }

  function onRequest(_topic: string, payload: Buffer, props?: ResponseProperties): void {
    const responseTopic = props?.responseTopic;
    const correlationData = props?.correlationData;
    if (responseTopic === undefined || correlationData === undefined) return;
    let method = 'unknown';
    const reply = (body: unknown) =>
      client.publish(responseTopic, JSON.stringify(body), { qos: 1, properties: { correlationData } });
    void (async () => {
      try {
        const req = JSON.parse(payload.toString('utf8')) as { method?: unknown; params?: unknown; from?: unknown };
        method = typeof req.method === 'string' && handlers.has(req.method) ? req.method : 'unknown';
        const handler = handlers.get(method);
        if (!handler) throw new HubError('NOT_FOUND', `no RPC method ${String(req.method)}`);
        const result = await handler(req.params, typeof req.from === 'string' ? req.from : null);
        metrics.rpc.inc({ side: 'server', method, outcome: 'ok' });
        reply({ ok: true, result });
      } catch (err) {
        metrics.rpc.inc({ side: 'server', method, outcome: 'error' });
        const code = err instanceof HubError ? err.code : 'INTERNAL';
        if (code === 'INTERNAL') logger.error({ err, method }, 'cluster RPC handler failed');
        reply({ ok: false, error: { code, message: (err as Error).message } });
      }
    })();
  }

  function call(target: string, method: string, params: unknown, timeoutMs = rpcTimeoutMs): Promise<unknown> {
    if (!client.isConnected()) {
      metrics.rpc.inc({ side: 'client', method, outcome: 'timeout' });
      return Promise.reject(
        new HubError('CLUSTER_RPC_TIMEOUT', `the broker is unreachable: instance ${target} cannot be asked`),
      );
    }
    if (calls.size >= MAX_PENDING_RPC) {
      metrics.rpc.inc({ side: 'client', method, outcome: 'timeout' });
      return Promise.reject(
        new HubError('CLUSTER_RPC_TIMEOUT', `${MAX_PENDING_RPC} requests to other instances pending`),
      );
    }
    const correlation = Buffer.alloc(8);
    callPrefix.copy(correlation, 0);
    correlation.writeUInt32BE(++callCounter >>> 0, 4);
    const id = correlation.toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        calls.delete(id);
        metrics.rpc.inc({ side: 'client', method, outcome: 'timeout' });
        reject(
          new HubError('CLUSTER_RPC_TIMEOUT', `instance ${target} did not answer ${method} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      timer.unref();
      calls.set(id, { resolve, reject, timer, method });
      client.publish(`${base}/rpc/${target}`, JSON.stringify({ method, params, from: instanceId }), {
        qos: 1,
        properties: { responseTopic: replyTopic, correlationData: correlation },
      });
    });
  }

  handlers.set('presence', (): PresenceSnapshot => {
    const devices: PresenceSnapshot['devices'] = [];
    for (const [deviceId, info] of localOnline) {
      if (!opts.isLocalOnline(deviceId)) continue;
      devices.push({ deviceId, ...info, channels: opts.channelsOf(deviceId) ?? null });
    }
    return { devices };
  });

  // ────────────────────────── lifecycle ──────────────────────────

  const relay: Relay = {
    instanceId,
    start() {
      if (started) return;
      started = true;
      connected = client.isConnected();
      // Early: requests and answers flow while the connect hooks run.
      client.subscribe(rpcTopic, onRequest, { early: true });
      client.subscribe(replyTopic, onReply, { early: true });
      client.subscribe(`${base}/interest/+`, onInterest);
      client.subscribe(`${base}/events/+`, onEvents);
      // After every (re)connect, once the subscriptions are made: announce, and ask every member what
      // it holds now (events were lost while this instance was away).
      client.onReady(() => {
        if (!started) return;
        connected = client.isConnected();
        publishInterest();
        for (const id of alive) resync(id);
      });
      if (client.isConnected()) publishInterest();
      for (const [name, fn] of Object.entries(localListeners)) bus.on(name as keyof HubEvents, fn as never);
      if (opts.members) {
        unsubscribeMembers = opts.members.onChange(onMembers);
        onMembers();
      }
      linkTimer = setInterval(checkLink, 1000);
      linkTimer.unref();
      recomputeInterest();
      logger.info({ instanceId, topic: eventsTopic }, 'cluster relay started');
    },
    async stop() {
      if (!started) return;
      started = false;
      recomputeInterest();
      for (const [name, fn] of Object.entries(localListeners)) bus.off(name as keyof HubEvents, fn as never);
      unsubscribeMembers?.();
      if (linkTimer) clearInterval(linkTimer);
      if (timer) clearTimeout(timer);
      timer = null;
      seal();
      pump();
      // Nobody should publish for this instance any more.
      client.publish(interestTopic, '', { qos: 1, retain: true });
      for (const p of calls.values()) {
        clearTimeout(p.timer);
        p.reject(new HubError('SHUTTING_DOWN', 'the hub is stopping'));
      }
      calls.clear();
      limiter.close();
    },
    setLocalLive(live) {
      if (live === localLive) return;
      localLive = live;
      if (!started) return;
      if (client.isConnected()) publishInterest();
      // Starting to watch: what the others hold now (presence may not have been relayed meanwhile).
      if (live) for (const id of alive) resync(id);
    },
    call,
    handle(method, handler) {
      handlers.set(method, handler);
    },
    holderOf(deviceId) {
      const p = table.get(deviceId);
      return p && alive.has(p.instanceId) ? p.instanceId : null;
    },
    onlineElsewhere(deviceId) {
      return relay.holderOf(deviceId) !== null;
    },
    peers: () => [...alive],
    stats: () => ({ ...stats, remoteLive, remotePresence }),
    status: () => ({
      peers: [...alive],
      remoteInterest: { live: remoteLive, presence: remotePresence },
      localInterest: localInterest(),
      remoteDevices: table.size,
      pendingBatches: pending.length,
      pendingRpc: calls.size,
    }),
  };
  return relay;
}
