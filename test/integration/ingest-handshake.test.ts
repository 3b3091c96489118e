/**
 * Device handshake refusals over real sockets against a real hub with the real device registry
 * [PROTO-1.1, PROTO-1.2]: every refusal is an HTTP answer before any WebSocket exists, coded and
 * counted, and nothing reaches a session or the pipeline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUBPROTOCOL } from '../../server/codec/index.ts';
import { startTestHub, TestDevice, type TestHub } from './ingest-device-client.ts';

describe('device handshake', () => {
  let h: TestHub;
  let token: string;

  beforeAll(async () => {
    h = await startTestHub();
    token = await h.addDevice('esp-handshake');
  });
  afterAll(async () => {
    await h?.stop();
    await h?.dir.remove();
  });

  it('refuses a missing token with 401 and a coded body', async () => {
    const r = await TestDevice.refused(h.url, {});
    expect(r.status).toBe(401);
    expect(r.body).toMatch(/^UNAUTHORIZED: /);
  });

  it('refuses a wrong token with 401', async () => {
    const r = await TestDevice.refused(h.url, { token: `${token.slice(0, -4)}AAAA` });
    expect(r.status).toBe(401);
    expect((await TestDevice.refused(h.url, { headers: { Authorization: `Basic ${token}` } })).status).toBe(401);
  });

  it('refuses an unknown or missing subprotocol with 400, even with a valid token', async () => {
    const unknown = await TestDevice.refused(h.url, { token, protocols: ['esp32hub.v2'] });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatch(/^BAD_SUBPROTOCOL: /);
    expect((await TestDevice.refused(h.url, { token, protocols: [] })).status).toBe(400);
  });

  it('refuses unknown upgrade paths with 404', async () => {
    const r = await TestDevice.refused(h.url.replace('/v1/device', '/v1/nothing'), { token });
    expect(r.status).toBe(404);
  });

  it('counts refusals by code and lets nothing reach the pipeline', async () => {
    expect(await h.metricValue('hub_handshakes_rejected_total', { endpoint: 'device', code: 'UNAUTHORIZED' })).toBe(3);
    expect(await h.metricValue('hub_handshakes_rejected_total', { endpoint: 'device', code: 'BAD_SUBPROTOCOL' })).toBe(
      2,
    );
    expect(await h.metricValue('hub_frames_received_total')).toBe(0);
    expect(await h.metricValue('hub_bytes_received_total')).toBe(0);
    expect(await h.metricValue('hub_device_sessions')).toBe(0);
    expect(h.hub.context().log.headOffset()).toBe(0);
  });

  it('accepts a valid token: esp32hub.v1 negotiated, no permessage-deflate', async () => {
    const d = await TestDevice.connect(h.url, { token, protocols: ['other', SUBPROTOCOL] });
    expect(d.ws.protocol).toBe(SUBPROTOCOL);
    expect(d.ws.extensions).toBe('');
    const welcome = await d.hello('esp-handshake', 1);
    expect(welcome.type).toBe('welcome');
    await d.close();
  });

  it('refuses a revoked token with 401', async () => {
    const t2 = await h.addDevice('esp-revoked');
    await h.registry.revoke('esp-revoked');
    expect((await TestDevice.refused(h.url, { token: t2 })).status).toBe(401);
  });

  it('answers an oversized message with TOO_LARGE and 1009, and a message over maxPayload with 1009', async () => {
    const d = await TestDevice.connect(h.url, { token });
    await d.hello('esp-handshake', 2);
    const big = new Uint8Array(5000);
    big.set([0x45, 0x53, 1, 4]); // a TELEMETRY header, then more bytes than a frame may have [PROTO-1.4]
    d.sendRaw(big);
    const err = await d.next('error');
    expect(err).toMatchObject({ fatal: true, code: 103 });
    expect(await d.closed()).toBe(1009);

    const d2 = await TestDevice.connect(h.url, { token });
    d2.sendRaw(new Uint8Array(17 * 1024));
    expect(await d2.closed()).toBe(1009);
  });
});

describe('handshake rate and capacity limits', () => {
  let h: TestHub;
  let token: string;

  beforeAll(async () => {
    h = await startTestHub({ DEVICE_HANDSHAKES_PER_SEC: '1', DEVICE_MAX_CONNECTIONS: '1' });
    token = await h.addDevice('esp-limits');
  });
  afterAll(async () => {
    await h?.stop();
    await h?.dir.remove();
  });

  it('answers 429 with Retry-After once the handshake bucket is empty', async () => {
    const refusals = [];
    for (let i = 0; i < 5; i++) refusals.push(await TestDevice.refused(h.url, { token: 'wrong' }));
    // Burst of one per second: most of five back-to-back attempts are rate limited before auth runs.
    const limited = refusals.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(3);
    for (const r of limited) {
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1); // whole seconds to wait (RFC 9110 §10.2.3)
      expect(r.body).toMatch(/^RATE_LIMITED: /);
    }
    expect(await h.metricValue('hub_handshakes_rejected_total', { code: 'RATE_LIMITED' })).toBeGreaterThanOrEqual(3);
  });

  it('answers 503 when the hub holds its maximum of device connections', async () => {
    let first: TestDevice | null = null;
    while (!first) {
      first = await TestDevice.connect(h.url, { token }).catch(async (err: { status?: number }) => {
        if (err.status !== 429) throw err;
        await new Promise((r) => setTimeout(r, 300)); // wait for a handshake token
        return null;
      });
    }
    let status = 429;
    while (status === 429) {
      status = (await TestDevice.refused(h.url, { token })).status;
      if (status === 429) await new Promise((r) => setTimeout(r, 300));
    }
    expect(status).toBe(503);
    expect(await h.metricValue('hub_handshakes_rejected_total', { code: 'AT_CAPACITY' })).toBe(1);
    await first.close();
  });
});
