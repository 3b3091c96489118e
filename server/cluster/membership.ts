/**
 * Cluster membership over the MQTT broker, and the ownership of MQTT devices it decides
 * (docs/scaling.md, "MQTT devices with several instances").
 *
 * - Each instance publishes a retained record on `<prefix>/cluster/v1/members/<instanceId>` (JSON
 *   {@link MemberRecord}) after every (re)connect, once its subscriptions are made. The will of its
 *   broker connection is the same topic, retained, with an empty payload: when the instance dies
 *   (kill -9, lost network) the broker clears its record as soon as it notices (1.5 × the hub's
 *   keepalive of 30 s at most; at once when the socket closes), and a graceful stop clears it too
 *   (an explicit clear plus DISCONNECT "with will").
 * - Every instance subscribes to `<prefix>/cluster/v1/members/+`: records are members, empty payloads
 *   are leaves. A subscription (re)made at each connect brings every retained record again, so a
 *   view that missed leaves while disconnected (session expired, broker queue full) is repaired: at
 *   each connect the known members are marked unconfirmed, and when this instance's own new record
 *   comes back (the broker sent the retained records before it) the unconfirmed ones are dropped.
 * - Until that first echo after a connect the view is not `synced`: this instance then owns no MQTT
 *   device (messages the broker queued for its persistent session arrive before the records do, and
 *   an old view could take a device another instance serves now). Those frames stay unacknowledged on
 *   the devices, which replay them to their owner.
 * - A record of this instance cleared while it is connected (e.g. the will of its own previous
 *   connection, delivered late, or another member expiring it) is published again.
 * - Records are refreshed every 15 s. One not refreshed for three periods, while this instance's own
 *   refreshes kept coming back (its input is not stalled), is cleared: a record no will can clear,
 *   e.g. of a member that died while the broker (with persistence) was down.
 *
 * Ownership of MQTT devices: HRW over the members (ownership.ts), exported as the device transport's
 * {@link MqttOwnership}.
 */
import { Counter, Gauge } from 'prom-client';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { metricsPerRegistry } from '../metrics/per-registry.ts';
import type { MqttOwnership } from '../mqtt/device-transport.ts';
import { CONTROL_TOPIC, clusterRoleAcls } from '../mqtt/dynsec.ts';
import type { HubMqtt } from '../mqtt/index.ts';
import { topicsFor } from '../mqtt/topics.ts';
import { type HrwMember, hrwMembers, hrwOwner } from './ownership.ts';

/** What a member publishes about itself (retained). */
export interface MemberRecord {
  instanceId: string;
  /** When this instance's process started (ms since the epoch): a new value is a restart. */
  startedAtMs: number;
  /** Its public URL (HUB_PUBLIC_URL), e.g. for links between instances. */
  url: string | null;
  /** Its broker connection count since start (1, 2, ...): tells this connection's record from older ones. */
  connection: number;
}

/** One change of the member list, given to {@link Membership.onChange} listeners. */
export interface MembershipChange {
  /** The members after the change, sorted. */
  members: readonly string[];
  joined: readonly string[];
  left: readonly string[];
  /** Members that stayed but restarted (a new `startedAtMs`): their sessions and state are new. */
  restarted: readonly string[];
}

export interface MembershipStatus {
  instanceId: string;
  members: string[];
  /** The view is complete since the last broker connect (false: this instance owns no MQTT device). */
  synced: boolean;
}

export interface Membership {
  readonly instanceId: string;
  /** Live members' instance ids, sorted; always includes this instance (from start to stop). */
  members(): string[];
  member(instanceId: string): MemberRecord | undefined;
  isMember(instanceId: string): boolean;
  /** Runs `listener` after every change of the members; returns the unsubscribe. */
  onChange(listener: (change: MembershipChange) => void): () => void;
  /** The HRW owner of an MQTT device among the members. */
  ownerOf(deviceId: string): string;
  /** For the MQTT device transport (`HubMqtt.setOwnership`). */
  readonly ownership: MqttOwnership;
  synced(): boolean;
  status(): MembershipStatus;
  /** Clears this instance's record (others see it leave) and stops listening. Call before the MQTT stop. */
  stop(): Promise<void>;
}

export interface MembershipOptions {
  /** The hub's MQTT side; call before `mqtt.start()` (the will is set for the first connect). */
  mqtt: HubMqtt;
  instanceId: string;
  topicPrefix: string;
  publicUrl: string | null;
  logger: Logger;
  metrics: Metrics;
  now?: () => number;
  /**
   * Each member publishes its record again every `refreshMs` (default 15 s); a member not heard for
   * three periods while this instance's own record kept coming back has its record cleared.
   */
  refreshMs?: number;
}

const INSTANCE_ID = /^[A-Za-z0-9_.-]{1,64}$/;

const membershipMetrics = metricsPerRegistry((registers) => ({
  members: new Gauge({
    name: 'hub_cluster_members',
    help: 'Hub instances this instance sees as live cluster members (itself included).',
    registers,
  }),
  changes: new Counter({
    name: 'hub_cluster_membership_changes_total',
    help: 'Cluster membership changes seen by this instance, by kind: joined, left (record cleared: graceful stop, or the will of a lost broker connection), restarted.',
    labelNames: ['kind'] as const,
    registers,
  }),
  synced: new Gauge({
    name: 'hub_cluster_membership_synced',
    help: '1 when the member view is complete since the last broker connect; 0 before (this instance then owns no MQTT device).',
    registers,
  }),
  expired: new Counter({
    name: 'hub_cluster_members_expired_total',
    help: 'Member records this instance cleared because the member published nothing for three refresh periods (a record left over, e.g. after a broker restart, or a member stuck).',
    registers,
  }),
  invalid: new Counter({
    name: 'hub_cluster_member_records_invalid_total',
    help: 'Messages on the cluster member topics that are not a valid member record (ignored).',
    registers,
  }),
}));

/** What one member message did to the view. */
export interface MemberUpdate {
  joined: string[];
  left: string[];
  restarted: string[];
  /** This instance's own record was cleared while it is a member: publish it again. */
  selfCleared: boolean;
  /** The sync of the current connection completed with this message. */
  synced: boolean;
  invalid: boolean;
}

/**
 * The member view as a pure state machine (unit-tested): fed the member topic's messages, it says
 * who joined and left.
 */
export class MemberTable {
  private readonly records = new Map<string, MemberRecord>();
  private unconfirmed = new Set<string>();
  private awaiting: MemberRecord | null = null;
  private isSynced = false;
  /** When each member's record last arrived (this instance's clock), and our own. */
  private readonly heard = new Map<string, number>();
  private selfHeard = 0;

  constructor(readonly self: string) {}

  /** A (re)connect with this instance's new record: the view is checked again against the retained records. */
  beginSync(own: MemberRecord): void {
    this.records.set(this.self, own);
    this.unconfirmed = new Set([...this.records.keys()].filter((id) => id !== this.self));
    this.awaiting = own;
    this.isSynced = false;
  }

  synced(): boolean {
    return this.isSynced;
  }

  members(): string[] {
    return [...this.records.keys()].sort();
  }

  get(id: string): MemberRecord | undefined {
    return this.records.get(id);
  }

  /**
   * Members whose record has not arrived for `maxSilenceMs` while ours kept arriving (so this
   * instance's own input is not what stalled): records left behind, e.g. by a broker restarted with
   * persistence after a member died while it was down (no will then).
   */
  silent(maxSilenceMs: number): string[] {
    const limit = this.selfHeard - maxSilenceMs;
    return [...this.heard].filter(([id, at]) => at < limit && this.records.has(id)).map(([id]) => id);
  }

  /** A message on `<prefix>/cluster/v1/members/<id>`, received at `nowMs`. */
  receive(id: string, payload: Uint8Array, nowMs = 0): MemberUpdate {
    const u: MemberUpdate = { joined: [], left: [], restarted: [], selfCleared: false, synced: false, invalid: false };
    if (!INSTANCE_ID.test(id)) {
      u.invalid = true;
      return u;
    }
    if (payload.length === 0) {
      if (id === this.self) u.selfCleared = this.records.has(id);
      else if (this.records.delete(id)) u.left.push(id);
      this.unconfirmed.delete(id);
      this.heard.delete(id);
      return u;
    }
    const record = parseRecord(payload);
    if (!record || record.instanceId !== id) {
      u.invalid = true;
      return u;
    }
    if (id === this.self) {
      if (record.startedAtMs === this.records.get(id)?.startedAtMs) this.selfHeard = nowMs;
      const own = this.awaiting;
      // Our record of this connection, back after the retained ones: whoever was not among them is gone.
      if (own && record.startedAtMs === own.startedAtMs && record.connection === own.connection) {
        this.awaiting = null;
        this.isSynced = true;
        u.synced = true;
        for (const gone of this.unconfirmed) if (this.records.delete(gone)) u.left.push(gone);
        this.unconfirmed.clear();
      }
      return u;
    }
    this.unconfirmed.delete(id);
    this.heard.set(id, nowMs);
    const before = this.records.get(id);
    this.records.set(id, record);
    if (!before) u.joined.push(id);
    else if (before.startedAtMs !== record.startedAtMs) u.restarted.push(id);
    return u;
  }
}

function parseRecord(payload: Uint8Array): MemberRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.instanceId !== 'string' || typeof r.startedAtMs !== 'number' || !Number.isFinite(r.startedAtMs)) {
    return null;
  }
  const url = typeof r.url === 'string' ? r.url : null;
  const connection = typeof r.connection === 'number' ? r.connection : 0;
  return { instanceId: r.instanceId, startedAtMs: r.startedAtMs, url, connection };
}

export function startMembership(opts: MembershipOptions): Membership {
  const { mqtt, instanceId, logger, metrics } = opts;
  if (!INSTANCE_ID.test(instanceId)) throw new Error(`invalid instance id: ${instanceId}`);
  const client = mqtt.client;
  const topics = topicsFor(opts.topicPrefix);
  const memberTopic = (id: string) => topics.cluster(`members/${id}`);
  const memberFilter = memberTopic('+');
  const memberHead = memberTopic('');
  const m = membershipMetrics(metrics);
  const now = opts.now ?? Date.now;
  const startedAtMs = now();
  const refreshMs = opts.refreshMs ?? 15_000;
  const table = new MemberTable(instanceId);
  const listeners = new Set<(change: MembershipChange) => void>();
  const ownershipListeners = new Set<() => void>();
  let hrw: HrwMember[] = hrwMembers([instanceId]);
  let connection = 0;
  let stopped = false;
  let loggedInvalid = false;

  const record = (): MemberRecord => ({ instanceId, startedAtMs, url: opts.publicUrl, connection });
  const publishOwn = () => client.publish(memberTopic(instanceId), JSON.stringify(record()), { qos: 1, retain: true });

  table.beginSync(record());
  m.members.set(1);
  m.synced.set(0);

  if (client.status().sessionPresent !== null) {
    logger.warn(
      { instanceId },
      'cluster membership started after the MQTT connect: its will applies from the next connect (start it before HubMqtt.start())',
    );
  }
  // Dies with the connection: the broker clears the record (and at a graceful stop, DISCONNECT 0x04).
  client.setWill({ topic: memberTopic(instanceId), payload: '', qos: 1, retain: true });
  if (mqtt.access.kind === 'dynsec') {
    // The hub's role may use the cluster topics (the will too); the plugin applies it at once.
    const commands = clusterRoleAcls(topics);
    client.onConnect(() => client.publish(CONTROL_TOPIC, JSON.stringify({ commands }), { qos: 1 }));
  }
  client.onConnect(() => {
    if (stopped) return;
    connection++;
    table.beginSync(record());
    m.synced.set(0);
    // A reconnect: while this instance was away the others took its devices (its will), so its MQTT
    // sessions are stale; it owns nothing until the view is synced again.
    if (connection > 1) notify(ownershipListeners, undefined);
  });
  // After the subscriptions: the retained records reach us before our own record's echo.
  client.onReady(() => {
    if (!stopped) publishOwn();
  });
  client.subscribe(memberFilter, (topic, payload) => {
    if (stopped || !topic.startsWith(memberHead)) return;
    const u = table.receive(topic.slice(memberHead.length), payload, now());
    if (u.invalid) {
      m.invalid.inc();
      if (!loggedInvalid) {
        loggedInvalid = true;
        logger.warn({ topic }, 'a message on a cluster member topic is not a member record: ignored');
      }
      return;
    }
    if (u.synced) {
      m.synced.set(1);
      logger.info({ members: table.members() }, 'cluster membership synced');
    }
    if (u.selfCleared) {
      logger.warn(
        { instanceId },
        "this instance's cluster member record was cleared while it is connected (a late will of its previous connection?): published again",
      );
      publishOwn();
    }
    if (u.joined.length + u.left.length + u.restarted.length > 0) changed(u);
  });

  // Refresh: our record again (proof of life for the others), and clear records nobody refreshes.
  const expiring = new Set<string>();
  const refresh = setInterval(() => {
    if (stopped || !client.isConnected()) return;
    // Not synced yet: the record of this connection may have been lost (e.g. a full MQTT queue): again.
    publishOwn();
    if (!table.synced()) return;
    for (const id of table.silent(3 * refreshMs)) {
      if (!expiring.has(id)) {
        expiring.add(id);
        m.expired.inc();
        logger.warn(
          { member: id, silentMs: 3 * refreshMs },
          'cluster member published nothing for three refresh periods: its record is cleared (left over, e.g. after a broker restart, or the member is stuck; it publishes it again if alive)',
        );
      }
      // The clear reaches every member, so all drop it at the same point of the broker's order.
      client.publish(memberTopic(id), '', { qos: 1, retain: true });
    }
  }, refreshMs);
  refresh.unref();

  function changed(u: MemberUpdate): void {
    for (const id of u.left) expiring.delete(id);
    const members = table.members();
    hrw = hrwMembers(members);
    m.members.set(members.length);
    for (const id of u.joined) {
      m.changes.inc({ kind: 'joined' });
      logger.info({ member: id, url: table.get(id)?.url ?? null, members }, 'cluster member joined');
    }
    for (const id of u.left) {
      m.changes.inc({ kind: 'left' });
      logger.info({ member: id, members }, 'cluster member left (stopped, or its broker connection was lost)');
    }
    for (const id of u.restarted) {
      m.changes.inc({ kind: 'restarted' });
      logger.info({ member: id, members }, 'cluster member restarted');
    }
    notify(listeners, { members, joined: u.joined, left: u.left, restarted: u.restarted });
    if (u.joined.length + u.left.length > 0) notify(ownershipListeners, undefined);
  }

  function notify<T>(set: Set<(arg: T) => void>, arg: T): void {
    for (const listener of [...set]) {
      try {
        listener(arg);
      } catch (err) {
        metrics.callbackErrors.inc({ component: 'cluster' });
        logger.error({ err }, 'cluster membership listener threw');
      }
    }
  }

  const onChange = (listener: (change: MembershipChange) => void) => {
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  };

  const ownership: MqttOwnership = {
    // Not before the view is complete after a connect (see the header); HRW otherwise.
    owns: (deviceId) => !stopped && table.synced() && client.isConnected() && hrwOwner(deviceId, hrw) === instanceId,
    onChange: (listener) => {
      ownershipListeners.add(listener);
      return () => {
        ownershipListeners.delete(listener);
      };
    },
  };

  return {
    instanceId,
    members: () => table.members(),
    member: (id) => table.get(id),
    isMember: (id) => table.get(id) !== undefined,
    onChange,
    ownerOf: (deviceId) => hrwOwner(deviceId, hrw) ?? instanceId,
    ownership,
    synced: () => table.synced(),
    status: () => ({ instanceId, members: table.members(), synced: table.synced() }),
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(refresh);
      listeners.clear();
      ownershipListeners.clear();
      // Others see this instance leave now; the will (DISCONNECT 0x04) clears it again at the MQTT stop.
      client.publish(memberTopic(instanceId), '', { qos: 1, retain: true });
      m.synced.set(0);
    },
  };
}
