/**
 * JSON responses and request bodies for the hub's HTTP API. Every error answer has one shape,
 * `{ "error": { "code": "NOT_FOUND", "message": "..." } }`, with the HTTP status from the error
 * catalogue (`server/errors.ts`); clients match on `code`.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { type ErrorCode, HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { type FieldIssue, InvalidRequestError } from './validate.ts';

/** The body of every error response. */
export interface ErrorBody {
  /** `details`: only on a 400 from a route's schemas, one entry per bad field. */
  error: { code: ErrorCode; message: string; details?: readonly FieldIssue[] };
}

/**
 * Past the body limit the router keeps reading (and discarding) up to this many bytes so a client
 * that is still sending can read the 413 instead of seeing a reset; beyond it, it stops and closes.
 */
const DRAIN_LIMIT_BYTES = 1024 * 1024;

/** Sends `body` as JSON with `status`. Adds `nosniff`; closes the connection if the request body was not read. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value);
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.setHeader('x-content-type-options', 'nosniff');
  // Unread request body bytes would be parsed as the next request on a kept-alive connection.
  if (res.req && hasUnreadBody(res.req)) res.setHeader('connection', 'close');
  res.statusCode = status;
  res.end(text);
}

/** Sends text (an HTML page, Prometheus text …) with its media type. Adds `nosniff`. */
export function sendText(
  res: ServerResponse,
  status: number,
  contentType: string,
  text: string,
  headers: OutgoingHttpHeaders = {},
): void {
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value);
  res.setHeader('content-type', contentType);
  res.setHeader('content-length', Buffer.byteLength(text));
  res.setHeader('x-content-type-options', 'nosniff');
  res.statusCode = status;
  res.end(text);
}

/** Answers 303 See Other to `location`, without a body. */
export function redirect(res: ServerResponse, location: string, headers: OutgoingHttpHeaders = {}): void {
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value);
  res.setHeader('location', location);
  res.setHeader('content-length', 0);
  res.statusCode = 303;
  res.end();
}

/** The status and body an error maps to. Errors that are not HubErrors become a bare 500 INTERNAL. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof InvalidRequestError) {
    return { status: 400, body: { error: { code: err.code, message: err.message, details: err.details } } };
  }
  if (err instanceof HubError) {
    return { status: err.httpStatus ?? 500, body: { error: { code: err.code, message: err.message } } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}

/**
 * Answers with the error's JSON body. 5xx answers are logged with the error (never the request's
 * headers); anything else is the client's problem and is not logged. If the response has already
 * started, the connection is cut instead.
 */
export function sendError(res: ServerResponse, err: unknown, logger?: Logger): void {
  const { status, body } = errorResponse(err);
  if (status >= 500) logger?.error({ err, method: res.req?.method, path: pathOf(res.req) }, 'HTTP request failed');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, body);
}

/**
 * Reads and parses a JSON request body of at most `maxBytes`. Throws PAYLOAD_TOO_LARGE (413) past
 * the limit, BAD_REQUEST (400) for a wrong Content-Type, an empty body, bad UTF-8 or bad JSON.
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  const mediaType = type.split(';')[0]?.trim().toLowerCase() ?? '';
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes + DRAIN_LIMIT_BYTES) {
    throw tooLarge(maxBytes); // not worth draining: answer now and close
  }
  const raw = await collect(req, maxBytes);
  if (raw.length === 0) throw new HubError('BAD_REQUEST', 'a JSON request body is required');
  if (mediaType !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(mediaType)) {
    throw new HubError('BAD_REQUEST', 'the request body must be JSON sent with Content-Type: application/json');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new HubError('BAD_REQUEST', 'the request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HubError('BAD_REQUEST', `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

function collect(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      chunks.length = 0;
      if (size > maxBytes + DRAIN_LIMIT_BYTES) {
        cleanup();
        req.pause();
        reject(tooLarge(maxBytes));
      }
    };
    const onEnd = () => {
      cleanup();
      if (size > maxBytes) reject(tooLarge(maxBytes));
      else resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new HubError('BAD_REQUEST', `the request body could not be read: ${err.message}`));
    };
    const onClose = () => {
      cleanup();
      reject(new HubError('BAD_REQUEST', 'the client closed the connection before sending the whole body'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function hasUnreadBody(req: IncomingMessage): boolean {
  const declared = req.headers['content-length'];
  const hasBody = req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0');
  return hasBody && !req.readableEnded;
}

function tooLarge(maxBytes: number): HubError {
  return new HubError('PAYLOAD_TOO_LARGE', `the request body is larger than ${maxBytes} bytes`);
}

function pathOf(req: IncomingMessage | undefined): string | undefined {
  // Path only: a query string is the client's and is not ours to log.
  return req?.url?.split('?')[0];
}
