/**
 * The hub's OpenAPI 3.1 document, generated from the router's routes and their zod schemas
 * (`z.toJSONSchema`, JSON Schema 2020-12 as OpenAPI 3.1 uses), served at `/api/openapi.json`, and a
 * small self-rendered reference page at `/api/docs` (no scripts, nothing fetched from elsewhere).
 */
import { z } from 'zod';
import { ERRORS } from '../errors.ts';
import { PAGE_HEADERS } from './dashboard-auth.ts';
import { sendText } from './respond.ts';
import type { ResponseSpec, RouteInfo, Router } from './router.ts';

export const OPENAPI_PATH = '/api/openapi.json';
export const DOCS_PATH = '/api/docs';

type JsonSchema = Record<string, unknown>;

interface Parameter {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  description?: string;
  schema: JsonSchema;
}

interface Operation {
  operationId: string;
  summary?: string;
  description?: string;
  tags?: string[];
  parameters?: Parameter[];
  requestBody?: { required: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: JsonSchema }> }>;
}

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema> };
}

export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

const ERROR_REF = { $ref: '#/components/schemas/Error' };

/** The error shape of every HTTP error answer (docs/http-api.md). */
export const ErrorSchema = z.object({
  error: z.object({
    code: z.enum(Object.keys(ERRORS) as [keyof typeof ERRORS, ...(keyof typeof ERRORS)[]]),
    message: z.string(),
    details: z
      .array(
        z.object({
          in: z.enum(['params', 'query', 'body']),
          path: z.array(z.union([z.string(), z.number()])),
          field: z.string(),
          issue: z.string(),
          message: z.string(),
        }),
      )
      .optional()
      .describe('Only on a 400 from a route schema: one entry per bad field.'),
  }),
});

/** The OpenAPI pattern of a router pattern: `/api/devices/:id` → `/api/devices/{id}`. */
export function openApiPath(pattern: string): string {
  const path = pattern.replace(/\/[:*]([A-Za-z_][A-Za-z0-9_]*)/g, '/{$1}');
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/** Builds the document from every route of the router. */
export function openApiDocument(router: Router, info: OpenApiInfo): OpenApiDocument {
  const paths: OpenApiDocument['paths'] = {};
  for (const route of router.describe()) {
    const path = openApiPath(route.pattern);
    paths[path] ??= {};
    (paths[path] as Record<string, Operation>)[route.method.toLowerCase()] = operation(route);
  }
  return {
    openapi: '3.1.0',
    info,
    paths,
    components: { schemas: { Error: jsonSchema(ErrorSchema, 'output') } },
  };
}

function operation(route: RouteInfo): Operation {
  const o = route.options;
  const op: Operation = { operationId: operationId(route), responses: {} };
  if (o.summary !== undefined) op.summary = o.summary;
  if (o.description !== undefined) op.description = o.description;
  if (o.tags !== undefined) op.tags = [...o.tags];
  const parameters = [...pathParameters(route), ...queryParameters(o.query)];
  if (parameters.length > 0) op.parameters = parameters;
  if (o.body !== undefined) {
    op.requestBody = {
      required: !o.body.safeParse(undefined).success,
      content: { 'application/json': { schema: jsonSchema(o.body, 'input') } },
    };
  }
  for (const [status, spec] of Object.entries(o.responses ?? { 200: { description: 'OK' } })) {
    op.responses[status] = response(spec);
  }
  op.responses.default = {
    description: 'An error (see docs/errors.md for the codes and their statuses)',
    content: { 'application/json': { schema: ERROR_REF } },
  };
  return op;
}

function response(spec: ResponseSpec): Operation['responses'][string] {
  if (isZod(spec)) {
    return {
      description: spec.description ?? 'OK',
      content: { 'application/json': { schema: jsonSchema(spec, 'output') } },
    };
  }
  const out: Operation['responses'][string] = { description: spec.description };
  if (spec.schema !== undefined || spec.contentType !== undefined) {
    out.content = {
      [spec.contentType ?? 'application/json']: { schema: spec.schema ? jsonSchema(spec.schema, 'output') : {} },
    };
  }
  return out;
}

function pathParameters(route: RouteInfo): Parameter[] {
  const names = [...route.pattern.matchAll(/\/([:*])([A-Za-z_][A-Za-z0-9_]*)/g)];
  const props = objectProperties(route.options.params, 'input');
  return names.map(([, kind, name]) => {
    const p: Parameter = {
      name: name as string,
      in: 'path',
      required: true,
      schema: props?.[name as string] ?? { type: 'string' },
    };
    if (kind === '*') p.description = 'The rest of the path (may contain "/").';
    return p;
  });
}

function queryParameters(schema: z.ZodType | undefined): Parameter[] {
  if (schema === undefined) return [];
  const full = jsonSchema(schema, 'input');
  const props = (full.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((full.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => {
    const { description, ...rest } = s;
    const p: Parameter = { name, in: 'query', required: required.has(name), schema: rest };
    if (typeof description === 'string') p.description = description;
    return p;
  });
}

function objectProperties(schema: z.ZodType | undefined, io: 'input' | 'output') {
  if (schema === undefined) return undefined;
  return jsonSchema(schema, io).properties as Record<string, JsonSchema> | undefined;
}

/** JSON Schema 2020-12 of a zod schema, as OpenAPI 3.1 embeds it. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const out = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema;
  delete out.$schema;
  return out;
}

function isZod(spec: ResponseSpec): spec is z.ZodType {
  return typeof (spec as z.ZodType).safeParse === 'function';
}

function operationId(route: RouteInfo): string {
  const words = route.pattern
    .split('/')
    .filter((s) => s !== '')
    .map((s) => (s.startsWith(':') || s.startsWith('*') ? `by-${s.slice(1)}` : s));
  return [route.method.toLowerCase(), ...words]
    .join('-')
    .replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''));
}

/** Registers `GET /api/openapi.json` and `GET /api/docs` (public: the API's shape is no secret). */
export function registerOpenApiRoutes(router: Router, info: OpenApiInfo): void {
  let cached: { count: number; doc: OpenApiDocument; page: string } | undefined;
  // Routes may be added after start (extensions, the forwarder): rebuild when the count changes.
  const current = () => {
    const count = router.routes().length;
    if (cached?.count !== count) {
      const doc = openApiDocument(router, info);
      cached = { count, doc, page: renderReference(doc) };
    }
    return cached;
  };
  router.get(OPENAPI_PATH, () => current().doc, {
    summary: 'The OpenAPI 3.1 document of this API',
    tags: ['meta'],
    query: z.strictObject({}),
    responses: { 200: { description: 'OpenAPI 3.1 document', schema: z.looseObject({ openapi: z.string() }) } },
  });
  router.get(
    DOCS_PATH,
    (ctx) => {
      const headers = { ...PAGE_HEADERS, 'cache-control': 'no-cache' };
      sendText(ctx.res, 200, 'text/html; charset=utf-8', current().page, headers);
    },
    {
      summary: 'This API reference, as an HTML page',
      tags: ['meta'],
      query: z.strictObject({}),
      responses: { 200: { description: 'HTML page', contentType: 'text/html' } },
    },
  );
}

const esc = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The reference page: every operation with its parameters, body and responses; no script, no style. */
export function renderReference(doc: OpenApiDocument): string {
  const ops: string[] = [];
  const toc: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const title = `${method.toUpperCase()} ${path}`;
      toc.push(
        `<li><a href="#${esc(op.operationId)}"><code>${esc(title)}</code></a>${op.summary ? ` ${esc(op.summary)}` : ''}</li>`,
      );
      const parts = [`<section id="${esc(op.operationId)}"><h2><code>${esc(title)}</code></h2>`];
      if (op.summary) parts.push(`<p><strong>${esc(op.summary)}</strong></p>`);
      if (op.description) parts.push(`<p>${esc(op.description)}</p>`);
      if (op.tags) parts.push(`<p>Tags: ${op.tags.map(esc).join(', ')}</p>`);
      if (op.parameters) {
        parts.push(
          '<h3>Parameters</h3><table><thead><tr><th>Name</th><th>In</th><th>Required</th><th>Schema</th><th>Description</th></tr></thead><tbody>',
        );
        for (const p of op.parameters) {
          parts.push(
            `<tr><td><code>${esc(p.name)}</code></td><td>${p.in}</td><td>${p.required ? 'yes' : 'no'}</td><td><code>${esc(JSON.stringify(p.schema))}</code></td><td>${esc(p.description ?? '')}</td></tr>`,
          );
        }
        parts.push('</tbody></table>');
      }
      if (op.requestBody) {
        const [type, media] = Object.entries(op.requestBody.content)[0] ?? ['', { schema: {} }];
        parts.push(`<h3>Request body (${esc(type)}${op.requestBody.required ? ', required' : ', optional'})</h3>`);
        parts.push(`<pre>${esc(JSON.stringify(media.schema, null, 2))}</pre>`);
      }
      parts.push('<h3>Responses</h3><dl>');
      for (const [status, r] of Object.entries(op.responses)) {
        parts.push(`<dt>${esc(status)}</dt><dd>${esc(r.description)}`);
        for (const [type, media] of Object.entries(r.content ?? {})) {
          const schema = JSON.stringify(media.schema, null, 2);
          parts.push(`<br>${esc(type)}${schema === '{}' ? '' : `<pre>${esc(schema)}</pre>`}`);
        }
        parts.push('</dd>');
      }
      parts.push('</dl></section>');
      ops.push(parts.join('\n'));
    }
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info.title)} · API reference</title></head>
<body><main><h1>${esc(doc.info.title)} ${esc(doc.info.version)}: API reference</h1>
<p>Generated from the hub's routes; machine-readable as <a href="${OPENAPI_PATH}">${OPENAPI_PATH}</a> (OpenAPI 3.1).
Errors are <code>{ "error": { "code", "message" } }</code> with the status of the code (docs/errors.md).</p>
<h2>Operations</h2><ul>${toc.join('\n')}</ul>
${ops.join('\n')}
<h2>Error</h2><pre>${esc(JSON.stringify(doc.components.schemas.Error, null, 2))}</pre>
</main></body></html>`;
}
