/**
 * Devices over MQTT [PROTO-1.6]: the same frames, the same session state machine (DeviceSession),
 * the same pipeline as over WebSocket. What a "connection" is over MQTT:
 *
 * - A HELLO on `<prefix>/v1/<id>/up` starts a session (an {@link MqttLink}); the hub answers on
 *   `.../down`. A new HELLO while a session exists replaces it (the old one ends with `REPLACED`
 *   without an ERROR on the shared down topic, since the device itself started the new one; so does a
 *   session replaced by the device's newer one on another instance).
 * - Any other frame with no session (the hub restarted, the session timed out or was closed) is
 *   answered with a FATAL ERROR `UNEXPECTED_MESSAGE` (at most once a second per device) and not
 *   stored: the device says HELLO again and replays what is not acknowledged.
 * - Closing a session (fault, revoked, shutdown) sends the FATAL ERROR on down; nothing else closes.
 * - Presence: the device's last will is a FATAL ERROR frame (`CONNECTION_LOST`) on its up topic, so a
 *   dead device is offline as soon as the broker notices (1.5 × its keepalive); and a session that
 *   receives nothing for MQTT_DEVICE_IDLE_SEC ends (`reason="heartbeat"`).
 * - Backpressure: a paused session holds the hub's input (PUBACKs withheld; the broker stops after
 *   MQTT_MAX_INFLIGHT unacknowledged messages): hub-wide, as the hub has one connection to the broker.
 *
 * The device id is the topic's: the broker's ACLs (dynsec.ts, or the operator's) make sure only that
 * device can publish there. Frames for ids the registry does not hold as active are dropped, counted.
 */
import { MessageType } from '../codec/index.ts';
import type { MqttConfig } from '../config/index.ts';
import { ERRORS } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { createLogLimiter } from '../log/rate-limit.ts';
import type { Metrics } from '../metrics/index.ts';
import { DeviceSession, type SessionContext } from '../transport/device-session.ts';
import type { DeviceLink, LinkHandlers } from '../transport/link.ts';
import { encodeError } from '../transport/outbound.ts';
import type { HubMqttClient } from './client.ts';
import type { Topics } from './topics.ts';

/** Least time between two "say HELLO" ERRORs to one device without a session. */
const NUDGE_INTERVAL_MS = 1000;

/**
 * Several hub instances on one broker (server/cluster/membership.ts): every instance reads every up
 * topic, and only a device's owner handles its frames. Without it (one instance) every device is ours.
 */
export interface MqttOwnership {
  /** Whether this instance handles the device's frames now (called per message: cheap). */
  owns(deviceId: string): boolean;
  /** Runs `listener` after ownership may have changed (members joined or left, a reconnect); returns the unsubscribe. */
  onChange(listener: () => void): () => void;
}

export interface MqttDeviceTransportOptions {
  client: HubMqttClient;
  topics: Topics;
  config: Readonly<MqttConfig>;
  session: SessionContext;
  /** Whether frames from this device id are taken (registered and not revoked). */
  isActive: (deviceId: string) => boolean;
  metrics: Metrics;
  logger: Logger;
}

export interface MqttDeviceTransport {
  /** Subscribes to every device's up topic and starts the idle sweep. */
  start(): void;
  /** Takes no new sessions (hub stopping); frames not taken stay with the broker. */
  stopAccepting(): void;
  /** Stops the sweep and drops every remaining link. */
  close(): void;
  /** Open MQTT device links. */
  size(): number;
  /**
   * Cluster mode: from now on frames of devices another instance owns are dropped (counted
   * `outcome="not_owner"`), and on an ownership change the sessions of devices no longer owned end
   * quietly (reason `moved`, no ERROR on `down`): their next frame reaches the new owner, which asks
   * for HELLO, and the device replays what is not acknowledged.
   */
  setOwnership(ownership: MqttOwnership | null): void;
}

/** One device's session over MQTT, as a {@link DeviceLink}. */
export class MqttLink implements DeviceLink {
  readonly transport = 'mqtt' as const;
  readonly remoteAddress = undefined;
  /** The broker buffers per device; the hub's own queue is bounded hub-wide (client.ts). */
  readonly bufferedAmount = 0;
  session: DeviceSession | null = null;
  private handlers: LinkHandlers | null = null;
  private open = true;
  /** Replaced by a new HELLO on the same topic: the final ERROR is not sent (the device started anew). */
  private retired = false;

  constructor(
    readonly deviceId: string,
    private readonly publishDown: (frame: Uint8Array) => void,
    private readonly hold: (link: MqttLink, held: boolean) => void,
    private readonly detach: (link: MqttLink) => void,
  ) {}

  attach(h: LinkHandlers): void {
    this.handlers = h;
  }

  isOpen(): boolean {
    return this.open;
  }

  /** A frame from the device: any frame also answers the liveness probe. */
  deliver(payload: Buffer): void {
    if (!this.open) return;
    this.handlers?.pong();
    this.handlers?.message(payload, true);
  }

  retire(): void {
    this.retired = true;
  }

  send(frame: Uint8Array): void {
    if (this.open) this.publishDown(frame);
  }

  close(code: number, reason: string, finalFrame?: Uint8Array): void {
    if (!this.open) return;
    // REPLACED: the device started a newer session (here, or on another instance): an ERROR on the
    // shared down topic would end that one.
    if (finalFrame && !this.retired && reason !== 'REPLACED') this.publishDown(finalFrame);
    this.finish(code);
  }

  terminate(): void {
    this.finish(1006);
  }

  /** Over MQTT the probe is implicit: any frame from the device between two sweeps answers it. */
  ping(): void {}

  pause(): void {
    this.hold(this, true);
  }

  resume(): void {
    this.hold(this, false);
  }

  private finish(code: number): void {
    if (!this.open) return;
    this.open = false;
    this.hold(this, false);
    this.detach(this);
    // Asynchronous like a socket's 'close', so a session never sees its own close mid-call.
    setImmediate(() => this.handlers?.closed(code));
  }
}

export function createMqttDeviceTransport(opts: MqttDeviceTransportOptions): MqttDeviceTransport {
  const { client, topics, metrics } = opts;
  const logger = opts.logger;
  const links = new Map<string, MqttLink>();
  const lastNudge = new Map<string, number>();
  const refusals = createLogLimiter({ logger });
  let accepting = true;
  let sweep: NodeJS.Timeout | null = null;
  let ownership: MqttOwnership | null = null;
  let unsubscribeOwnership: (() => void) | null = null;
  /** Sessions ending because their device moved (no longer in `links`), until their link closes. */
  const moving = new Set<MqttLink>();

  const count = (outcome: string) => metrics.mqttMessages.inc({ direction: 'in', outcome });

  const hold = (link: MqttLink, held: boolean) => {
    if (held) client.holdInput(link);
    else client.releaseInput(link);
  };
  const detach = (link: MqttLink) => {
    if (links.get(link.deviceId) === link) links.delete(link.deviceId);
    moving.delete(link);
  };

  /**
   * Another instance owns the device now: its session here ends without an ERROR on `down` (the
   * device is not at fault and keeps publishing; the new owner asks it for HELLO). In-flight frames
   * still commit and are acknowledged first; frames arriving meanwhile are the new owner's.
   */
  function moveAway(link: MqttLink): void {
    links.delete(link.deviceId);
    moving.add(link);
    link.retire();
    if (link.session) {
      link.session.end('REPLACED', 'the device is handled by another hub instance now', { reason: 'moved' });
    } else link.terminate();
  }

  function onOwnershipChange(): void {
    const o = ownership;
    if (!o) return;
    let moved = 0;
    for (const link of [...links.values()]) {
      if (o.owns(link.deviceId)) continue;
      moveAway(link);
      moved++;
    }
    if (moved > 0) {
      logger.info(
        { sessions: moved },
        'MQTT device sessions ended here: this instance does not own their devices now (ownership moved, or it reconnected to the broker); they continue with their owner after HELLO',
      );
    }
  }

  function onUp(topic: string, payload: Buffer): void {
    const deviceId = topics.deviceOfUp(topic);
    if (deviceId === null) {
      count('bad_topic');
      return;
    }
    if (ownership !== null && !ownership.owns(deviceId)) {
      // Another instance handles it. A session here would never see this frame, so no later ACK of it
      // may go out (ACKs are cumulative): it ends.
      count('not_owner');
      const link = links.get(deviceId);
      if (link) moveAway(link);
      return;
    }
    if (!opts.isActive(deviceId)) {
      count('unknown_device');
      refusals.hit('mqtt', `unknown|${deviceId}`, {
        level: 'warn',
        msg: 'MQTT frame from a device that is not registered or is revoked: dropped',
        fields: { code: 'UNAUTHORIZED', deviceId, topic },
      });
      return;
    }
    if (!accepting) return;
    const isHello = payload.length > 3 && payload[3] === MessageType.HELLO;
    let link = links.get(deviceId);
    if (isHello && link) {
      // [PROTO-5.4] over MQTT: the device's new HELLO replaces its session.
      link.retire();
      links.delete(deviceId);
      link = undefined;
    }
    if (!link) {
      if (!isHello) {
        nudge(deviceId);
        return;
      }
      lastNudge.delete(deviceId);
      const l = new MqttLink(
        deviceId,
        (frame) => client.publish(topics.down(deviceId), frame, { qos: 1 }),
        hold,
        detach,
      );
      links.set(deviceId, l);
      l.session = new DeviceSession(l, deviceId, opts.session);
      link = l;
    }
    count('delivered');
    link.deliver(payload);
  }

  /** A frame with no session: ask for HELLO (FATAL ERROR), at most once a second per device. */
  function nudge(deviceId: string): void {
    count('no_session');
    const now = Date.now();
    const last = lastNudge.get(deviceId);
    if (last !== undefined && now - last < NUDGE_INTERVAL_MS) return;
    lastNudge.set(deviceId, now);
    if (lastNudge.size > 100_000) lastNudge.clear();
    metrics.frameErrors.inc({ code: 'UNEXPECTED_MESSAGE' });
    client.publish(
      topics.down(deviceId),
      encodeError('UNEXPECTED_MESSAGE', `${ERRORS.UNEXPECTED_MESSAGE.summary} No session: send HELLO [PROTO-1.6]`),
      { qos: 1 },
    );
  }

  return {
    start() {
      client.subscribe(topics.allUp, onUp);
      // A session that received nothing for a whole sweep period is ended by its next sweep.
      sweep = setInterval(() => {
        for (const link of links.values()) link.session?.heartbeat();
      }, opts.config.deviceIdleSec * 1000);
      sweep.unref();
    },
    stopAccepting() {
      accepting = false;
    },
    close() {
      accepting = false;
      if (sweep) clearInterval(sweep);
      unsubscribeOwnership?.();
      for (const link of [...links.values(), ...moving]) link.terminate();
      refusals.close();
    },
    size: () => links.size,
    setOwnership(o) {
      unsubscribeOwnership?.();
      unsubscribeOwnership = null;
      ownership = o;
      if (!o) return;
      unsubscribeOwnership = o.onChange(onOwnershipChange);
      onOwnershipChange();
    },
  };
}
