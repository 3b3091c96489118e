/**
 * A protocol-v1 device over MQTT for the integration tests [PROTO-1.6]: a real `mqtt` client that
 * publishes frames to `esp32hub/v1/<id>/up` (QoS 1), reads `.../down`, and sets its last will to a
 * FATAL ERROR `CONNECTION_LOST` on its own up topic (the documented presence will). With `outbox`
 * it behaves like the firmware: it keeps every TELEMETRY frame until an ACK covers it, replays the
 * rest after WELCOME, and says HELLO again when the hub answers with a FATAL ERROR (hub restarted,
 * session ended).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { decodeFrame, encodeFrame, type Message } from '../../server/codec/index.ts';
import { ERRORS } from '../../server/errors.ts';
import { TEST_CHANNELS, TEST_HASH, telemetry } from './ingest-device-client.ts';

export interface MqttDeviceOptions {
  deviceId: string;
  /** Broker login (dynsec: username = device id, password = its hub token). */
  password?: string;
  username?: string;
  clientId?: string;
  prefix?: string;
}

/** The presence will [PROTO-1.6]: a FATAL ERROR `CONNECTION_LOST` frame. */
export function connectionLostWill(): Uint8Array {
  return encodeFrame({ type: 'error', fatal: true, code: ERRORS.CONNECTION_LOST.wire, message: 'connection lost' });
}

export class MqttTestDevice {
  readonly received: Message[] = [];
  readonly history: Message[] = [];
  private waiters: { pred: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  readonly up: string;
  readonly down: string;
  closed = false;
  /** Outbox mode: frames kept until acknowledged, by seq. */
  private outbox: Map<number, Uint8Array> | null = null;
  private bootId = 0;
  private rehelloTimer: NodeJS.Timeout | null = null;
  helloCount = 0;
  /** Between HELLO and WELCOME the device publishes nothing new [PROTO-1.6]: frames wait in the outbox. */
  private awaitingWelcome = false;

  private constructor(
    readonly client: MqttClient,
    readonly deviceId: string,
    prefix: string,
  ) {
    this.up = `${prefix}/v1/${deviceId}/up`;
    this.down = `${prefix}/v1/${deviceId}/down`;
    client.on('message', (topic, payload) => {
      if (topic !== this.down) return;
      const m = decodeFrame(new Uint8Array(payload));
      this.history.push(m);
      this.onFrame(m);
      const w = this.waiters.find((x) => x.pred(m));
      if (w) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      } else this.received.push(m);
    });
    client.on('close', () => {
      this.closed = true;
    });
    client.on('error', () => undefined);
  }

  /** Connects (MQTT 5, clean session, will set) and subscribes to its down topic. */
  static async connect(url: string, o: MqttDeviceOptions): Promise<MqttTestDevice> {
    const prefix = o.prefix ?? 'esp32hub';
    const client = await mqtt.connectAsync(url, {
      protocolVersion: 5,
      clientId: o.clientId ?? o.deviceId,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      keepalive: 5,
      ...(o.password !== undefined ? { username: o.username ?? o.deviceId, password: o.password } : {}),
      will: { topic: `${prefix}/v1/${o.deviceId}/up`, payload: Buffer.from(connectionLostWill()), qos: 1 },
    });
    const d = new MqttTestDevice(client, o.deviceId, prefix);
    await client.subscribeAsync(d.down, { qos: 1 });
    return d;
  }

  /** Publishes a frame at QoS 1; resolves on PUBACK (rejects when the broker refuses, MQTT 5). */
  async send(m: Message | Uint8Array, topic = this.up): Promise<void> {
    const bytes = m instanceof Uint8Array ? m : encodeFrame(m);
    await this.client.publishAsync(topic, Buffer.from(bytes), { qos: 1 });
  }

  next<T extends Message['type']>(type: T, timeoutMs = 10_000): Promise<Extract<Message, { type: T }>> {
    return this.waitFor((m) => m.type === type, timeoutMs) as Promise<Extract<Message, { type: T }>>;
  }

  waitFor(pred: (m: Message) => boolean, timeoutMs = 10_000): Promise<Message> {
    const seen = this.received.find(pred);
    if (seen) {
      this.received.splice(this.received.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.deviceId}: timed out waiting for a frame`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  ackOf(bootId: number, seq: number, timeoutMs = 10_000): Promise<Message> {
    return this.waitFor((m) => m.type === 'ack' && m.bootId === bootId && m.seq >= seq, timeoutMs);
  }

  helloFrame(bootId: number): Message {
    return {
      type: 'hello',
      timeSynced: true,
      deviceId: this.deviceId,
      firmwareVersion: 'mqtt-test-1.0.0',
      maxProtocolVersion: 1,
      bootId,
      resetReason: 1,
      uptimeMs: 1000,
      descriptorHash: TEST_HASH,
      bufferedFrames: this.outbox?.size ?? 0,
      droppedFrames: 0,
    };
  }

  /** HELLO → WELCOME (→ DESCRIPTORS when the hub does not know them). */
  async hello(bootId: number): Promise<Extract<Message, { type: 'welcome' }>> {
    this.bootId = bootId;
    this.helloCount++;
    const welcome = this.next('welcome');
    await this.send(this.helloFrame(bootId));
    const w = await welcome;
    if (!w.descriptorsKnown) await this.send({ type: 'descriptors', channels: TEST_CHANNELS });
    return w;
  }

  /** Outbox mode: from now on TELEMETRY is kept until acknowledged and replayed after WELCOME. */
  useOutbox(bootId: number): void {
    this.outbox = new Map();
    this.bootId = bootId;
  }

  /** Outbox mode: produces TELEMETRY `seq` (kept until acknowledged) and publishes it. */
  produce(seq: number, baseTime: number, n = 3): void {
    const frame = encodeFrame(telemetry(this.bootId, seq, baseTime, n));
    this.outbox?.set(seq, frame);
    if (!this.awaitingWelcome) this.client.publish(this.up, Buffer.from(frame), { qos: 1 });
  }

  /** Outbox mode: like `produce`, with a frame built by the caller (its seq must be `seq`). */
  produceFrame(seq: number, frame: Uint8Array): void {
    this.outbox?.set(seq, frame);
    if (!this.awaitingWelcome) this.client.publish(this.up, Buffer.from(frame), { qos: 1 });
  }

  /** Frames still waiting for an ACK (outbox mode). */
  pending(): number {
    return this.outbox?.size ?? 0;
  }

  private onFrame(m: Message): void {
    const outbox = this.outbox;
    if (!outbox) return;
    if (m.type === 'ack' && m.bootId === this.bootId) {
      for (const seq of outbox.keys()) if (seq <= m.seq) outbox.delete(seq);
    } else if (m.type === 'welcome') {
      this.awaitingWelcome = false;
      if (m.lastAck && m.lastAck.bootId === this.bootId) {
        for (const seq of outbox.keys()) if (seq <= m.lastAck.seq) outbox.delete(seq);
      }
      if (!m.descriptorsKnown) {
        this.client.publish(this.up, Buffer.from(encodeFrame({ type: 'descriptors', channels: TEST_CHANNELS })), {
          qos: 1,
        });
      }
      for (const seq of [...outbox.keys()].sort((a, b) => a - b)) {
        this.client.publish(this.up, Buffer.from(outbox.get(seq) as Uint8Array), { qos: 1 });
      }
    } else if (m.type === 'error' && m.fatal && !this.rehelloTimer) {
      // The hub ended the session (restart, shutdown): say HELLO again, as the firmware does.
      this.rehelloTimer = setTimeout(() => {
        this.rehelloTimer = null;
        this.helloCount++;
        this.awaitingWelcome = true;
        if (!this.closed)
          this.client.publish(this.up, Buffer.from(encodeFrame(this.helloFrame(this.bootId))), { qos: 1 });
      }, 50);
    }
  }

  /** Graceful close: the device ends its session itself (a FATAL ERROR, as its will would), then DISCONNECT. */
  async close(): Promise<void> {
    if (this.rehelloTimer) clearTimeout(this.rehelloTimer);
    this.rehelloTimer = null;
    if (this.closed) return;
    await this.send(connectionLostWill()).catch(() => undefined);
    await this.client.endAsync(false);
  }

  /** Drops the TCP connection without DISCONNECT: the broker publishes the will. */
  kill(): void {
    if (this.rehelloTimer) clearTimeout(this.rehelloTimer);
    this.client.stream.destroy();
    this.client.end(true);
  }
}
