/**
 * The simulator's MQTT link (firmware-sim/mqtt-link.ts) against a real Mosquitto, with a plain MQTT
 * client standing in for the hub: the last will and the deliberate-close frame [PROTO-1.6], down
 * subscribed before the link opens, a FATAL ERROR ending the link with the error's close code, a refused login reported as 401, and a silent (blackholed) link reported by
 * the broker's keepalive through the will.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Link, LinkCloseInfo } from '../../firmware-sim/link.ts';
import { mqttConnector } from '../../firmware-sim/mqtt-link.ts';
import { decodeFrame, encodeFrame, type Message } from '../../server/codec/index.ts';
import { ERRORS } from '../../server/errors.ts';
import { type MosquittoServer, startMosquitto } from '../harness/index.ts';
import { until } from './mqtt-retained.ts';

const hello = (deviceId: string): Message => ({
  type: 'hello',
  timeSynced: true,
  deviceId,
  firmwareVersion: 't',
  maxProtocolVersion: 1,
  bootId: 1,
  resetReason: 0,
  uptimeMs: 1,
  descriptorHash: 0,
  bufferedFrames: 0,
  droppedFrames: 0,
});
const welcome: Message = {
  type: 'welcome',
  acceptedVersion: 1,
  serverTimeMs: Date.now(),
  lastAck: null,
  descriptorsKnown: true,
  sampleIntervalMs: 0,
  heartbeatIntervalSec: 15,
  maxFrameBytes: 4096,
};

interface Opened {
  link: Link;
  received: Uint8Array[];
  closed: Promise<LinkCloseInfo>;
  opened: Promise<void>;
}

function openLink(url: string, deviceId: string, keepaliveSec = 30): Opened {
  const received: Uint8Array[] = [];
  let onOpen!: () => void;
  let onClose!: (i: LinkCloseInfo) => void;
  const opened = new Promise<void>((r) => {
    onOpen = r;
  });
  const closed = new Promise<LinkCloseInfo>((r) => {
    onClose = r;
  });
  const link = mqttConnector({ keepaliveSec })(
    { url, deviceId, token: 'esp32hub_not-checked-by-an-anonymous-broker' },
    { open: onOpen, message: (d) => received.push(d), pong: () => undefined, close: onClose },
  );
  return { link, received, closed, opened };
}

describe('simulator MQTT link (real Mosquitto)', () => {
  let broker: MosquittoServer;
  let hub: MqttClient;
  const up: { topic: string; frame: Message }[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
    hub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    hub.on('message', (topic, payload) => up.push({ topic, frame: decodeFrame(new Uint8Array(payload)) }));
    await hub.subscribeAsync('esp32hub/v1/+/up', { qos: 1 });
  });
  afterAll(async () => {
    await hub?.endAsync();
    await broker?.stop();
  });
  const upOf = (id: string) => up.filter((u) => u.topic === `esp32hub/v1/${id}/up`).map((u) => u.frame);
  const sent = (link: Link, m: Message) =>
    new Promise<void>((r, j) => link.send(encodeFrame(m), (e) => (e ? j(e) : r())));

  it('opens with down subscribed, and ends on a FATAL ERROR with its close code', async () => {
    const l = openLink(broker.url, 'link-a');
    await l.opened;
    await sent(l.link, hello('link-a'));
    await until('the HELLO at the hub', () => upOf('link-a').length === 1);
    await hub.publishAsync('esp32hub/v1/link-a/down', Buffer.from(encodeFrame(welcome)), { qos: 1 });
    await until('the WELCOME at the link', () => l.received.length === 1);
    const fatal = { type: 'error', fatal: true, code: ERRORS.REVOKED.wire, message: 'revoked' } as Message;
    await hub.publishAsync('esp32hub/v1/link-a/down', Buffer.from(encodeFrame(fatal)), { qos: 1 });
    const info = await l.closed;
    expect(info).toMatchObject({ code: ERRORS.REVOKED.close ?? 1011, opened: true });
    expect(l.received.map((f) => decodeFrame(f).type)).toEqual(['welcome', 'error']);
    // The session was over: no CONNECTION_LOST from the device, and the clean DISCONNECT sent no will.
    expect(upOf('link-a').map((f) => f.type)).toEqual(['hello']);
  });

  it('a deliberate close during a session publishes CONNECTION_LOST; a power loss lets the broker publish the will', async () => {
    const a = openLink(broker.url, 'link-b');
    await a.opened;
    await sent(a.link, hello('link-b'));
    await hub.publishAsync('esp32hub/v1/link-b/down', Buffer.from(encodeFrame(welcome)), { qos: 1 });
    await until('the WELCOME', () => a.received.length === 1);
    a.link.close(1000, 'bye');
    await a.closed;
    await until('CONNECTION_LOST from the closing board', () => upOf('link-b').length === 2);
    expect(upOf('link-b')[1]).toMatchObject({ type: 'error', fatal: true, code: ERRORS.CONNECTION_LOST.wire });

    const b = openLink(broker.url, 'link-c');
    await b.opened;
    b.link.terminate();
    expect((await b.closed).code).toBe(1006);
    await until('the will', () => upOf('link-c').length === 1);
    expect(upOf('link-c')[0]).toMatchObject({ type: 'error', fatal: true, code: ERRORS.CONNECTION_LOST.wire });
  });

  it('a silent link: the broker’s keepalive publishes the will', async () => {
    const l = openLink(broker.url, 'link-d', 1);
    await l.opened;
    l.link.blackhole();
    await until('the will after 1.5 × keepalive', () => upOf('link-d').length === 1);
    expect(upOf('link-d')[0]).toMatchObject({ type: 'error', code: ERRORS.CONNECTION_LOST.wire });
    l.link.terminate();
    await l.closed;
  });

  it('a refused login is reported as a 401 refusal', async () => {
    const secured = await startMosquitto({ dynsec: { adminUser: 'admin', adminPassword: 'admin-password-1' } });
    try {
      const l = openLink(secured.url, 'nobody');
      const info = await l.closed;
      expect(info).toMatchObject({ opened: false, httpStatus: 401 });
    } finally {
      await secured.stop();
    }
  });
});
