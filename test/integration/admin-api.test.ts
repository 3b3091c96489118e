/**
 * The admin API over real HTTP on a loopback port, backed by a real registry in a temp directory.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerAdminRoutes } from '../../server/http/admin.ts';
import { createRouter } from '../../server/http/router.ts';
import { type DeviceRegistry, openDeviceRegistry, REGISTRY_FILE_NAME } from '../../server/registry/index.ts';
import { capturingLogger, type Reply, request, type Served, serve } from '../unit/http-helpers.ts';

const ADMIN = 'admin-token-for-tests-0123456789abcdef';
const DEVICE_URL = 'ws://hub.example:8080/v1/device';
type ErrorReply = { error: { code: string; message: string } };
type Issued = { id: string; token: string; createdAt?: string; rotatedAt?: string; deviceUrl: string };

let dir: string;
let registry: DeviceRegistry;
let served: Served;
let log: ReturnType<typeof capturingLogger>;
let revoked: string[];

async function start(adminToken: string | null): Promise<void> {
  log = capturingLogger();
  registry = openDeviceRegistry({ dataDir: dir, logger: log.logger, watchIntervalMs: 0 });
  revoked = [];
  registry.onRevoked((id) => revoked.push(id));
  const router = createRouter({ logger: log.logger });
  registerAdminRoutes(router, { registry, adminToken, deviceUrl: DEVICE_URL, logger: log.logger });
  served = await serve(router);
}

function call(method: string, path: string, body?: unknown, token: string | null = ADMIN): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return request(served.port, method, path, {
    headers,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'admin-api-'));
});

afterEach(async () => {
  await served?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('admin API with an admin token configured', () => {
  beforeEach(() => start(ADMIN));

  it('adds a device: 201, the token once, no-store, and only a hash on disk', async () => {
    const res = await call('POST', '/api/admin/devices', { id: 'greenhouse-1' });
    expect(res.status).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers.location).toBe('/api/admin/devices/greenhouse-1');
    const issued = res.json as Issued;
    expect(issued).toMatchObject({ id: 'greenhouse-1', deviceUrl: DEVICE_URL });
    expect(issued.token).toMatch(/^esp32hub_[A-Za-z0-9_-]{43}$/);
    expect(registry.authenticate(issued.token)).toBe('greenhouse-1');
    expect(readFileSync(join(dir, REGISTRY_FILE_NAME), 'utf8')).not.toContain(issued.token);

    // Listing never shows the token (or its hash).
    const list = await call('GET', '/api/admin/devices');
    expect(list.status).toBe(200);
    expect(list.headers['cache-control']).toBe('no-store');
    expect(list.json).toEqual({
      devices: [{ id: 'greenhouse-1', revoked: false, createdAt: issued.createdAt, rotatedAt: null, revokedAt: null }],
    });
    expect(list.text).not.toContain(issued.token.slice(9, 30));
    const one = await call('GET', '/api/admin/devices/greenhouse-1');
    expect((one.json as { id: string }).id).toBe('greenhouse-1');
  });

  it('rotates: a new token works, the old one does not, and the live session is told to close', async () => {
    const first = (await call('POST', '/api/admin/devices', { id: 'dev-1' })).json as Issued;
    const res = await call('POST', '/api/admin/devices/dev-1/rotate');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const rotated = res.json as Issued;
    expect(rotated.token).not.toBe(first.token);
    expect(rotated.rotatedAt).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(registry.authenticate(first.token)).toBeNull();
    expect(registry.authenticate(rotated.token)).toBe('dev-1');
    expect(revoked).toEqual(['dev-1']);
  });

  it('revokes with DELETE (idempotent) and the live session is told to close', async () => {
    const issued = (await call('POST', '/api/admin/devices', { id: 'dev-1' })).json as Issued;
    const res = await call('DELETE', '/api/admin/devices/dev-1');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ id: 'dev-1', revoked: true });
    expect(registry.authenticate(issued.token)).toBeNull();
    expect(revoked).toEqual(['dev-1']);
    expect((await call('DELETE', '/api/admin/devices/dev-1')).status).toBe(200);
    expect(revoked).toEqual(['dev-1']);
    // Adding it again is refused; rotate is the way back.
    const again = await call('POST', '/api/admin/devices', { id: 'dev-1' });
    expect(again.status).toBe(409);
    expect((again.json as ErrorReply).error.code).toBe('DEVICE_EXISTS');
  });

  it.each([
    ['a duplicate id', { id: 'dup' }, 409, 'DEVICE_EXISTS'],
    ['an id outside the alphabet', { id: 'bad id!' }, 400, 'BAD_REQUEST'],
    ['an id too long', { id: 'x'.repeat(65) }, 400, 'BAD_REQUEST'],
    ['a missing id', {}, 400, 'BAD_REQUEST'],
    ['a non-string id', { id: 7 }, 400, 'BAD_REQUEST'],
    ['an unknown field', { id: 'ok-1', token: 'mine' }, 400, 'BAD_REQUEST'],
    ['an array body', '["dup"]', 400, 'BAD_REQUEST'],
    ['invalid JSON', '{"id":', 400, 'BAD_REQUEST'],
    ['a body over 1 KiB', { id: 'ok-2', pad: 'x'.repeat(2000) }, 413, 'PAYLOAD_TOO_LARGE'],
  ])('refuses %s', async (_name, body, status, code) => {
    await registry.add('dup');
    const res = await call('POST', '/api/admin/devices', body);
    expect(res.status).toBe(status);
    expect((res.json as ErrorReply).error.code).toBe(code);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(registry.list().map((d) => d.id)).toEqual(['dup']);
  });

  it('answers 404 NOT_FOUND for an unknown device', async () => {
    for (const [method, path] of [
      ['GET', '/api/admin/devices/ghost'],
      ['POST', '/api/admin/devices/ghost/rotate'],
      ['DELETE', '/api/admin/devices/ghost'],
    ] as const) {
      const res = await call(method, path);
      expect(res.status).toBe(404);
      expect((res.json as ErrorReply).error.code).toBe('NOT_FOUND');
    }
  });

  it('refuses a missing or wrong admin token with 401 on every route, and changes nothing', async () => {
    await registry.add('dev-1');
    const device = (await registry.add('dev-2')).token;
    for (const token of [null, 'wrong-token', device]) {
      for (const [method, path, body] of [
        ['GET', '/api/admin/devices', undefined],
        ['GET', '/api/admin/devices/dev-1', undefined],
        ['POST', '/api/admin/devices', { id: 'new-1' }],
        ['POST', '/api/admin/devices/dev-1/rotate', undefined],
        ['DELETE', '/api/admin/devices/dev-1', undefined],
      ] as const) {
        const res = await call(method, path, body, token);
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expect(res.headers['cache-control']).toBe('no-store');
      }
    }
    expect(registry.list().map((d) => [d.id, d.revoked, d.rotatedAtMs])).toEqual([
      ['dev-1', false, null],
      ['dev-2', false, null],
    ]);
    expect(revoked).toEqual([]);
  });

  it('never logs a token, and writes an audit line per change', async () => {
    const a = (await call('POST', '/api/admin/devices', { id: 'dev-1' })).json as Issued;
    const b = (await call('POST', '/api/admin/devices/dev-1/rotate')).json as Issued;
    await call('DELETE', '/api/admin/devices/dev-1');
    await call('GET', '/api/admin/devices', undefined, 'wrong-token');
    const all = log.raw.join('\n');
    for (const secret of [a.token, b.token, ADMIN, 'wrong-token']) expect(all).not.toContain(secret);
    const audit = log.lines.filter((l) => l.msg === 'admin API changed a device');
    expect(audit.map((l) => [l.action, l.deviceId])).toEqual([
      ['add', 'dev-1'],
      ['rotate', 'dev-1'],
      ['revoke', 'dev-1'],
    ]);
  });
});

describe('admin API without an admin token', () => {
  beforeEach(() => start(null));

  it('is disabled: 404 saying how to enable it, whatever the credentials', async () => {
    for (const token of [null, ADMIN]) {
      const res = await call('POST', '/api/admin/devices', { id: 'dev-1' }, token);
      expect(res.status).toBe(404);
      expect((res.json as ErrorReply).error.message).toMatch(/HUB_ADMIN_TOKEN/);
    }
    expect(registry.list()).toEqual([]);
  });
});
