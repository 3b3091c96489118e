/**
 * The alert rule engine: pure state machines, no I/O and no timers (the caller feeds it samples and
 * presence, and calls `sweep()` for the offline rule). One event per transition, never one per
 * reading: an alert (a rule on one device) is `ok` (not tracked), `pending` (condition holding, hold
 * time not yet reached; threshold rules only) or `firing`; only ok → firing (`firing` event) and
 * firing → ok (`resolved` event) are emitted.
 *
 * Threshold rules run on sample time (the device's timestamps mapped to the hub's clock): `forSec` is
 * how long the samples show the condition holding, so a backlog replayed after a reconnect is judged
 * by when it was measured. A sample older than the one that last changed an alert's state is ignored.
 * Memory: one entry per alert that is pending or firing, and per device offline (bounded by the
 * registered devices times the rules).
 */
import { globToRegExp } from './config.ts';
import type { AlertEvent, AlertOp, AlertsConfig, ThresholdRule } from './types.ts';

/** A device's threshold rules by channel key. */
export type DeviceTargets = ReadonlyMap<string, readonly ThresholdRule[]>;

export interface AlertEngineOptions {
  config: Pick<AlertsConfig, 'offline' | 'rules'>;
  /** Hub clock (Unix ms). */
  now: () => number;
  /** Receives every transition, in order. */
  emit: (event: AlertEvent) => void;
  /** Whether a device has a ready session now (a last check before an offline alert fires). */
  isOnline?: (deviceId: string) => boolean;
  /**
   * Whether this instance raises a due offline alert for `reason` (several instances: one of them
   * watches devices no instance saw leave). Default: always.
   */
  watches?: (deviceId: string, reason: string) => boolean;
}

interface Pending {
  sinceMs: number;
  /** Sample time that last changed or confirmed the state. */
  lastMs: number;
  firing: AlertEvent | null;
}

export class AlertEngine {
  readonly #o: AlertEngineOptions;
  readonly #rules: { rule: ThresholdRule; match: RegExp }[];
  readonly #targets = new Map<string, DeviceTargets | null>();
  readonly #threshold = new Map<string, Pending>();
  readonly #offlineSince = new Map<string, { sinceMs: number; reason: string }>();
  readonly #firing = new Map<string, AlertEvent>();
  /** Firing alerts adopted from other instances (`adopt`), by rule, device and instance. */
  readonly #remote = new Map<string, AlertEvent>();
  #seq = 0;

  constructor(options: AlertEngineOptions) {
    this.#o = options;
    this.#rules = options.config.rules.map((rule) => ({ rule, match: globToRegExp(rule.device) }));
  }

  /** Transitions emitted so far (the `seq` of the latest). */
  get seq(): number {
    return this.#seq;
  }

  /** Firing alerts (this instance's and those adopted from others), oldest transition first. */
  firing(): AlertEvent[] {
    return [...this.#firing.values(), ...this.#remote.values()].sort((a, b) => a.seq - b.seq);
  }

  // ───────────── several instances (docs/scaling.md) ─────────────

  /**
   * A transition another instance raised (its sinks already ran there): kept while firing, under this
   * instance's `seq` so that `GET /api/alerts` and the live messages stay ordered for the page.
   * Returns the event to show (`instance` set).
   */
  adopt(event: AlertEvent, instance: string): AlertEvent {
    const adopted: AlertEvent = { ...event, instance, seq: ++this.#seq };
    const key = `${keyOf(event.rule, event.device)}\u0000${instance}`;
    if (event.state === 'firing') this.#remote.set(key, adopted);
    else this.#remote.delete(key);
    return adopted;
  }

  /** Another instance left: nobody will resolve its alerts; they resolve here. Returns the transitions. */
  dropInstance(instance: string, atMs: number): AlertEvent[] {
    const out: AlertEvent[] = [];
    for (const [key, firing] of this.#remote) {
      if (firing.instance !== instance) continue;
      this.#remote.delete(key);
      const { offlineSinceMs: _since, reason: _reason, value: _value, ...base } = firing;
      out.push({
        ...base,
        state: 'resolved',
        atMs,
        seq: ++this.#seq,
        reason: 'instance_lost',
        summary: `instance ${instance} left the cluster`,
      });
    }
    return out;
  }

  // ───────────── threshold rules ─────────────

  /** The rules that target a device, by channel; null when none does (cached per device). */
  targetsOf(deviceId: string): DeviceTargets | null {
    let t = this.#targets.get(deviceId);
    if (t !== undefined) return t;
    let map: Map<string, ThresholdRule[]> | null = null;
    for (const { rule, match } of this.#rules) {
      if (!match.test(deviceId)) continue;
      map ??= new Map();
      const list = map.get(rule.channel);
      if (list) list.push(rule);
      else map.set(rule.channel, [rule]);
    }
    t = map;
    this.#targets.set(deviceId, t);
    return t;
  }

  /** One sample of a channel a rule watches on this device. */
  sample(rule: ThresholdRule, deviceId: string, timeMs: number, value: number | boolean): void {
    const x = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    const key = keyOf(rule.name, deviceId);
    const s = this.#threshold.get(key);
    if (s === undefined) {
      if (!holds(rule.op, x, rule.value)) return;
      const p: Pending = { sinceMs: timeMs, lastMs: timeMs, firing: null };
      this.#threshold.set(key, p);
      if (rule.forSec === 0) this.#fireThreshold(rule, deviceId, p, value, timeMs);
      return;
    }
    if (timeMs < s.lastMs) return; // older than what decided the state (replay out of order)
    s.lastMs = timeMs;
    if (s.firing === null) {
      if (!holds(rule.op, x, rule.value)) this.#threshold.delete(key);
      else if (timeMs - s.sinceMs >= rule.forSec * 1000) this.#fireThreshold(rule, deviceId, s, value, timeMs);
      return;
    }
    // Firing: resolves once the value is back past the clear level (hysteresis).
    if (holds(rule.op, x, rule.clear)) return;
    this.#threshold.delete(key);
    this.#resolve(s.firing, timeMs, { value, summary: `${describe(rule)}: back to ${fmt(value)}` });
  }

  #fireThreshold(rule: ThresholdRule, deviceId: string, p: Pending, value: number | boolean, timeMs: number): void {
    const hold = rule.forSec > 0 ? ` for ${rule.forSec} s` : '';
    p.firing = this.#fire({
      rule: rule.name,
      kind: 'threshold',
      device: deviceId,
      severity: rule.severity,
      summary: `${describe(rule)}${hold} (${fmt(value)})`,
      atMs: timeMs,
      channel: rule.channel,
      op: rule.op,
      threshold: rule.value,
      value,
    });
  }

  // ───────────── the offline rule ─────────────

  deviceOnline(deviceId: string, atMs: number): void {
    this.#offlineSince.delete(deviceId);
    const firing = this.#firing.get(keyOf('offline', deviceId));
    if (firing) this.#resolve(firing, atMs, { reason: 'online', summary: 'back online' });
  }

  /**
   * A session ended (`reason` as on the bus). Not an outage: a session replaced by a newer one, and
   * sessions the hub ends because it is stopping.
   */
  deviceOffline(deviceId: string, atMs: number, reason: string): void {
    if (this.#o.config.offline === null || reason === 'replaced' || reason === 'shutdown') return;
    if (!this.#offlineSince.has(deviceId)) this.#offlineSince.set(deviceId, { sinceMs: atMs, reason });
  }

  /** A device revoked: its offline alert resolves and nothing more is raised for it. */
  deviceRemoved(deviceId: string): void {
    this.#offlineSince.delete(deviceId);
    this.#targets.delete(deviceId);
    for (const [key, s] of this.#threshold) {
      if (key.endsWith(`\u0000${deviceId}`)) {
        this.#threshold.delete(key);
        if (s.firing) this.#resolve(s.firing, this.#o.now(), { reason: 'revoked', summary: 'device revoked' });
      }
    }
    const firing = this.#firing.get(keyOf('offline', deviceId));
    if (firing) this.#resolve(firing, this.#o.now(), { reason: 'revoked', summary: 'device revoked' });
  }

  /** Fires the offline alerts that are due. Call it periodically (every second or so). */
  sweep(): void {
    const rule = this.#o.config.offline;
    if (rule === null || this.#offlineSince.size === 0) return;
    const now = this.#o.now();
    const afterMs = rule.afterSec * 1000;
    for (const [deviceId, o] of this.#offlineSince) {
      if (now - o.sinceMs < afterMs) continue;
      this.#offlineSince.delete(deviceId);
      // The bus told us it went offline; a session that came back since (events crossing) wins.
      if (this.#o.isOnline?.(deviceId) === true) continue;
      if (this.#o.watches?.(deviceId, o.reason) === false) continue;
      this.#fire({
        rule: 'offline',
        kind: 'offline',
        device: deviceId,
        severity: rule.severity,
        summary: `offline for more than ${rule.afterSec} s (${reasonText(o.reason)})`,
        atMs: now,
        reason: o.reason,
        offlineSinceMs: o.sinceMs,
      });
    }
  }

  // ───────────── transitions ─────────────

  #fire(fields: Omit<AlertEvent, 'id' | 'state' | 'seq' | 'firingSinceMs'>): AlertEvent {
    const event: AlertEvent = {
      id: `${fields.rule}/${fields.device}/${fields.atMs}`,
      state: 'firing',
      firingSinceMs: fields.atMs,
      seq: ++this.#seq,
      ...fields,
    };
    this.#firing.set(keyOf(event.rule, event.device), event);
    this.#o.emit(event);
    return event;
  }

  #resolve(firing: AlertEvent, atMs: number, change: Pick<AlertEvent, 'summary'> & Partial<AlertEvent>): void {
    this.#firing.delete(keyOf(firing.rule, firing.device));
    const { offlineSinceMs: _since, reason: _reason, value: _value, ...base } = firing;
    this.#o.emit({ ...base, ...change, state: 'resolved', atMs, seq: ++this.#seq });
  }
}

/** Why a session ended, for people (codes as on the bus: 'closed', 'heartbeat', error codes …). */
const REASONS: Record<string, string> = {
  never_seen: 'not seen since the hub started',
  instance_lost: 'the hub instance holding it left the cluster',
  closed: 'connection closed',
  device_closed: 'the device closed the connection',
  heartbeat: 'heartbeat lost',
};

function reasonText(reason: string): string {
  return REASONS[reason] ?? reason.toLowerCase().replaceAll('_', ' ');
}

function keyOf(rule: string, deviceId: string): string {
  return `${rule}\u0000${deviceId}`;
}

/** Whether `x op threshold` holds. */
export function holds(op: AlertOp, x: number, threshold: number): boolean {
  switch (op) {
    case '>':
      return x > threshold;
    case '>=':
      return x >= threshold;
    case '<':
      return x < threshold;
    case '<=':
      return x <= threshold;
    case '==':
      return x === threshold;
    case '!=':
      return x !== threshold;
  }
}

function describe(rule: ThresholdRule): string {
  return `${rule.channel} ${rule.op} ${rule.value}`;
}

function fmt(value: number | boolean): string {
  return typeof value === 'boolean' ? String(value) : String(Number(value.toPrecision(6)));
}
