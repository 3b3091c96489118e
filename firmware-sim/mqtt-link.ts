/**
 * The device's link over MQTT [PROTO-1.6] (`--transport mqtt`), behind the same {@link Connector}
 * interface as the WebSocket link, so the device code (session, outbox, replay) is unchanged:
 *
 * - a link is one broker connection: client id and username = the device id, password = its token,
 *   clean session, keepalive 30 s, MQTT 3.1.1 (what ESP32 MQTT clients speak);
 * - last will: a FATAL ERROR `CONNECTION_LOST` frame on the device's `up` topic (QoS 1, not retained),
 *   so the hub learns at once when the board dies; a deliberate close publishes it first, when a
 *   session is live (a normal DISCONNECT suppresses the will);
 * - the link "opens" once `.../down` is subscribed (QoS 1), before anything is published; frames go
 *   to `.../up` at QoS 1, and a send's `done` runs at the broker's PUBACK (not the durability
 *   promise: that is the hub's ACK, as over WebSocket); `bufferedAmount` counts bytes awaiting PUBACK;
 * - frames on `down` are the hub's; one received before this link's HELLO went out (a leftover of an
 *   earlier session) is ignored. A FATAL ERROR ends the session: over WebSocket the hub would close
 *   the socket, so this link ends its connection and reports the close with the error's close code;
 * - refused logins are reported like refused WebSocket handshakes (401; 403 for a refused
 *   subscription), so the device's statistics and drain logic treat them the same;
 * - liveness is MQTT's keepalive: `ping()` answers itself while connected (the broker drops a silent
 *   connection and publishes the will; mqtt.js drops a silent broker).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { decodeFrame, encodeFrame, MessageType } from '../server/codec/index.ts';
import { ERRORS, errorCodeFromWire } from '../server/errors.ts';
import type { Connector, LinkCloseInfo } from './link.ts';

export interface MqttConnectorOptions {
  /** MQTT_TOPIC_PREFIX of the hub (default `esp32hub`). */
  topicPrefix?: string;
  /** MQTT keepalive, s (default 30). */
  keepaliveSec?: number;
  /** CONNACK timeout, ms (default 10 s). */
  connectTimeoutMs?: number;
  /** TLS for mqtts:// (a private CA, or `rejectUnauthorized: false` for a self-signed test broker). */
  tls?: { ca?: string | Buffer; rejectUnauthorized?: boolean };
}

/** The will and the deliberate-close frame [PROTO-1.6]. */
export const CONNECTION_LOST_FRAME = encodeFrame({
  type: 'error',
  fatal: true,
  code: ERRORS.CONNECTION_LOST.wire,
  message: 'connection lost',
});

export function mqttConnector(options: MqttConnectorOptions = {}): Connector {
  const prefix = options.topicPrefix ?? 'esp32hub';
  return (request, handlers) => {
    const up = `${prefix}/v1/${request.deviceId}/up`;
    const down = `${prefix}/v1/${request.deviceId}/down`;
    const clientOptions: IClientOptions = {
      clientId: request.deviceId,
      username: request.deviceId,
      password: request.token,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      keepalive: options.keepaliveSec ?? 30,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
      will: { topic: up, payload: Buffer.from(CONNECTION_LOST_FRAME), qos: 1, retain: false },
      ...(options.tls ?? {}),
    };
    const client: MqttClient = mqtt.connect(request.url, clientOptions);
    let opened = false;
    let closed = false;
    let silenced = false;
    let helloSent = false;
    /** WELCOME seen and no FATAL ERROR since: a deliberate close tells the hub. */
    let sessionLive = false;
    let unacked = 0;
    let closeCode: number | null = null;
    let closeReason = '';
    let httpStatus: number | undefined;
    let error: string | undefined;

    const finish = () => {
      if (closed) return;
      closed = true;
      const info: LinkCloseInfo = { code: closeCode ?? 1006, reason: closeReason, opened };
      if (httpStatus !== undefined) info.httpStatus = httpStatus;
      else if (error !== undefined && !opened) info.error = error;
      handlers.close(info);
    };
    /** Ends the connection (gracefully: no will) and reports `code`. */
    const end = (code: number, reason: string) => {
      closeCode ??= code;
      closeReason ||= reason;
      if (client.connected) client.end(false, {}, () => finish());
      else client.end(true, {}, () => finish());
    };

    client.on('connect', () => {
      client.subscribe(down, { qos: 1 }, (err, granted) => {
        if (closed || silenced) return;
        if (err || !granted || granted.some((g) => g.qos > 2)) {
          httpStatus = 403;
          end(1008, `subscription to ${down} refused`);
          return;
        }
        opened = true;
        handlers.open();
      });
    });
    client.on('message', (_topic, payload) => {
      if (closed || silenced || !helloSent) return;
      const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
      const type = bytes[3];
      if (type === MessageType.WELCOME) sessionLive = true;
      handlers.message(bytes, true);
      if (type !== MessageType.ERROR) return;
      let code = 'INTERNAL' as keyof typeof ERRORS;
      try {
        const m = decodeFrame(bytes);
        if (m.type !== 'error' || !m.fatal) return;
        code = errorCodeFromWire(m.code) ?? 'INTERNAL';
      } catch {
        // The device itself reports the bad frame; the connection ends as below.
      }
      // The hub's session is over; over WebSocket it would close now.
      sessionLive = false;
      end(ERRORS[code].close ?? 1011, code);
    });
    client.on('error', (err: Error & { code?: string | number }) => {
      if (err.code === 4 || err.code === 5 || err.code === 134 || err.code === 135) httpStatus = 401;
      else error ??= typeof err.code === 'string' ? err.code : 'ERROR';
    });
    client.on('close', () => finish());

    return {
      send(data, done) {
        if (silenced) {
          done?.(); // into the void: as far as the board can tell, it went out
          return;
        }
        if (closed || !opened || !client.connected) {
          done?.(new Error('not open'));
          return;
        }
        const bytes =
          typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        if (bytes[3] === MessageType.HELLO) {
          helloSent = true;
          sessionLive = false;
        }
        unacked += bytes.byteLength;
        client.publish(up, bytes, { qos: 1 }, (err) => {
          unacked -= bytes.byteLength;
          done?.(err ?? undefined);
        });
      },
      get bufferedAmount() {
        return unacked;
      },
      ping() {
        if (silenced || closed || !client.connected) return;
        setImmediate(() => {
          if (!silenced && !closed && client.connected) handlers.pong();
        });
      },
      close(code = 1000, reason = '') {
        if (closed) return;
        if (sessionLive && client.connected && !silenced) {
          // Ending on purpose: say so, since DISCONNECT suppresses the will [PROTO-1.6].
          sessionLive = false;
          client.publish(up, Buffer.from(CONNECTION_LOST_FRAME), { qos: 1 });
        }
        end(code, reason);
      },
      terminate() {
        if (closed) return;
        // Power lost: no DISCONNECT, so the broker publishes the will.
        closeCode ??= 1006;
        client.stream?.destroy();
        client.end(true, {}, () => finish());
      },
      blackhole() {
        silenced = true;
        // Nothing in, nothing out (keepalive pings included): the broker's keepalive publishes the will.
        client.stream?.pause();
        client.stream?.cork();
      },
    };
  };
}
