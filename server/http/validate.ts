/**
 * Validation of a request's path parameters, query and JSON body against a route's zod schemas
 * (`RouteOptions.params/query/body`). A request that fails is answered 400 BAD_REQUEST with one
 * message naming every bad field and a `details` array, one entry per field (docs/http-api.md).
 */
import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { HubError } from '../errors.ts';

/** Where a bad field is. */
export type InputLocation = 'params' | 'query' | 'body';

/** One bad field of a refused request, as sent in `error.details`. */
export interface FieldIssue {
  /** The part of the request: `params` (path), `query` or `body`. */
  in: InputLocation;
  /** The field's path inside that part (`[]` for the part itself, array indexes as numbers). */
  path: (string | number)[];
  /** `in` and `path` joined with dots, e.g. `body.channels.0.unit`; what the message names. */
  field: string;
  /** zod's issue code, e.g. `invalid_type`, `unrecognized_keys`, `too_big`. */
  issue: string;
  message: string;
}

/** BAD_REQUEST with the bad fields; the error body carries them as `error.details`. */
export class InvalidRequestError extends HubError {
  readonly details: readonly FieldIssue[];
  constructor(details: readonly FieldIssue[]) {
    super('BAD_REQUEST', `invalid request: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`);
    this.details = details;
  }
}

interface Schemas {
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
}

interface Source {
  req: IncomingMessage;
  params: Readonly<Record<string, string>>;
  query: URLSearchParams;
  body(): Promise<unknown>;
}

/** The validated inputs, or throws `InvalidRequestError` listing the bad fields of all three parts. */
export async function validateInput(
  source: Source,
  schemas: Schemas,
): Promise<{ params: unknown; query: unknown; body: unknown }> {
  const issues: FieldIssue[] = [];
  const check = (where: InputLocation, schema: z.ZodType | undefined, value: unknown): unknown => {
    if (schema === undefined) return undefined;
    const result = schema.safeParse(value, { reportInput: true });
    if (result.success) return result.data;
    issues.push(...toIssues(where, result.error.issues));
    return undefined;
  };
  const params = check('params', schemas.params, source.params);
  const query = check('query', schemas.query, schemas.query && queryObject(source.query));
  let body: unknown;
  if (schemas.body !== undefined) {
    // Bad params or query: refuse before reading the body (the answer closes an unread connection).
    if (issues.length > 0) throw new InvalidRequestError(issues);
    const raw = hasBody(source.req) ? await source.body() : undefined;
    body = check('body', schemas.body, raw);
  }
  if (issues.length > 0) throw new InvalidRequestError(issues);
  return { params, query, body };
}

/** The query string as an object: one value is a string, a repeated key an array of strings. */
export function queryObject(query: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const key of new Set(query.keys())) {
    const values = query.getAll(key);
    out[key] = values.length === 1 ? (values[0] as string) : values;
  }
  return out;
}

function hasBody(req: IncomingMessage): boolean {
  const declared = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0');
}

function toIssues(where: InputLocation, zodIssues: readonly z.core.$ZodIssue[]): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of zodIssues) {
    const base = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const message = where === 'query' ? `unknown query parameter "${key}"` : 'unknown field';
        out.push(entry(where, [...base, key], issue.code, message));
      }
    } else if (where === 'query' && base.length === 1 && Array.isArray(issue.input)) {
      out.push(entry(where, base, issue.code, 'repeated: give this parameter once'));
    } else if (issue.code === 'invalid_type' && issue.input === undefined) {
      out.push(entry(where, base, issue.code, base.length === 0 ? `a ${where} is required` : 'required'));
    } else {
      out.push(entry(where, base, issue.code, issue.message));
    }
  }
  return out;
}

function entry(where: InputLocation, path: (string | number)[], issue: string, message: string): FieldIssue {
  return { in: where, path, field: [where, ...path].join('.'), issue, message };
}
