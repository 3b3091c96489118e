/**
 * The hub's one HTTP router (docs/http-api.md): method + path patterns with `:params` and a final
 * `*splat`, per-route guards (auth) and headers, a size-limited JSON body reader, zod schemas for
 * params, query and body (validated before the handler, typed on `ctx.input`, refused with 400 naming
 * each bad field), and one JSON error shape (`{ error: { code, message } }`) derived from `HubError`s.
 * Each feature registers its own routes (`registerAdminRoutes(router, …)`); the route options also
 * feed the OpenAPI document (server/http/openapi.ts).
 *
 * ```ts
 * const router = createRouter({ logger });
 * router.get('/api/devices/:id/history', (ctx) => ({ id: ctx.input.params.id }), {
 *   summary: 'History', guard: requireAdmin(token), params: z.strictObject({ id: deviceId }), query: noQuery,
 * });
 * http.createServer(router.listener);
 * ```
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { readJsonBody, sendError, sendJson } from './respond.ts';
import { validateInput } from './validate.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Validated inputs of a request: what the route's `params`, `query` and `body` schemas produced. */
export interface RouteInput {
  readonly params: unknown;
  readonly query: unknown;
  readonly body: unknown;
}

/** The `ctx.input` type of a route declared with options `O` (each part `undefined` without its schema). */
export type InputOf<O> = {
  readonly params: O extends { params: z.ZodType } ? z.output<O['params']> : undefined;
  readonly query: O extends { query: z.ZodType } ? z.output<O['query']> : undefined;
  readonly body: O extends { body: z.ZodType } ? z.output<O['body']> : undefined;
};

/** What a handler or guard gets for one request. */
export interface RequestContext<I extends RouteInput = RouteInput> {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The request method; HEAD requests run the GET route (Node drops the body). */
  readonly method: string;
  /** The parsed request URL (host part is a placeholder; use `path` and `query`). */
  readonly url: URL;
  /** The path, without the query string, as sent (percent-encoded). */
  readonly path: string;
  /** `:name` and `*name` segments of the matched pattern, percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** The query string. */
  readonly query: URLSearchParams;
  /**
   * Reads and parses the JSON body (once; later calls return the same value). Rejects with
   * PAYLOAD_TOO_LARGE past the route's limit, BAD_REQUEST for anything but a JSON object/array/value
   * sent as `application/json`.
   */
  body(): Promise<unknown>;
  /**
   * The inputs validated by the route's schemas (`params`, `query`, `body` options), set before the
   * handler runs (guards see `undefined` parts). A request that fails a schema never reaches the
   * handler: it is answered 400 BAD_REQUEST naming each bad field (see docs/http-api.md).
   */
  readonly input: I;
}

/**
 * Answers a request. Return a value to send it as JSON with status 200; return undefined after
 * answering yourself (e.g. `sendJson(ctx.res, 201, …)`, or streaming). Throw a `HubError` to answer
 * with its status and code; anything else thrown becomes a logged 500 INTERNAL.
 */
export type Handler<I extends RouteInput = RouteInput> = (ctx: RequestContext<I>) => unknown;

/**
 * Runs before the handler; throws a `HubError` to refuse (UNAUTHORIZED 401, NOT_FOUND …). It may
 * set response headers first (e.g. `WWW-Authenticate`).
 */
export type Guard = (ctx: RequestContext) => void | Promise<void>;

/** A documented response: a JSON body schema, or a description with an optional schema and media type. */
export type ResponseSpec = z.ZodType | { description: string; schema?: z.ZodType; contentType?: string };

export interface RouteOptions {
  /** One line for the API reference (OpenAPI `summary`). */
  summary?: string;
  /** Longer text for the API reference (Markdown). */
  description?: string;
  /** Groups in the API reference (e.g. `['admin']`). */
  tags?: readonly string[];
  /**
   * Schema of the `:params`/`*splats` (strings, percent-decoded); its output is `ctx.input.params`.
   * The path is documented from the pattern even without one.
   */
  params?: z.ZodType;
  /**
   * Schema of the query string, seen as an object of strings (a repeated key gives an array of
   * strings); its output is `ctx.input.query`. Use `z.strictObject` so unknown parameters are refused.
   */
  query?: z.ZodType;
  /**
   * Schema of the JSON body: the router reads and validates it (after the guards) and hands its
   * output to the handler as `ctx.input.body`. Use `z.strictObject` so unknown fields are refused.
   */
  body?: z.ZodType;
  /** Responses by status, for the API reference (not checked at run time). */
  responses?: Readonly<Record<number, ResponseSpec>>;
  /** Guards, run in order; the first to throw refuses the request. See `requireAdmin`, `anyOf`. */
  guard?: Guard | readonly Guard[];
  /** Headers set on every answer of this route, errors included (e.g. `cache-control: no-store`). */
  headers?: OutgoingHttpHeaders;
  /** Body limit for `ctx.body()` on this route; defaults to the router's. */
  maxBodyBytes?: number;
}

export interface RouterOptions {
  /** Default body limit for `ctx.body()`, bytes. Default 64 KiB. */
  maxBodyBytes?: number;
  /** For 5xx errors only; request headers are never logged. */
  logger?: Logger;
}

/** Registers a route; the handler's `ctx.input` is typed from the schemas in `options`. */
type Register = <O extends RouteOptions = RouteOptions>(
  pattern: string,
  handler: Handler<InputOf<O>>,
  options?: O,
) => Router;

/** A registered route as `routes()` lists it. */
export interface RouteInfo {
  readonly method: HttpMethod;
  readonly pattern: string;
  readonly options: Readonly<RouteOptions>;
}

export interface Router {
  get: Register;
  post: Register;
  put: Register;
  patch: Register;
  delete: Register;
  /** Registers a route. Throws if the same method and pattern shape is already registered. */
  route<O extends RouteOptions = RouteOptions>(
    method: HttpMethod,
    pattern: string,
    handler: Handler<InputOf<O>>,
    options?: O,
  ): Router;
  /** Answers one request; never rejects. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** `handle` as a `node:http` request listener: `http.createServer(router.listener)`. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => void;
  /** The registered routes, in registration order. */
  routes(): { method: HttpMethod; pattern: string }[];
  /** The registered routes with their options (schemas, summary …), in registration order. */
  describe(): RouteInfo[];
}

type Segment = { kind: 0; text: string } | { kind: 1; name: string } | { kind: 2; name: string };

interface Route {
  method: HttpMethod;
  pattern: string;
  segments: Segment[];
  // biome-ignore lint/suspicious/noExplicitAny: each route's handler has its own input type
  handler: Handler<any>;
  guards: readonly Guard[];
  headers: OutgoingHttpHeaders;
  maxBodyBytes: number;
  options: RouteOptions;
}

const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
const SEGMENT_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Creates an empty router. */
export function createRouter(options: RouterOptions = {}): Router {
  const routes: Route[] = [];
  const defaultMaxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const logger = options.logger;

  const router: Router = {
    get: (p, h, o) => router.route('GET', p, h, o),
    post: (p, h, o) => router.route('POST', p, h, o),
    put: (p, h, o) => router.route('PUT', p, h, o),
    patch: (p, h, o) => router.route('PATCH', p, h, o),
    delete: (p, h, o) => router.route('DELETE', p, h, o),

    route(method, pattern, handler, given) {
      const routeOptions: RouteOptions = given ?? {};
      const segments = compile(pattern);
      const shape = shapeOf(segments);
      if (routes.some((r) => r.method === method && shapeOf(r.segments) === shape)) {
        throw new Error(`route ${method} ${pattern} is already registered (same shape as another route)`);
      }
      const guard = routeOptions.guard;
      routes.push({
        method,
        pattern,
        segments,
        handler,
        guards: guard === undefined ? [] : typeof guard === 'function' ? [guard] : guard,
        headers: routeOptions.headers ?? {},
        maxBodyBytes: routeOptions.maxBodyBytes ?? defaultMaxBody,
        options: routeOptions,
      });
      return router;
    },

    async handle(req, res) {
      try {
        await dispatch(req, res);
      } catch (err) {
        sendError(res, err, logger);
      }
    },

    listener: (req, res) => {
      void router.handle(req, res);
    },

    routes: () => routes.map((r) => ({ method: r.method, pattern: r.pattern })),
    describe: () => routes.map((r) => ({ method: r.method, pattern: r.pattern, options: r.options })),
  };

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = parseUrl(req.url);
    if (url === undefined) throw new HubError('BAD_REQUEST', 'the request URL is malformed');
    const method = (req.method ?? 'GET').toUpperCase();
    const lookup = method === 'HEAD' ? 'GET' : method;
    const parts = splitPath(url.pathname);

    let best: { route: Route; params: Record<string, string>; score: number[] } | undefined;
    const allowed = new Set<string>();
    for (const route of routes) {
      const params = match(route.segments, parts);
      if (!params) continue;
      allowed.add(route.method);
      if (route.method !== lookup) continue;
      const score = route.segments.map((s) => s.kind);
      if (!best || compareScores(score, best.score) < 0) best = { route, params, score };
    }

    if (!best && allowed.size > 0) {
      if (allowed.has('GET')) allowed.add('HEAD');
      res.setHeader('allow', [...allowed].sort().join(', '));
      throw new HubError(
        'METHOD_NOT_ALLOWED',
        `${method} is not allowed on ${url.pathname}; allowed: ${[...allowed].sort().join(', ')}`,
      );
    }

    let bodyPromise: Promise<unknown> | undefined;
    const maxBody = best?.route.maxBodyBytes ?? defaultMaxBody;
    const input = { params: undefined as unknown, query: undefined as unknown, body: undefined as unknown };
    const ctx: RequestContext = {
      input,
      req,
      res,
      method,
      url,
      path: url.pathname,
      params: best?.params ?? {},
      query: url.searchParams,
      body: () => {
        bodyPromise ??= readJsonBody(req, maxBody);
        return bodyPromise;
      },
    };

    if (!best) throw new HubError('NOT_FOUND', `no route for ${method} ${url.pathname}`);
    const { route } = best;
    for (const [name, value] of Object.entries(route.headers)) if (value !== undefined) res.setHeader(name, value);
    for (const guard of route.guards) await guard(ctx);
    const o = route.options;
    if (o.params !== undefined || o.query !== undefined || o.body !== undefined) {
      Object.assign(input, await validateInput(ctx, o));
    }
    finish(ctx, await route.handler(ctx));
  }

  return router;
}

function finish(ctx: RequestContext, result: unknown): void {
  if (result === undefined) return;
  if (ctx.res.headersSent || ctx.res.writableEnded) {
    throw new Error(`handler for ${ctx.method} ${ctx.path} both answered and returned a value`);
  }
  sendJson(ctx.res, 200, result);
}

function parseUrl(target: string | undefined): URL | undefined {
  try {
    // Origin-form paths are appended to a fixed base: `new URL('//x/y', base)` would read "x" as a host.
    const t = target ?? '/';
    return t.startsWith('/') ? new URL(`http://hub.invalid${t}`) : new URL(t);
  } catch {
    return undefined;
  }
}

function splitPath(pathname: string): string[] {
  return pathname.split('/').filter((s) => s !== '');
}

function compile(pattern: string): Segment[] {
  if (!pattern.startsWith('/')) throw new Error(`route pattern ${pattern} must start with "/"`);
  const segments: Segment[] = [];
  const raw = pattern.split('/').filter((s) => s !== '');
  for (const [i, part] of raw.entries()) {
    if (part.startsWith(':') || part.startsWith('*')) {
      const name = part.slice(1);
      if (!SEGMENT_NAME.test(name)) throw new Error(`route pattern ${pattern}: bad parameter name "${part}"`);
      if (part.startsWith('*') && i !== raw.length - 1) {
        throw new Error(`route pattern ${pattern}: a *splat must be the last segment`);
      }
      if (segments.some((s) => s.kind !== 0 && s.name === name)) {
        throw new Error(`route pattern ${pattern}: parameter "${name}" appears twice`);
      }
      segments.push(part.startsWith(':') ? { kind: 1, name } : { kind: 2, name });
    } else {
      segments.push({ kind: 0, text: part });
    }
  }
  return segments;
}

function shapeOf(segments: Segment[]): string {
  return segments.map((s) => (s.kind === 0 ? `/${s.text}` : s.kind === 1 ? '/:' : '/*')).join('');
}

/** Params when `parts` (percent-encoded path segments) match, else undefined. */
function match(segments: Segment[], parts: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (const [i, segment] of segments.entries()) {
    if (segment.kind === 2) {
      params[segment.name] = parts.slice(i).map(decode).join('/');
      return params;
    }
    const part = parts[i];
    if (part === undefined) return undefined;
    if (segment.kind === 0) {
      if (part !== segment.text) return undefined;
    } else {
      params[segment.name] = decode(part);
    }
  }
  return parts.length === segments.length ? params : undefined;
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HubError('BAD_REQUEST', `the path segment "${part.slice(0, 80)}" is not valid percent-encoding`);
  }
}

/** Static segments beat :params, which beat *splats, position by position. */
function compareScores(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return b.length - a.length;
}
