import { afterEach, describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
import { anyOf, bearerToken, guardFrom, requireAdmin, secretsEqual } from '../../server/http/auth.ts';
import { createRouter, type Guard } from '../../server/http/router.ts';
import { request, type Served, serve } from './http-helpers.ts';

const ADMIN = 'a'.repeat(16) + 'B'.repeat(16) + '0123456789';
let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function guarded(guard: Guard): Promise<number> {
  const router = createRouter();
  router.get('/x', () => ({ ok: true }), { guard });
  served = await serve(router);
  return served.port;
}

type ErrorReply = { error: { code: string; message: string } };

describe('bearerToken', () => {
  it.each([
    ['Bearer abc.def-_~+/=', 'abc.def-_~+/='],
    ['bearer abc', 'abc'],
    ['Bearer   abc  ', 'abc'],
    ['Basic abc', null],
    ['Bearer', null],
    ['Bearer a b', null],
    ['Bearerabc', null],
    ['', null],
  ])('%j → %j', (header, expected) => {
    expect(bearerToken({ headers: { authorization: header } })).toBe(expected);
  });
  it('is null without the header', () => {
    expect(bearerToken({ headers: {} })).toBeNull();
  });
});

describe('secretsEqual', () => {
  it('compares whole secrets of any length', () => {
    expect(secretsEqual(ADMIN, ADMIN)).toBe(true);
    expect(secretsEqual(ADMIN, `${ADMIN}x`)).toBe(false);
    expect(secretsEqual('', ADMIN)).toBe(false);
    expect(secretsEqual(ADMIN.slice(0, -1) + 'X', ADMIN)).toBe(false);
  });
});

describe('requireAdmin', () => {
  it('passes the configured token', async () => {
    const port = await guarded(requireAdmin(ADMIN));
    const res = await request(port, 'GET', '/x', { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(200);
    expect(res.headers['www-authenticate']).toBeUndefined();
  });

  it('answers 401 with a Bearer challenge for a missing or wrong token', async () => {
    const port = await guarded(requireAdmin(ADMIN));
    const missing = await request(port, 'GET', '/x');
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="esp32-hub"');
    expect((missing.json as ErrorReply).error.code).toBe('UNAUTHORIZED');

    for (const wrong of [`${ADMIN}x`, ADMIN.slice(1), 'short']) {
      const res = await request(port, 'GET', '/x', { headers: { authorization: `Bearer ${wrong}` } });
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="esp32-hub", error="invalid_token"');
    }
  });

  it('never takes the token from the URL', async () => {
    const port = await guarded(requireAdmin(ADMIN));
    for (const path of [`/x?token=${ADMIN}`, `/x?access_token=${ADMIN}`]) {
      expect((await request(port, 'GET', path)).status).toBe(401);
    }
  });

  it('disables the admin API (404 with how to enable it) when no admin token is configured', async () => {
    const port = await guarded(requireAdmin(null));
    const res = await request(port, 'GET', '/x', { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(404);
    expect((res.json as ErrorReply).error.message).toMatch(/HUB_ADMIN_TOKEN/);
  });
});

describe('anyOf and guardFrom', () => {
  const refuse =
    (code: 'UNAUTHORIZED' | 'FORBIDDEN_ORIGIN' | 'NOT_FOUND'): Guard =>
    () => {
      throw new HubError(code, code.toLowerCase());
    };

  it('passes when any guard passes and drops a challenge left by a refusing one', async () => {
    const port = await guarded(anyOf(requireAdmin(ADMIN), () => undefined));
    const res = await request(port, 'GET', '/x');
    expect(res.status).toBe(200);
    expect(res.headers['www-authenticate']).toBeUndefined();
  });

  it('prefers an UNAUTHORIZED refusal over others when all refuse', async () => {
    const port = await guarded(anyOf(refuse('NOT_FOUND'), refuse('UNAUTHORIZED')));
    expect((await request(port, 'GET', '/x')).status).toBe(401);
  });

  it('adapts { ok } checks into guards with the refusal code', async () => {
    const check = (req: { headers: Record<string, unknown> }) =>
      req.headers['x-ok'] === '1'
        ? ({ ok: true } as const)
        : ({ ok: false, code: 'FORBIDDEN_ORIGIN', message: 'origin not allowed' } as const);
    const port = await guarded(guardFrom(check));
    expect((await request(port, 'GET', '/x', { headers: { 'x-ok': '1' } })).status).toBe(200);
    const refused = await request(port, 'GET', '/x');
    expect(refused.status).toBe(403);
    expect(refused.json).toEqual({ error: { code: 'FORBIDDEN_ORIGIN', message: 'origin not allowed' } });
  });

  it('falls back to the admin token when a dashboard-style check refuses', async () => {
    const dashboard = guardFrom(() => ({ ok: false, code: 'UNAUTHORIZED', message: 'log in at /login' }));
    const port = await guarded(anyOf(dashboard, requireAdmin(ADMIN)));
    expect((await request(port, 'GET', '/x')).status).toBe(401);
    expect((await request(port, 'GET', '/x', { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(200);
  });
});
