// Dashboard access: open mode (loopback + trusted Host), password mode (login form → HttpOnly
// SameSite=Strict cookie, Bearer for programs), operator vs read-only, CSRF checks for writes.
// Served by a real node:http server on loopback.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { configFrom, type EnvName } from '../../server/config/index.ts';
import { createDashboardAuth, type DashboardAuth } from '../../server/http/dashboard-auth.ts';
import { createMetrics } from '../../server/metrics/index.ts';

const PASSWORD = 'correct horse battery';
const ADMIN = 'A'.repeat(40);

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

/** Serves: /login and /logout from the auth, /check → the check result as JSON, /write → checkWrite. */
async function serve(
  env: Partial<Record<EnvName, string>>,
  now?: () => number,
): Promise<{ port: number; auth: DashboardAuth }> {
  const auth = createDashboardAuth({ config: configFrom(env), metrics: createMetrics(), ...(now ? { now } : {}) });
  server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/login') return auth.handleLogin(req, res);
    if (path === '/logout') return auth.handleLogout(req, res);
    const result = path === '/write' ? auth.checkWrite(req) : auth.check(req);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, auth };
}

function send(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<Reply>((resolve, reject) => {
    const h: Record<string, string> = { host: `127.0.0.1:${port}`, ...headers };
    if (body !== undefined) {
      h['content-type'] ??= 'application/x-www-form-urlencoded';
      h['content-length'] = String(Buffer.byteLength(body));
    }
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const check = async (port: number, headers: Record<string, string> = {}, path = '/check') =>
  JSON.parse((await send(port, 'GET', path, headers)).text);

function cookieOf(reply: Reply): string {
  const set = reply.headers['set-cookie'];
  const first = Array.isArray(set) ? set[0] : set;
  if (!first) throw new Error('no Set-Cookie');
  return first.split(';')[0] as string;
}

describe('open mode (no dashboard password)', () => {
  it('serves loopback peers under a trusted Host; operator when no admin token exists', async () => {
    const { port } = await serve({});
    expect(await check(port)).toEqual({ ok: true, principal: { role: 'operator', via: 'open' } });
    expect(await check(port, { host: `localhost:${port}` })).toMatchObject({ ok: true });
  });

  it('is read-only when an admin token exists, until the admin token is entered', async () => {
    const { port } = await serve({ HUB_ADMIN_TOKEN: ADMIN });
    expect(await check(port)).toEqual({ ok: true, principal: { role: 'viewer', via: 'open' } });
    const login = await send(port, 'POST', '/login', {}, `password=${ADMIN}`);
    expect(login.status).toBe(303);
    expect(await check(port, { cookie: cookieOf(login) })).toEqual({
      ok: true,
      principal: { role: 'operator', via: 'session' },
    });
  });

  it('refuses a Host name DNS rebinding could point at the hub', async () => {
    const { port } = await serve({});
    expect(await check(port, { host: `attacker.example:${port}` })).toMatchObject({
      ok: false,
      code: 'FORBIDDEN_ORIGIN',
    });
    const ok = await serve({ HUB_PUBLIC_URL: 'http://hub.lan:8080' });
    expect(await check(ok.port, { host: 'hub.lan:8080' })).toMatchObject({ ok: true });
  });

  it('refuses peers that are not on loopback', () => {
    const auth = createDashboardAuth({ config: configFrom({}) });
    const req = {
      headers: { host: '10.0.0.2:8080' },
      socket: { remoteAddress: '10.0.0.7' },
    } as unknown as IncomingMessage;
    expect(auth.check(req)).toMatchObject({ ok: false, code: 'UNAUTHORIZED' });
  });
});

describe('password mode', () => {
  it('needs a login; the cookie is HttpOnly, SameSite=Strict, random and expires', async () => {
    let t = 1_000_000;
    const { port, auth } = await serve({ HUB_DASHBOARD_PASSWORD: PASSWORD }, () => t);
    expect(await check(port)).toMatchObject({ ok: false, code: 'UNAUTHORIZED' });
    const form = await send(port, 'GET', '/login');
    expect(form.status).toBe(200);
    expect(form.text).toContain('<form method="post" action="/login">');
    expect(form.headers['content-security-policy']).toContain("default-src 'none'");

    const login = await send(port, 'POST', '/login', {}, `password=${encodeURIComponent(PASSWORD)}`);
    expect(login.status).toBe(303);
    expect(login.headers.location).toBe('/');
    const set = String(login.headers['set-cookie']);
    expect(set).toMatch(/^hub_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    const cookie = cookieOf(login);
    expect(await check(port, { cookie })).toEqual({ ok: true, principal: { role: 'viewer', via: 'session' } });

    const second = cookieOf(await send(port, 'POST', '/login', {}, `password=${encodeURIComponent(PASSWORD)}`));
    expect(second).not.toBe(cookie);
    expect(auth.sessionCount()).toBe(2);

    t += 12 * 3600_000;
    expect(await check(port, { cookie })).toMatchObject({ ok: false, code: 'UNAUTHORIZED' });
  });

  it('answers a wrong password with the form again (401) and rate-limits failures per peer', async () => {
    const { port } = await serve({ HUB_DASHBOARD_PASSWORD: PASSWORD });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await send(port, 'POST', '/login', {}, 'password=nope')).status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses[10]).toBe(429);
    // Even the right password waits out the window.
    expect((await send(port, 'POST', '/login', {}, `password=${encodeURIComponent(PASSWORD)}`)).status).toBe(429);
  });

  it('accepts Bearer credentials for programs (never a URL parameter)', async () => {
    const { port } = await serve({ HUB_DASHBOARD_PASSWORD: PASSWORD, HUB_ADMIN_TOKEN: ADMIN });
    expect(await check(port, { authorization: `Bearer ${ADMIN}` })).toEqual({
      ok: true,
      principal: { role: 'operator', via: 'bearer' },
    });
    expect(await check(port, { authorization: 'Bearer wrong' })).toMatchObject({ ok: false, code: 'UNAUTHORIZED' });
    expect((await send(port, 'GET', `/check?password=${encodeURIComponent(PASSWORD)}`)).text).toContain('UNAUTHORIZED');
  });

  it('refuses a login posted from a foreign origin, and logout ends the session', async () => {
    const { port } = await serve({ HUB_DASHBOARD_PASSWORD: PASSWORD });
    const body = `password=${encodeURIComponent(PASSWORD)}`;
    expect((await send(port, 'POST', '/login', { origin: 'http://evil.example' }, body)).status).toBe(403);
    const cookie = cookieOf(await send(port, 'POST', '/login', { origin: `http://127.0.0.1:${port}` }, body));
    const out = await send(port, 'POST', '/logout', { cookie, origin: `http://127.0.0.1:${port}` });
    expect(out.status).toBe(303);
    expect(String(out.headers['set-cookie'])).toContain('Max-Age=0');
    expect(await check(port, { cookie })).toMatchObject({ ok: false });
  });
});

describe('checkWrite (state-changing requests)', () => {
  it('requires an allowed Origin for cookie and open sessions, not for Bearer', async () => {
    const { port } = await serve({ HUB_DASHBOARD_PASSWORD: PASSWORD, HUB_ADMIN_TOKEN: ADMIN });
    const cookie = cookieOf(await send(port, 'POST', '/login', {}, `password=${ADMIN}`));
    const own = `http://127.0.0.1:${port}`;
    expect(await check(port, { cookie }, '/write')).toMatchObject({ ok: false, code: 'FORBIDDEN_ORIGIN' });
    expect(await check(port, { cookie, origin: 'http://evil.example' }, '/write')).toMatchObject({
      ok: false,
      code: 'FORBIDDEN_ORIGIN',
    });
    expect(await check(port, { cookie, origin: own }, '/write')).toMatchObject({ ok: true });
    expect(await check(port, { authorization: `Bearer ${ADMIN}` }, '/write')).toMatchObject({ ok: true });
  });
});
