import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRouter } from '../../server/http/router.ts';
import { request, type Served, serve } from './http-helpers.ts';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const json = { 'content-type': 'application/json' };

async function start(): Promise<number> {
  const router = createRouter();
  router.post(
    '/things/:id',
    (ctx) => {
      // Typed from the schemas: these lines would not compile with wrong types.
      const id: number = ctx.input.params.id;
      const dry: boolean = ctx.input.query.dry;
      const name: string = ctx.input.body.name;
      return { id, dry, name, tags: ctx.input.body.tags ?? [] };
    },
    {
      summary: 'Create a thing',
      params: z.strictObject({ id: z.coerce.number().int().positive() }),
      query: z.strictObject({
        dry: z
          .enum(['0', '1'])
          .default('0')
          .transform((v) => v === '1'),
      }),
      body: z.strictObject({ name: z.string().min(1), tags: z.array(z.string()).optional() }),
    },
  );
  router.get('/plain/:id', (ctx) => ({ id: ctx.params.id, input: ctx.input }));
  served = await serve(router);
  return served.port;
}

interface ErrorReply {
  error: { code: string; message: string; details?: { in: string; path: unknown[]; field: string; issue: string }[] };
}

describe('route schemas', () => {
  it('hands the validated params, query and body to the handler', async () => {
    const port = await start();
    const res = await request(port, 'POST', '/things/7?dry=1', { headers: json, body: '{"name":"a","tags":["x"]}' });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ id: 7, dry: true, name: 'a', tags: ['x'] });
  });

  it('answers an unknown body field with 400 naming it', async () => {
    const port = await start();
    const res = await request(port, 'POST', '/things/7', { headers: json, body: '{"name":"a","colour":"red"}' });
    expect(res.status).toBe(400);
    const { error } = res.json as ErrorReply;
    expect(error.code).toBe('BAD_REQUEST');
    expect(error.message).toContain('body.colour');
    expect(error.details).toEqual([
      { in: 'body', path: ['colour'], field: 'body.colour', issue: 'unrecognized_keys', message: 'unknown field' },
    ]);
  });

  it('answers a bad type with 400 naming the field, nested paths included', async () => {
    const port = await start();
    const res = await request(port, 'POST', '/things/7', { headers: json, body: '{"name":5,"tags":["x",3]}' });
    expect(res.status).toBe(400);
    const { error } = res.json as ErrorReply;
    expect(error.message).toContain('body.name');
    expect(error.message).toContain('body.tags.1');
    expect(error.details?.map((d) => [d.field, d.issue])).toEqual([
      ['body.name', 'invalid_type'],
      ['body.tags.1', 'invalid_type'],
    ]);
  });

  it('answers a missing body and a missing field as required', async () => {
    const port = await start();
    const none = await request(port, 'POST', '/things/7');
    expect(none.status).toBe(400);
    expect((none.json as ErrorReply).error.details?.[0]).toMatchObject({ field: 'body', issue: 'invalid_type' });
    const empty = await request(port, 'POST', '/things/7', { headers: json, body: '{}' });
    expect((empty.json as ErrorReply).error.message).toBe('invalid request: body.name: required');
  });

  it('refuses bad params and unknown query parameters, naming them', async () => {
    const port = await start();
    const res = await request(port, 'POST', '/things/x?dry=1&verbose=1', { headers: json, body: '{"name":"a"}' });
    expect(res.status).toBe(400);
    const fields = (res.json as ErrorReply).error.details?.map((d) => d.field);
    expect(fields).toEqual(['params.id', 'query.verbose']);
    expect((res.json as ErrorReply).error.message).toContain('query.verbose: unknown query parameter "verbose"');
  });

  it('names a repeated query parameter', async () => {
    const port = await start();
    const res = await request(port, 'POST', '/things/1?dry=1&dry=0', { headers: json, body: '{"name":"a"}' });
    expect(res.status).toBe(400);
    expect((res.json as ErrorReply).error.message).toBe(
      'invalid request: query.dry: repeated: give this parameter once',
    );
  });

  it('lets an optional body be left out, and still checks it when sent', async () => {
    const router = createRouter();
    router.post('/approve', (ctx) => ({ deviceId: ctx.input.body?.deviceId ?? null }), {
      body: z.strictObject({ deviceId: z.string() }).optional(),
    });
    served = await serve(router);
    expect((await request(served.port, 'POST', '/approve')).json).toEqual({ deviceId: null });
    const sent = await request(served.port, 'POST', '/approve', { headers: json, body: '{"deviceId":"d-2"}' });
    expect(sent.json).toEqual({ deviceId: 'd-2' });
    const bad = await request(served.port, 'POST', '/approve', { headers: json, body: '{"deviceid":"d-2"}' });
    expect((bad.json as ErrorReply).error.details?.map((d) => d.field)).toEqual(['body.deviceId', 'body.deviceid']);
  });

  it('leaves routes without schemas as they were', async () => {
    const port = await start();
    const res = await request(port, 'GET', '/plain/a%20b?x=1');
    expect(res.json).toEqual({ id: 'a b', input: {} });
  });
});
