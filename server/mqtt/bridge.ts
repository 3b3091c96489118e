/**
 * Readings bridge (MQTT_BRIDGE=on, off by default): decoded readings and presence as JSON on the
 * user's broker, for Node-RED, Telegraf or any MQTT tool that does not speak the binary codec.
 *
 * - `<prefix>/v1/<deviceId>/state` (retained, QoS 1): the device's last value of every channel,
 *   `{"deviceId","timeMs","channels":{"<key>":{"value","unit","timeMs"}}}`, from the bus's `readings`
 *   event (after the durable commit: nothing the hub did not store is bridged).
 * - `<prefix>/v1/<deviceId>/status` (retained, QoS 1): `online` / `offline`, from `device:online` /
 *   `device:offline` (a session replaced by a newer one is not an offline); at start, `offline` for
 *   every registered device without a session (what a crashed hub left retained may say `online`).
 *   With several instances (`heldElsewhere`), an `offline` is published only if no other instance
 *   holds the device's session (asked when it would go out): a device that moved keeps the `online`
 *   its new instance published, and a restarting instance does not mark the others' devices offline.
 *
 * Bounded by design: per device the bridge holds one entry (its channels' last values and a pending
 * presence), and publishes at most one state and one status message per device per interval
 * (MQTT_BRIDGE_INTERVAL_MS). A value superseded within the interval is never published: it is
 * counted (`hub_mqtt_bridge_readings_total{outcome="coalesced"}`), and the newest one goes out. While
 * the broker is unreachable, or the hub's MQTT queue has no room (`room()`, which keeps most of the
 * queue for the frames devices wait for), nothing is handed to the client: the entries keep
 * coalescing (`hub_mqtt_bridge_flushes_total{outcome="deferred"}`, one warning per episode), and go
 * out once there is room. So the bridge never queues more than one message per device, and never
 * crowds out device traffic.
 */
import type { HubEventBus, HubEvents } from '../events.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { Reading } from '../storage/types.ts';
import { bridgeMetrics } from './bridge-metrics.ts';

/** The part of the hub's MQTT client the bridge and Home Assistant discovery use. */
export interface MqttPublisher {
  publish(topic: string, payload: Uint8Array | string, opts?: { qos?: 0 | 1; retain?: boolean }): void;
  isConnected(): boolean;
}

export interface BridgeTopics {
  state(deviceId: string): string;
  status(deviceId: string): string;
}

export function bridgeTopicsFor(prefix: string): BridgeTopics {
  return {
    state: (id) => `${prefix}/v1/${id}/state`,
    status: (id) => `${prefix}/v1/${id}/status`,
  };
}

export interface ReadingsBridgeOptions {
  publisher: MqttPublisher;
  bus: HubEventBus;
  /** MQTT_TOPIC_PREFIX. */
  topicPrefix: string;
  /** At most one state and one status message per device per this many ms. */
  intervalMs: number;
  /** Messages the client may take now without crowding out device frames (e.g. from its queue depth). */
  room: () => number;
  /**
   * Devices to publish `offline` for at start (registered, no live session): a hub that crashed left
   * their last retained status, `online`, behind, and no `device:offline` will come for them.
   */
  offlineAtStart?: () => Iterable<string>;
  /**
   * Several instances (docs/scaling.md, "Features with several instances"): whether another instance
   * holds the device's session now. Asked before an `offline` (and the last values that go with it)
   * is published; when it answers true nothing is published: the holder published `online` and its
   * own newer values, which an `offline` from here would overwrite (the retained status would be
   * wrong). Unset with one instance.
   */
  heldElsewhere?: (deviceId: string) => Promise<boolean>;
  metrics: Metrics;
  logger: Logger;
}

/**
 * Concurrent `heldElsewhere` checks; the others wait in a queue, and each answer starts the next (a
 * start with many registered devices goes at the database's pace, not one batch per interval).
 */
const MAX_HOLDER_CHECKS = 64;

interface ChannelValue {
  value: number | boolean;
  unit: string;
  timeMs: number;
}

interface Entry {
  channels: Map<string, ChannelValue>;
  /** Channels with a value not yet published. */
  dirty: Set<string>;
  /** Presence to publish, or null. */
  status: 'online' | 'offline' | null;
  /** `heldElsewhere` answered false for the pending `offline` (publish it without asking again). */
  offlineChecked: boolean;
}

export interface ReadingsBridge {
  readonly topics: BridgeTopics;
  start(): void;
  /** Publishes what is pending, as room allows (the timer calls it). */
  flush(): void;
  /** Stops listening; one last flush of what is pending. */
  stop(): void;
  /** Removes a device's retained state and status (empty retained messages) and forgets it. */
  clearDevice(deviceId: string): void;
  /** Devices with something not yet published. */
  pending(): number;
}

export function createReadingsBridge(opts: ReadingsBridgeOptions): ReadingsBridge {
  const { publisher, bus, logger } = opts;
  const m = bridgeMetrics(opts.metrics);
  const topics = bridgeTopicsFor(opts.topicPrefix);
  const entries = new Map<string, Entry>();
  /** Devices with something to publish, oldest first (a device published goes to the back). */
  const dirty = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let deferring = false;

  const entry = (id: string): Entry => {
    let e = entries.get(id);
    if (!e) {
      e = { channels: new Map(), dirty: new Set(), status: null, offlineChecked: false };
      entries.set(id, e);
    }
    return e;
  };
  const mark = (id: string) => {
    dirty.add(id);
    m.pendingDevices.set(dirty.size + toCheck.size + checking.size);
  };

  const onReadings = (deviceId: string, readings: Reading[]) => {
    const e = entry(deviceId);
    let coalesced = 0;
    for (const r of readings) {
      const prev = e.channels.get(r.channel);
      if (prev && prev.timeMs > r.timeMs) {
        coalesced++; // an older sample (e.g. a replay) never replaces a newer last value
        continue;
      }
      if (e.dirty.has(r.channel)) coalesced++;
      e.channels.set(r.channel, { value: r.value, unit: r.unit, timeMs: r.timeMs });
      e.dirty.add(r.channel);
    }
    if (coalesced > 0) m.readings.inc({ outcome: 'coalesced' }, coalesced);
    if (e.dirty.size > 0) mark(deviceId);
  };
  const onOnline = (info: HubEvents['device:online'][0]) => {
    const e = entry(info.deviceId);
    e.status = 'online';
    e.offlineChecked = false;
    mark(info.deviceId);
  };
  const onOffline = (info: HubEvents['device:offline'][0]) => {
    if (info.reason === 'replaced') return; // the newer session's online stands
    const e = entry(info.deviceId);
    e.status = 'offline';
    e.offlineChecked = false;
    mark(info.deviceId);
  };

  /** Devices whose pending `offline` waits for `heldElsewhere`: queued, and asked (in flight). */
  const toCheck = new Set<string>();
  const checking = new Set<string>();
  /** Starts queued checks up to the bound; called by flush and as each check answers (not per tick). */
  function pump(heldElsewhere: (deviceId: string) => Promise<boolean>): void {
    for (const id of toCheck) {
      if (checking.size >= MAX_HOLDER_CHECKS) return;
      toCheck.delete(id);
      const e = entries.get(id);
      if (e && e.status === 'offline' && !e.offlineChecked) checkElsewhere(id, e, heldElsewhere);
    }
  }
  /**
   * Asks whether another instance holds the device; the entry stays out of `dirty` meanwhile. Held
   * elsewhere: its `offline` and pending values are dropped (counted); else they go out next flush.
   * A failed check publishes (the single-instance behaviour) rather than hold the status forever.
   */
  function checkElsewhere(id: string, e: Entry, heldElsewhere: (deviceId: string) => Promise<boolean>): void {
    checking.add(id);
    // Settled below: the catch turns a failure into "not held", and the then only changes state.
    void heldElsewhere(id)
      .catch((err: unknown) => {
        logger.warn(
          { err, deviceId: id },
          'MQTT readings bridge: could not ask which instance holds the device; publishing its offline',
        );
        return false;
      })
      .then((held) => {
        checking.delete(id);
        pump(heldElsewhere);
        if (entries.get(id) !== e || e.status !== 'offline') return; // came online (or cleared) meanwhile
        if (held) {
          e.status = null;
          m.statusSkipped.inc({ reason: 'held_elsewhere' });
          if (e.dirty.size > 0) m.readings.inc({ outcome: 'held_elsewhere' }, e.dirty.size);
          e.dirty.clear();
          return;
        }
        e.offlineChecked = true;
        mark(id);
      });
  }

  function publishEntry(id: string, e: Entry): number {
    let sent = 0;
    if (e.dirty.size > 0) {
      let newest = 0;
      const channels: Record<string, ChannelValue> = {};
      for (const [key, v] of e.channels) {
        channels[key] = v;
        if (v.timeMs > newest) newest = v.timeMs;
      }
      publisher.publish(topics.state(id), JSON.stringify({ deviceId: id, timeMs: newest, channels }), {
        qos: 1,
        retain: true,
      });
      m.readings.inc({ outcome: 'published' }, e.dirty.size);
      m.messages.inc({ kind: 'state' });
      e.dirty.clear();
      sent++;
    }
    if (e.status !== null) {
      publisher.publish(topics.status(id), e.status, { qos: 1, retain: true });
      m.messages.inc({ kind: 'status' });
      e.status = null;
      sent++;
    }
    return sent;
  }

  function flush(): void {
    if (dirty.size === 0) return;
    let room = publisher.isConnected() ? opts.room() : 0;
    if (room < 2) {
      m.flushes.inc({ outcome: 'deferred' });
      if (!deferring) {
        deferring = true;
        logger.warn(
          { code: 'MQTT_QUEUE_FULL', devices: dirty.size, connected: publisher.isConnected() },
          'MQTT readings bridge deferred: broker unreachable or the MQTT queue is busy; values keep coalescing per device (hub_mqtt_bridge_readings_total{outcome="coalesced"})',
        );
      }
      return;
    }
    if (deferring) {
      deferring = false;
      logger.info({ devices: dirty.size }, 'MQTT readings bridge publishing again');
    }
    m.flushes.inc({ outcome: 'published' });
    for (const id of dirty) {
      if (room < 2) break;
      if (checking.has(id)) continue; // stays pending: published once the check answers
      const e = entries.get(id);
      if (e && e.status === 'offline' && !e.offlineChecked && opts.heldElsewhere) {
        dirty.delete(id); // queued for its check; published (or dropped) once it answers
        toCheck.add(id);
        continue;
      }
      dirty.delete(id);
      if (!e) continue;
      room -= publishEntry(id, e);
    }
    if (opts.heldElsewhere) pump(opts.heldElsewhere);
    m.pendingDevices.set(dirty.size + toCheck.size + checking.size);
  }

  return {
    topics,
    start() {
      for (const id of opts.offlineAtStart?.() ?? []) {
        const e = entry(id);
        if (e.status === null) e.status = 'offline';
        mark(id);
      }
      bus.on('readings', onReadings);
      bus.on('device:online', onOnline);
      bus.on('device:offline', onOffline);
      timer = setInterval(flush, opts.intervalMs);
      timer.unref();
      logger.info(
        { state: topics.state('<deviceId>'), status: topics.status('<deviceId>'), intervalMs: opts.intervalMs },
        'MQTT readings bridge on: last values and presence, retained, at most one message each per device per interval',
      );
    },
    flush,
    stop() {
      bus.off('readings', onReadings);
      bus.off('device:online', onOnline);
      bus.off('device:offline', onOffline);
      if (timer) clearInterval(timer);
      timer = null;
      flush();
    },
    clearDevice(deviceId) {
      entries.delete(deviceId);
      dirty.delete(deviceId);
      checking.delete(deviceId);
      toCheck.delete(deviceId);
      m.pendingDevices.set(dirty.size + toCheck.size + checking.size);
      publisher.publish(topics.state(deviceId), '', { qos: 1, retain: true });
      publisher.publish(topics.status(deviceId), '', { qos: 1, retain: true });
    },
    pending: () => dirty.size + toCheck.size + checking.size,
  };
}
