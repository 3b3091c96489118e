// Browser security of /v1/live with real sockets and real headless Chromium: a page on an unlisted
// Origin is refused with 403 before the upgrade and receives nothing; an allowlisted origin connects;
// credentials (password mode), capacity (503) and inbound limits (4 KiB, text only) are enforced.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { configFrom, type EnvName } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { freePort, type LoopbackSite, launchChromium, servePage } from '../harness/index.ts';

const PASSWORD = 'a dashboard password';
const dirs: string[] = [];
const hubs: Hub[] = [];

async function startHub(env: Partial<Record<EnvName, string>>): Promise<{ hub: Hub; port: number }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'live-security-'));
  dirs.push(dataDir);
  const config = configFrom({ HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dataDir, ...env });
  const live = liveExtension(config);
  const hub = buildHub(config, {
    extensions: [live],
    authenticate: () => null,
    logger: createLogger('silent'),
    readAccess: live.readAccess,
  });
  hubs.push(hub);
  const { port } = await hub.start();
  return { hub, port };
}

afterAll(async () => {
  for (const hub of hubs) await hub.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function counter(hub: Hub, name: string, labels: Record<string, string>): Promise<number> {
  const m = await hub.metrics.registry.getSingleMetric(name)?.get();
  return m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))?.value ?? 0;
}

/** A Node client's handshake: 'open' with the first message, or the refusal's status and body. */
function handshake(
  port: number,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; ws?: WebSocket; first?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/live`, { headers });
    ws.once('message', (data) => resolve({ status: 101, body: '', ws, first: String(data) }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', (err) => {
      if (!String(err.message).startsWith('Unexpected server response')) reject(err);
    });
  });
}

/** A page script that tries the hub's live endpoint and records everything that happens. */
const probePage = (hubPort: number) => `<!doctype html><html><body><script type="module">
  const log = [];
  window.liveLog = log;
  const ws = new WebSocket('ws://127.0.0.1:${hubPort}/v1/live');
  ws.onopen = () => { log.push('open'); ws.send(JSON.stringify({ type: 'subscribe', sub: 'f' })); };
  ws.onmessage = (e) => log.push('message:' + JSON.parse(e.data).type);
  ws.onerror = () => log.push('error');
  ws.onclose = (e) => { log.push('close:' + e.code); window.liveDone = true; };
  try {
    const r = await fetch('http://127.0.0.1:${hubPort}/api/devices');
    log.push('fetch:' + r.status);
  } catch { log.push('fetch:blocked'); }
</script></body></html>`;

describe('Origin allowlist in a real browser', () => {
  let browser: Browser;
  let unlisted: LoopbackSite;
  let listed: LoopbackSite;
  let hub: Hub;
  let port: number;

  beforeAll(async () => {
    // The pages need the hub's port and the hub's allowlist needs a page's origin: pick the port first.
    port = await freePort();
    listed = await servePage(probePage(port));
    unlisted = await servePage(probePage(port));
    ({ hub } = await startHub({ HUB_PORT: String(port), HUB_ALLOWED_ORIGINS: listed.origin }));
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await unlisted?.close();
    await listed?.close();
  });

  async function probe(site: LoopbackSite): Promise<string[]> {
    const page = await browser.newPage();
    await page.goto(site.url);
    await page.waitForFunction(() => {
      const log = (window as unknown as { liveLog?: string[] }).liveLog ?? [];
      return (
        log.some((e) => e.startsWith('fetch:')) && (log.includes('message:snapshot') || log.includes('close:1006'))
      );
    });
    const log = await page.evaluate(() => (window as unknown as { liveLog: string[] }).liveLog);
    await page.close();
    return log;
  }

  it('refuses a page on an unlisted origin with 403 before the upgrade; it receives nothing', async () => {
    const before = await counter(hub, 'hub_handshakes_rejected_total', { endpoint: 'live', code: 'FORBIDDEN_ORIGIN' });
    const log = await probe(unlisted);
    // No open, no message: the handshake failed (browsers report it as 1006); the REST answer is not
    // readable cross-origin either (the hub sends no CORS headers).
    expect(log.filter((e) => e === 'open' || e.startsWith('message:'))).toEqual([]);
    expect(log).toContain('error');
    expect(log).toContain('close:1006');
    expect(log).toContain('fetch:blocked');
    expect(await counter(hub, 'hub_handshakes_rejected_total', { endpoint: 'live', code: 'FORBIDDEN_ORIGIN' })).toBe(
      before + 1,
    );
  });

  it('lets a page on an allowlisted origin subscribe', async () => {
    const log = await probe(listed);
    expect(log.filter((e) => e === 'open' || e.startsWith('message:'))).toEqual([
      'open',
      'message:hello',
      'message:subscribed',
      'message:snapshot',
    ]);
  });

  it('answers a refused handshake with 403 FORBIDDEN_ORIGIN as JSON, and accepts the hub’s own origin', async () => {
    const r = await handshake(port, { origin: unlisted.origin });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual({ error: { code: 'FORBIDDEN_ORIGIN', message: 'origin not allowed' } });
    const own = await handshake(port, { origin: `http://127.0.0.1:${port}` });
    expect(own.status).toBe(101);
    expect(JSON.parse(own.first ?? '{}')).toMatchObject({ type: 'hello', version: 1, role: 'operator' });
    own.ws?.close();
  });
});

describe('credentials, capacity and inbound limits', () => {
  it('password mode: 401 without credentials, Bearer works, a wrong one is 401 (never a URL parameter)', async () => {
    const { port } = await startHub({ HUB_DASHBOARD_PASSWORD: PASSWORD });
    const origin = `http://127.0.0.1:${port}`;
    expect((await handshake(port, { origin })).status).toBe(401);
    expect((await handshake(port, { origin, authorization: 'Bearer nope' })).status).toBe(401);
    const ok = await handshake(port, { origin, authorization: `Bearer ${PASSWORD}` });
    expect(ok.status).toBe(101);
    expect(JSON.parse(ok.first ?? '{}')).toMatchObject({ type: 'hello', role: 'viewer' });
    ok.ws?.close();
  });

  it('refuses clients beyond LIVE_MAX_CLIENTS with 503 AT_CAPACITY', async () => {
    const { port, hub } = await startHub({ LIVE_MAX_CLIENTS: '2' });
    const a = await handshake(port, {});
    const b = await handshake(port, {});
    const c = await handshake(port, {});
    expect([a.status, b.status, c.status]).toEqual([101, 101, 503]);
    expect(JSON.parse(c.body).error.code).toBe('AT_CAPACITY');
    expect(await counter(hub, 'hub_handshakes_rejected_total', { endpoint: 'live', code: 'AT_CAPACITY' })).toBe(1);
    a.ws?.close();
    b.ws?.close();
  });

  it('closes a client that sends more than 4 KiB (1009) or a binary message (1003)', async () => {
    const { port, hub } = await startHub({});
    const closeCode = async (send: (ws: WebSocket) => void): Promise<number> => {
      const r = await handshake(port, {});
      const ws = r.ws as WebSocket;
      const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
      send(ws);
      return closed;
    };
    const big = JSON.stringify({ type: 'subscribe', sub: 'x', pad: 'x'.repeat(4096) });
    expect(await closeCode((ws) => ws.send(big))).toBe(1009);
    expect(await closeCode((ws) => ws.send(Buffer.from([1, 2, 3]), { binary: true }))).toBe(1003);
    expect(await counter(hub, 'hub_live_evictions_total', { reason: 'too_big' })).toBe(1);
    expect(await counter(hub, 'hub_live_evictions_total', { reason: 'policy' })).toBe(1);
  });
});
