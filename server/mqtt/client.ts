/**
 * The hub's own MQTT client: one connection to the user's broker (MQTT_URL), shared by the device
 * transport (device-transport.ts), the broker-access admin (dynsec.ts) and later parts (readings
 * bridge, Home Assistant discovery) through {@link HubMqttClient.publish} / `subscribe`.
 *
 * - Persistent session: a stable client id, `clean: false`, MQTT 5 session expiry
 *   (MQTT_SESSION_EXPIRY_SEC), QoS 1 subscriptions: frames devices publish while the hub is away are
 *   queued by the broker and delivered when it returns.
 * - Reconnects itself with exponential backoff (1 s doubling to 30 s, ±20 % jitter); mqtt.js's own
 *   fixed-period reconnect is off.
 * - Bounded both ways, with metrics: at most MQTT_MAX_INFLIGHT QoS 1 publishes awaiting PUBACK, then
 *   a queue of MQTT_OFFLINE_QUEUE_MAX messages (also used while disconnected) that drops its oldest
 *   when full (`hub_mqtt_messages_total{direction="out",outcome="dropped"}`). mqtt.js's own offline
 *   queue is never used (`queueQoSZero: false`, nothing is published while disconnected). Inbound, the
 *   broker may have MQTT_MAX_INFLIGHT messages in flight to the hub (MQTT 5 receive maximum), and the
 *   hub withholds PUBACKs while an input holder (a paused device session) asks it to: backpressure.
 * - A broker that cannot be reached or refuses the credentials is one log line per episode
 *   (MQTT_UNREACHABLE / MQTT_NOT_AUTHORIZED) and a not-ready `/readyz` (`status()`); the hub keeps
 *   running and retrying, never crashes.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { MqttConfig } from '../config/index.ts';
import type { ErrorCode } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';

export type MqttState = 'connecting' | 'connected' | 'unreachable' | 'not_authorized' | 'stopped';

/** What `/readyz` shows under `mqtt`. */
export interface MqttStatus {
  state: MqttState;
  broker: string;
  clientId: string;
  /** The last failure's code and cause (never a password). */
  lastError: { code: ErrorCode; message: string; atMs: number } | null;
  /** Whether the broker still held the hub's session at the last connect. */
  sessionPresent: boolean | null;
  inflight: number;
  queued: number;
  inputHeld: boolean;
}

/** MQTT 5 request/response properties (the cluster's RPC between instances, server/cluster/relay.ts). */
export interface ResponseProperties {
  responseTopic?: string;
  correlationData?: Buffer;
}

export type MessageHandler = (topic: string, payload: Buffer, properties?: ResponseProperties) => void;

export interface PublishOptions {
  /** Default 1. */
  qos?: 0 | 1;
  retain?: boolean;
  properties?: ResponseProperties;
}

export interface HubMqttClient {
  /** Connects in the background; never throws for an unreachable broker or bad credentials. */
  start(): void;
  /**
   * Stops taking messages (those not yet acknowledged stay with the broker for the next start),
   * waits up to `graceMs` for queued and in-flight publishes, then disconnects (the session persists).
   */
  stop(graceMs?: number): Promise<void>;
  status(): MqttStatus;
  isConnected(): boolean;
  /**
   * Publishes through the bounded in-flight window and queue. While the broker is unreachable the
   * message waits in the queue (oldest dropped when full, counted). Never throws.
   */
  publish(topic: string, payload: Uint8Array | string, opts?: PublishOptions): void;
  /**
   * Subscribes `filter` at QoS 1, now and after every reconnect; `handler` gets its messages. `early`
   * subscriptions are made before the connect hooks run (e.g. the answers those hooks wait for).
   */
  subscribe(filter: string, handler: MessageHandler, opts?: { early?: boolean }): void;
  /**
   * Runs after every connect, before the subscriptions are (re)made and queued messages flow (e.g.
   * broker-access setup). A hook that throws is logged; the connection proceeds.
   */
  onConnect(hook: (sessionPresent: boolean) => Promise<void> | void): void;
  /**
   * Runs after every connect once the subscriptions are made: what it publishes reaches the broker
   * after the retained messages of those subscriptions were sent to the hub (cluster membership sync).
   */
  onReady(hook: () => void): void;
  /**
   * The message the broker publishes when this connection ends without a normal DISCONNECT (crash,
   * kill -9, network loss) and at `stop()` (DISCONNECT 0x04 "with will"). Set it before `start()`;
   * a change applies from the next connect.
   */
  setWill(will: WillMessage | null): void;
  /** Holds back inbound messages (PUBACKs withheld) while any holder holds. */
  holdInput(holder: object): void;
  releaseInput(holder: object): void;
}

export interface WillMessage {
  topic: string;
  payload: Uint8Array | string;
  qos: 0 | 1;
  retain: boolean;
}

export interface HubMqttClientOptions {
  config: Readonly<MqttConfig>;
  metrics: Metrics;
  logger: Logger;
  /** Backoff bounds, ms (tests shorten them). Default 1000 and 30,000. */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** Connect timeout, ms. Default 10,000. */
  connectTimeoutMs?: number;
}

interface Outgoing {
  topic: string;
  payload: Uint8Array | string;
  qos: 0 | 1;
  retain: boolean;
  properties: ResponseProperties | undefined;
}

export function createHubMqttClient(opts: HubMqttClientOptions): HubMqttClient {
  const { config, metrics, logger } = opts;
  const minRetryMs = opts.minRetryMs ?? 1000;
  const maxRetryMs = opts.maxRetryMs ?? 30_000;
  const subscriptions = new Map<string, MessageHandler>();
  const early = new Set<string>();
  const connectHooks: ((sessionPresent: boolean) => Promise<void> | void)[] = [];
  const readyHooks: (() => void)[] = [];
  let will: WillMessage | null = null;
  const holders = new Set<object>();
  const heldAcks: (() => void)[] = [];
  let queue: Outgoing[] = [];
  let queueHead = 0;
  let inflight = 0;
  /**
   * Connection generation: a publish in flight when its connection dies is not counted any more (mqtt.js
   * may resend it after reconnecting, or not call back at all), so the window never leaks.
   */
  let generation = 0;
  let client: MqttClient | null = null;
  let state: MqttState = 'connecting';
  let ready = false;
  /** CONNACK received on the current connection (publishing may flow; `ready` also needs the subscriptions). */
  let linkUp = false;
  /** The current connection attempt already reported its failure. */
  let attemptFailed = false;
  let stopping = false;
  let sessionPresent: boolean | null = null;
  let lastError: MqttStatus['lastError'] = null;
  let attempt = 0;
  let retryTimer: NodeJS.Timeout | null = null;
  /** The failure already logged for the current episode (one line per episode). */
  let loggedFailure: ErrorCode | null = null;
  let droppedSinceLog = 0;
  let dropLogTimer: NodeJS.Timeout | null = null;
  const broker = redactUrl(config.url);

  const queued = () => queue.length - queueHead;
  const gauges = () => {
    metrics.mqttInflight.set(inflight);
    metrics.mqttQueued.set(queued());
  };

  function fail(code: ErrorCode, message: string, reason: string): void {
    attemptFailed = true;
    metrics.mqttConnectFailures.inc({ reason });
    lastError = { code, message, atMs: Date.now() };
    state = code === 'MQTT_NOT_AUTHORIZED' ? 'not_authorized' : 'unreachable';
    if (loggedFailure !== code) {
      loggedFailure = code;
      logger.error(
        { code, broker, clientId: config.clientId, cause: message },
        code === 'MQTT_NOT_AUTHORIZED'
          ? `MQTT broker ${broker} refused the hub (${message}); /readyz is not ready, retrying with backoff`
          : `MQTT broker ${broker} unreachable (${message}); /readyz is not ready, retrying with backoff`,
      );
    } else logger.debug({ code, cause: message }, 'MQTT connection attempt failed');
  }

  function scheduleReconnect(): void {
    if (stopping || retryTimer || !client) return;
    const base = Math.min(maxRetryMs, minRetryMs * 2 ** Math.min(attempt, 16));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    attempt++;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (stopping || !client) return;
      attemptFailed = false;
      client.reconnect();
    }, delay);
    retryTimer.unref();
  }

  async function onConnected(connack: { sessionPresent?: boolean }): Promise<void> {
    const c = client;
    if (!c) return;
    sessionPresent = connack.sessionPresent ?? false;
    linkUp = true;
    if (!(await subscribeAll(c, [...early]))) return;
    pump();
    for (const hook of connectHooks) {
      try {
        await hook(sessionPresent);
      } catch (err) {
        logger.error({ err }, 'MQTT connect hook failed');
      }
    }
    if (!c.connected || stopping) return;
    if (
      !(await subscribeAll(
        c,
        [...subscriptions.keys()].filter((f) => !early.has(f)),
      ))
    )
      return;
    if (!c.connected || stopping) return;
    attempt = 0;
    ready = true;
    state = 'connected';
    metrics.mqttConnected.set(1);
    if (loggedFailure !== null || lastError === null) {
      logger.info({ broker, clientId: config.clientId, sessionPresent }, 'MQTT connected');
    }
    loggedFailure = null;
    pump();
    for (const hook of readyHooks) {
      try {
        hook();
      } catch (err) {
        logger.error({ err }, 'MQTT ready hook failed');
      }
    }
  }

  /** Subscribes `filters` at QoS 1; false (and the connection dropped for a later retry) when refused. */
  async function subscribeAll(c: MqttClient, filters: string[]): Promise<boolean> {
    if (filters.length > 0) {
      try {
        const granted = await c.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])), {
          properties: {},
        });
        const refused = granted.filter((g) => g.qos > 2).map((g) => g.topic);
        if (refused.length > 0) {
          fail('MQTT_NOT_AUTHORIZED', `subscription to ${refused.join(', ')} not authorized`, 'not_authorized');
          // Permissions may be granted on the broker's side at any time: try again later.
          c.stream.destroy();
          return false;
        }
      } catch (err) {
        if (!c.connected) return false; // the close handler reconnects
        fail('MQTT_NOT_AUTHORIZED', `subscribe failed: ${(err as Error).message}`, 'not_authorized');
        c.stream.destroy();
        return false;
      }
    }
    return c.connected && !stopping;
  }

  function build(): MqttClient {
    const options: IClientOptions = {
      clientId: config.clientId,
      protocolVersion: 5,
      clean: false,
      // The broker does not forward messages above 16 KiB to the hub (frames are ≤ 4096 bytes [PROTO-1.4]).
      properties: {
        sessionExpiryInterval: config.sessionExpirySec,
        receiveMaximum: config.maxInflight,
        maximumPacketSize: 16 * 1024 + 512,
      },
      reconnectPeriod: 0,
      connectTimeout: opts.connectTimeoutMs ?? 10_000,
      queueQoSZero: false,
      resubscribe: false,
      keepalive: 30,
      ...(config.username !== undefined ? { username: config.username } : {}),
      ...(config.password !== undefined ? { password: config.password } : {}),
      ...(will ? { will: willOption(will) } : {}),
    };
    const c = mqtt.connect(config.url, options);
    // Inbound messages: dispatched here, PUBACK (the callback) withheld while input is held.
    c.handleMessage = (packet, done) => {
      if (stopping) return; // not acknowledged: the broker keeps it for the next start
      const topic = packet.topic;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const p = packet.properties;
      dispatch(
        topic,
        payload,
        p?.responseTopic !== undefined || p?.correlationData !== undefined
          ? ({ responseTopic: p.responseTopic, correlationData: p.correlationData } as ResponseProperties)
          : undefined,
      );
      if (holders.size > 0) heldAcks.push(() => done());
      else done();
    };
    c.on('connect', (connack) => {
      void onConnected(connack);
    });
    c.on('error', (err: Error & { code?: unknown }) => {
      const code = err.code;
      if (code === 134 || code === 135 || code === 4 || code === 5) {
        fail('MQTT_NOT_AUTHORIZED', err.message, 'not_authorized');
      } else fail('MQTT_UNREACHABLE', err.message, 'unreachable');
    });
    c.on('close', () => {
      const wasUp = linkUp;
      linkUp = false;
      generation++;
      inflight = 0;
      gauges();
      if (ready) {
        ready = false;
        metrics.mqttConnected.set(0);
        if (!stopping) {
          metrics.mqttConnectFailures.inc({ reason: 'lost' });
          lastError = { code: 'MQTT_UNREACHABLE', message: 'connection lost', atMs: Date.now() };
          state = 'connecting';
          logger.warn({ broker }, 'MQTT connection lost; reconnecting');
        }
      } else if (wasUp && !stopping && !attemptFailed) {
        // Disconnected while setting up, e.g. by the broker after the hub's own role changed.
        logger.debug({ broker }, 'MQTT connection closed during setup; reconnecting');
      } else if (!stopping && !attemptFailed) {
        fail('MQTT_UNREACHABLE', 'connection closed before CONNACK (timeout or refused)', 'unreachable');
      }
      scheduleReconnect();
    });
    return c;
  }

  function dispatch(topic: string, payload: Buffer, properties?: ResponseProperties): void {
    for (const [filter, handler] of subscriptions) {
      if (!topicMatches(filter, topic)) continue;
      try {
        handler(topic, payload, properties);
      } catch (err) {
        metrics.callbackErrors.inc({ component: 'mqtt' });
        logger.error({ err, topic }, 'MQTT message handler threw');
      }
    }
  }

  function pump(): void {
    const c = client;
    while (c && linkUp && queued() > 0 && inflight < config.maxInflight) {
      const m = queue[queueHead] as Outgoing;
      queue[queueHead] = undefined as unknown as Outgoing;
      queueHead++;
      send(c, m);
    }
    if (queueHead > 1024 && queueHead * 2 > queue.length) {
      queue = queue.slice(queueHead);
      queueHead = 0;
    }
    gauges();
  }

  function send(c: MqttClient, m: Outgoing): void {
    const properties = m.properties ? { properties: m.properties } : {};
    if (m.qos === 0) {
      c.publish(m.topic, toBuffer(m.payload), { qos: 0, retain: m.retain, ...properties });
      metrics.mqttMessages.inc({ direction: 'out', outcome: 'sent' });
      return;
    }
    inflight++;
    const gen = generation;
    c.publish(m.topic, toBuffer(m.payload), { qos: 1, retain: m.retain, ...properties }, (err) => {
      if (gen !== generation) return;
      inflight--;
      metrics.mqttMessages.inc({ direction: 'out', outcome: err ? 'failed' : 'sent' });
      pump();
    });
  }

  function drop(): void {
    metrics.mqttMessages.inc({ direction: 'out', outcome: 'dropped' });
    droppedSinceLog++;
    if (dropLogTimer) return;
    logger.warn(
      { code: 'MQTT_QUEUE_FULL', limit: config.offlineQueueMax, state },
      'MQTT queue full: dropping the oldest frames for devices',
    );
    droppedSinceLog = 0;
    dropLogTimer = setTimeout(() => {
      dropLogTimer = null;
      if (droppedSinceLog > 0) {
        logger.warn({ code: 'MQTT_QUEUE_FULL', repeated: droppedSinceLog }, 'MQTT queue full: frames dropped');
      }
      droppedSinceLog = 0;
    }, 10_000);
    dropLogTimer.unref();
  }

  return {
    start() {
      if (client) return;
      client = build();
    },

    async stop(graceMs = 2000) {
      if (state === 'stopped') return;
      const deadline = Date.now() + graceMs;
      while (ready && (queued() > 0 || inflight > 0) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      stopping = true;
      state = 'stopped';
      if (retryTimer) clearTimeout(retryTimer);
      if (dropLogTimer) clearTimeout(dropLogTimer);
      retryTimer = null;
      const c = client;
      client = null;
      ready = false;
      linkUp = false;
      metrics.mqttConnected.set(0);
      if (c) {
        // A graceful end waits for every publish mqtt.js still tracks, including ones of a connection
        // that died (it may never hear of them again): force the end then; the session persists either way.
        const tracked = Object.keys((c as unknown as { outgoing?: object }).outgoing ?? {}).length;
        // With a will (cluster membership), a graceful stop has the broker publish it too (0x04).
        await new Promise<void>((resolve) =>
          c.end(!c.connected || tracked > 0, will ? { reasonCode: 4 } : {}, () => resolve()),
        );
      }
      metrics.mqttInputPaused.set(0);
    },

    status: () => ({
      state,
      broker,
      clientId: config.clientId,
      lastError,
      sessionPresent,
      inflight,
      queued: queued(),
      inputHeld: holders.size > 0,
    }),

    isConnected: () => ready,

    publish(topic, payload, o = {}) {
      if (stopping) return;
      const m: Outgoing = { topic, payload, qos: o.qos ?? 1, retain: o.retain ?? false, properties: o.properties };
      if (client && linkUp && queued() === 0 && inflight < config.maxInflight) {
        send(client, m);
        gauges();
        return;
      }
      if (config.offlineQueueMax === 0) {
        drop();
        return;
      }
      if (queued() >= config.offlineQueueMax) {
        queue[queueHead] = undefined as unknown as Outgoing;
        queueHead++;
        drop();
      }
      queue.push(m);
      gauges();
    },

    subscribe(filter, handler, o = {}) {
      subscriptions.set(filter, handler);
      if (o.early) early.add(filter);
      if (client && linkUp) client.subscribe(filter, { qos: 1 });
    },

    onConnect(hook) {
      connectHooks.push(hook);
    },

    onReady(hook) {
      readyHooks.push(hook);
    },

    setWill(w) {
      will = w;
      if (client) client.options.will = w ? willOption(w) : undefined;
    },

    holdInput(holder) {
      holders.add(holder);
      metrics.mqttInputPaused.set(1);
    },

    releaseInput(holder) {
      if (!holders.delete(holder) || holders.size > 0) return;
      metrics.mqttInputPaused.set(0);
      const acks = heldAcks.splice(0);
      for (const ack of acks) ack();
    },
  };
}

/** MQTT topic filter matching (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const part = f[i];
    if (part === '#') return true;
    if (i >= t.length) return false;
    if (part !== '+' && part !== t[i]) return false;
  }
  return f.length === t.length;
}

function willOption(w: WillMessage): NonNullable<IClientOptions['will']> {
  return { topic: w.topic, payload: Buffer.from(toBuffer(w.payload)), qos: w.qos, retain: w.retain };
}

function toBuffer(payload: Uint8Array | string): Buffer | string {
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) return payload;
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

/** The broker URL without user info (for logs and /readyz). */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return 'invalid url';
  }
}
