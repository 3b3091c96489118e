/**
 * Commands over HTTP [PROTO-3.6]:
 *   POST /api/devices/:id/commands              body `{ "name": "identify", "args": { "duration_ms": 3000 } }`
 *        → 202 `{ commandId, state: "sent", … }`; 409 DEVICE_OFFLINE when the device has no live session.
 *   GET  /api/devices/:id/commands/:commandId   → 200 the command's record (sent/accepted/done/failed/timeout).
 * Who may use them is the `guard`: the admin token by default, or the dashboard's operator check.
 * Errors are `{ error: { code, message } }` with the catalogue's HTTP status (the router's).
 */
import { isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import { type CommandRecord, type CommandTracker, parseCommandRequest } from '../pipeline/commands.ts';
import type { DeviceSession } from '../transport/device-session.ts';
import { sendJson } from './respond.ts';
import type { Guard, Router } from './router.ts';

/** A command request body is a name and a few arguments. */
const MAX_BODY_BYTES = 16 * 1024;

export interface CommandRoutesOptions {
  commands: CommandTracker;
  /** The live session of a device, if any. */
  session: (deviceId: string) => DeviceSession | undefined;
  /** Who may read and send commands, e.g. `requireAdmin(token)` or `guardFrom(dashboardOperatorCheck)`. */
  guard: Guard;
}

export function registerCommandRoutes(router: Router, opts: CommandRoutesOptions): void {
  const options = { guard: opts.guard, headers: { 'cache-control': 'no-store' }, maxBodyBytes: MAX_BODY_BYTES };

  router.post(
    '/api/devices/:id/commands',
    async (ctx) => {
      const deviceId = checkedDeviceId(ctx.params.id);
      const { name, args } = parseCommandRequest(await ctx.body());
      const session = opts.session(deviceId);
      if (!session?.isReady()) throw new HubError('DEVICE_OFFLINE', `${deviceId} is not connected`);
      const commandId = opts.commands.nextId();
      session.sendCommand(commandId, name, args);
      sendJson(ctx.res, 202, view(opts.commands.record(deviceId, commandId, name, args)));
    },
    options,
  );

  router.get(
    '/api/devices/:id/commands/:commandId',
    (ctx) => {
      const deviceId = checkedDeviceId(ctx.params.id);
      const commandId = /^\d{1,10}$/.test(ctx.params.commandId ?? '') ? Number(ctx.params.commandId) : Number.NaN;
      const rec = Number.isSafeInteger(commandId) ? opts.commands.get(deviceId, commandId) : undefined;
      if (!rec) throw new HubError('NOT_FOUND', 'no such command (unknown, or dropped from the bounded table)');
      return view(rec);
    },
    options,
  );
}

function checkedDeviceId(id: string | undefined): string {
  if (id === undefined || !isDeviceId(id)) throw new HubError('BAD_REQUEST', 'invalid device id');
  return id;
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
