import { afterEach, describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
import { sendJson } from '../../server/http/respond.ts';
import { createRouter, type RouterOptions } from '../../server/http/router.ts';
import { capturingLogger, request, type Served, serve } from './http-helpers.ts';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function start(setup: (router: ReturnType<typeof createRouter>) => void, options: RouterOptions = {}) {
  const router = createRouter(options);
  setup(router);
  served = await serve(router);
  return served.port;
}

describe('router matching', () => {
  it('matches method and path, decodes :params and parses the query', async () => {
    const port = await start((r) =>
      r.get('/api/devices/:id/history', (ctx) => ({
        id: ctx.params.id,
        channel: ctx.query.get('channel'),
        path: ctx.path,
      })),
    );
    const res = await request(port, 'GET', '/api/devices/dev%2D1/history?channel=temp&x=1');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.json).toEqual({ id: 'dev-1', channel: 'temp', path: '/api/devices/dev%2D1/history' });
  });

  it('prefers static segments over :params over *splats, whatever the registration order', async () => {
    const port = await start((r) =>
      r
        .get('/files/*rest', (ctx) => ({ route: 'splat', rest: ctx.params.rest }))
        .get('/files/:name', (ctx) => ({ route: 'param', name: ctx.params.name }))
        .get('/files/index', () => ({ route: 'static' })),
    );
    expect((await request(port, 'GET', '/files/index')).json).toEqual({ route: 'static' });
    expect((await request(port, 'GET', '/files/a.txt')).json).toEqual({ route: 'param', name: 'a.txt' });
    expect((await request(port, 'GET', '/files/a/b%20c')).json).toEqual({ route: 'splat', rest: 'a/b c' });
    expect((await request(port, 'GET', '/files')).json).toEqual({ route: 'splat', rest: '' });
  });

  it('tolerates a trailing slash and repeated slashes', async () => {
    const port = await start((r) => r.get('/api/admin/devices', () => ({ ok: true })));
    expect((await request(port, 'GET', '/api/admin/devices/')).status).toBe(200);
    expect((await request(port, 'GET', '//api//admin/devices')).status).toBe(200);
  });

  it('answers 404 NOT_FOUND in the JSON error shape for an unknown path', async () => {
    const port = await start((r) => r.get('/a', () => ({})));
    const res = await request(port, 'GET', '/nope');
    expect(res.status).toBe(404);
    expect(res.json).toEqual({ error: { code: 'NOT_FOUND', message: 'no route for GET /nope' } });
  });

  it('answers 405 with an Allow header when only the method is wrong', async () => {
    const port = await start((r) => r.get('/things/:id', () => ({})).delete('/things/:id', () => ({})));
    const res = await request(port, 'POST', '/things/1');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('DELETE, GET, HEAD');
    expect((res.json as { error: { code: string } }).error.code).toBe('METHOD_NOT_ALLOWED');
  });

  it('runs the GET route for HEAD without a body', async () => {
    const port = await start((r) => r.get('/a', () => ({ big: 'x'.repeat(100) })));
    const res = await request(port, 'HEAD', '/a');
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    expect(Number(res.headers['content-length'])).toBeGreaterThan(100);
  });

  it('answers 400 for malformed percent-encoding in a parameter', async () => {
    const port = await start((r) => r.get('/d/:id', (ctx) => ({ id: ctx.params.id })));
    const res = await request(port, 'GET', '/d/%E0%A4%A');
    expect(res.status).toBe(400);
    expect((res.json as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
  });

  it('refuses a second route of the same shape, and bad patterns', () => {
    const router = createRouter();
    router.get('/d/:id', () => ({}));
    expect(() => router.get('/d/:other', () => ({}))).toThrow(/already registered/);
    router.post('/d/:id', () => ({})); // another method is fine
    expect(() => router.get('no-slash', () => ({}))).toThrow();
    expect(() => router.get('/a/*rest/b', () => ({}))).toThrow(/last segment/);
    expect(() => router.get('/a/:x/:x', () => ({}))).toThrow(/twice/);
    expect(router.routes()).toEqual([
      { method: 'GET', pattern: '/d/:id' },
      { method: 'POST', pattern: '/d/:id' },
    ]);
  });
});

describe('router bodies', () => {
  const json = { 'content-type': 'application/json' };
  const echo = (r: ReturnType<typeof createRouter>) =>
    r.post('/echo', async (ctx) => ({ got: await ctx.body() }), { maxBodyBytes: 1024 });

  it('parses a JSON body', async () => {
    const port = await start(echo);
    const res = await request(port, 'POST', '/echo', { headers: json, body: '{"id":"dev-1","n":[1,2]}' });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ got: { id: 'dev-1', n: [1, 2] } });
    const charset = await request(port, 'POST', '/echo', {
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: '"é"',
    });
    expect(charset.json).toEqual({ got: 'é' });
  });

  it.each([
    ['invalid JSON', json, '{"id":'],
    ['an empty body', json, ''],
    ['a non-JSON content type', { 'content-type': 'text/plain' }, '{"id":"x"}'],
    ['no content type', {}, '{"id":"x"}'],
    ['bad UTF-8', json, Buffer.from([0x22, 0xc3, 0x28, 0x22])],
  ])('answers 400 BAD_REQUEST for %s', async (_name, headers, body) => {
    const port = await start(echo);
    const res = await request(port, 'POST', '/echo', { headers, body });
    expect(res.status).toBe(400);
    expect((res.json as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
  });

  it('answers 413 PAYLOAD_TOO_LARGE past the limit, with or without Content-Length, and closes', async () => {
    const port = await start(echo);
    const big = JSON.stringify({ pad: 'x'.repeat(2000) });
    for (const chunked of [false, true]) {
      const res = await request(port, 'POST', '/echo', { headers: json, body: big, chunked });
      expect(res.status).toBe(413);
      expect(res.json).toEqual({
        error: { code: 'PAYLOAD_TOO_LARGE', message: 'the request body is larger than 1024 bytes' },
      });
    }
    // Exactly at the limit is fine.
    const atLimit = JSON.stringify({ pad: 'x'.repeat(1024 - 10) });
    expect(Buffer.byteLength(atLimit)).toBe(1024);
    expect((await request(port, 'POST', '/echo', { headers: json, body: atLimit })).status).toBe(200);
  });

  it('answers 413 at once for a declared length far past the limit', async () => {
    const port = await start(echo);
    const res = await new Promise<number>((resolve, reject) => {
      // Declares 100 MiB and sends nothing: the answer must not wait for the body.
      import('node:http')
        .then(({ request: raw }) => {
          const req = raw(
            {
              host: '127.0.0.1',
              port,
              method: 'POST',
              path: '/echo',
              agent: false,
              headers: { ...json, 'content-length': String(100 * 1024 * 1024) },
            },
            (r) => {
              r.resume();
              resolve(r.statusCode ?? 0);
              req.destroy();
            },
          );
          req.on('error', reject);
          req.flushHeaders();
        })
        .catch(reject);
    });
    expect(res).toBe(413);
  });
});

describe('router errors', () => {
  it('answers a HubError with its catalogue status and code', async () => {
    const port = await start((r) =>
      r.get('/conflict', () => {
        throw new HubError('DEVICE_EXISTS', 'device dev-1 already exists');
      }),
    );
    const res = await request(port, 'GET', '/conflict');
    expect(res.status).toBe(409);
    expect(res.json).toEqual({ error: { code: 'DEVICE_EXISTS', message: 'device dev-1 already exists' } });
  });

  it('turns any other error into a 500 INTERNAL that hides the message, and logs it without headers', async () => {
    const { logger, lines, raw } = capturingLogger();
    const port = await start(
      (r) =>
        r.get('/boom', async () => {
          throw new Error('secret internals');
        }),
      { logger },
    );
    const res = await request(port, 'GET', '/boom?token=should-not-be-logged', {
      headers: { authorization: 'Bearer abcdefghijklmnop' },
    });
    expect(res.status).toBe(500);
    expect(res.json).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'HTTP request failed', method: 'GET', path: '/boom' });
    expect(raw.join('\n')).toContain('secret internals');
    expect(raw.join('\n')).not.toContain('abcdefghijklmnop');
    expect(raw.join('\n')).not.toContain('should-not-be-logged');
  });

  it('lets a handler answer itself with any status', async () => {
    const port = await start((r) =>
      r.post('/made', (ctx) => {
        sendJson(ctx.res, 201, { created: true }, { location: '/made/1' });
      }),
    );
    const res = await request(port, 'POST', '/made');
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe('/made/1');
  });

  it('runs guards before the handler and applies route headers to refusals too', async () => {
    let ran = false;
    const port = await start((r) =>
      r.get(
        '/guarded',
        () => {
          ran = true;
          return {};
        },
        {
          headers: { 'cache-control': 'no-store' },
          guard: [
            () => undefined,
            (ctx) => {
              if (ctx.req.headers['x-pass'] !== 'yes') throw new HubError('UNAUTHORIZED', 'nope');
            },
          ],
        },
      ),
    );
    const refused = await request(port, 'GET', '/guarded');
    expect(refused.status).toBe(401);
    expect(refused.headers['cache-control']).toBe('no-store');
    expect(ran).toBe(false);
    const passed = await request(port, 'GET', '/guarded', { headers: { 'x-pass': 'yes' } });
    expect(passed.status).toBe(200);
    expect(passed.headers['cache-control']).toBe('no-store');
    expect(ran).toBe(true);
  });
});
