/**
 * Commands over HTTP [PROTO-3.6]:
 *   POST /api/devices/:id/commands              body `{ "name": "identify", "args": { "duration_ms": 3000 } }`
 *        → 202 `{ commandId, state: "sent" }`; 409 DEVICE_OFFLINE when the device has no live session.
 *   GET  /api/devices/:id/commands/:commandId   → 200 the command's record (sent/accepted/done/failed/timeout).
 * Protected by the admin token (`Authorization: Bearer <HUB_ADMIN_TOKEN>`, constant-time compare) unless
 * an `authorize` function is injected (e.g. dashboard operator sessions). Errors are
 * `{ error: { code, message } }` with the catalogue's HTTP status.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isDeviceId } from '../codec/index.ts';
import { ERRORS, type ErrorCode, HubError } from '../errors.ts';
import type { CommandRecord, CommandTracker } from '../pipeline/commands.ts';
import { parseCommandRequest } from '../pipeline/commands.ts';
import type { DeviceSession } from '../transport/device-session.ts';

const MAX_BODY_BYTES = 16 * 1024;

export type AuthorizeResult = { ok: true } | { ok: false; code: ErrorCode; message: string };

export interface CommandRoutesOptions {
  commands: CommandTracker;
  /** The live, ready session of a device, if any. */
  session: (deviceId: string) => DeviceSession | undefined;
  /** Admin token; when null (and no `authorize`), the commands API answers 401. */
  adminToken: string | null;
  authorize?: (req: IncomingMessage) => AuthorizeResult;
}

const POST_RE = /^\/api\/devices\/([^/]+)\/commands$/;
const GET_RE = /^\/api\/devices\/([^/]+)\/commands\/(\d{1,10})$/;

/** Returns a handler answering the commands routes; false for any other path. */
export function createCommandRoutes(
  opts: CommandRoutesOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const authorize = opts.authorize ?? adminBearer(opts.adminToken);
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    const post = POST_RE.exec(path);
    const get = post ? null : GET_RE.exec(path);
    if (!post && !get) return false;
    const deviceId = decodeURIComponent((post ?? get)?.[1] ?? '');
    const auth = authorize(req);
    if (!auth.ok) {
      sendError(res, auth.code, auth.message);
      return true;
    }
    if (!isDeviceId(deviceId)) {
      sendError(res, 'BAD_REQUEST', 'invalid device id');
      return true;
    }
    if (get) {
      if (req.method !== 'GET') return methodNotAllowed(res, 'GET');
      const rec = opts.commands.get(deviceId, Number(get[2]));
      if (!rec) sendError(res, 'NOT_FOUND', 'no such command (unknown, or dropped from the bounded table)');
      else sendJson(res, 200, view(rec));
      return true;
    }
    if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
    readJsonBody(req, MAX_BODY_BYTES, (err, body) => {
      if (err) {
        sendError(res, err.code, err.message);
        return;
      }
      try {
        const { name, args } = parseCommandRequest(body);
        const session = opts.session(deviceId);
        if (!session?.isReady()) throw new HubError('DEVICE_OFFLINE', `${deviceId} is not connected`);
        const commandId = opts.commands.nextId();
        session.sendCommand(commandId, name, args);
        const rec = opts.commands.record(deviceId, commandId, name, args);
        sendJson(res, 202, view(rec));
      } catch (e) {
        if (e instanceof HubError) sendError(res, e.code, e.message);
        else sendError(res, 'INTERNAL', 'internal error');
      }
    });
    return true;
  };
}

function view(rec: CommandRecord) {
  return {
    deviceId: rec.deviceId,
    commandId: rec.commandId,
    name: rec.name,
    args: Object.fromEntries(rec.args.map((a) => [a.key, a.value])),
    state: rec.state,
    status: rec.status ?? null,
    message: rec.message ?? null,
    createdAtMs: rec.createdAtMs,
    updatedAtMs: rec.updatedAtMs,
  };
}

/** `Authorization: Bearer <admin token>`, compared in constant time (digests of equal length). */
export function adminBearer(adminToken: string | null): (req: IncomingMessage) => AuthorizeResult {
  const expected = adminToken === null ? null : createHash('sha256').update(adminToken).digest();
  return (req) => {
    if (expected === null)
      return { ok: false, code: 'UNAUTHORIZED', message: 'admin API disabled: set HUB_ADMIN_TOKEN' };
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) return { ok: false, code: 'UNAUTHORIZED', message: 'admin token required' };
    const got = createHash('sha256')
      .update(m[1] as string)
      .digest();
    if (!timingSafeEqual(got, expected)) return { ok: false, code: 'UNAUTHORIZED', message: 'bad admin token' };
    return { ok: true };
  };
}

function methodNotAllowed(res: ServerResponse, allow: string): true {
  res.setHeader('Allow', allow);
  sendError(res, 'BAD_REQUEST', `method not allowed; use ${allow}`);
  return true;
}

function readJsonBody(req: IncomingMessage, max: number, done: (err: HubError | null, body: unknown) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (err: HubError | null, body: unknown) => {
    if (finished) return;
    finished = true;
    done(err, body);
  };
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > max) {
      finish(new HubError('PAYLOAD_TOO_LARGE', `body larger than ${max} bytes`), null);
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    try {
      finish(null, JSON.parse(Buffer.concat(chunks).toString('utf8')));
    } catch {
      finish(new HubError('BAD_REQUEST', 'body is not valid JSON'), null);
    }
  });
  req.on('error', () => finish(new HubError('BAD_REQUEST', 'request aborted'), null));
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

/** `{ error: { code, message } }` with the catalogue's HTTP status. */
export function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, ERRORS[code].http ?? 500, { error: { code, message } });
}
