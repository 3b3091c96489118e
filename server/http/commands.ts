/**
 * Commands over HTTP [PROTO-3.6]:
 *   POST /api/devices/:id/commands              body `{ "name": "identify", "args": { "duration_ms": 3000 } }`
 *        → 202 `{ commandId, state: "sent", … }`; 409 DEVICE_OFFLINE when the device has no live session.
 *   GET  /api/devices/:id/commands/:commandId   → 200 the command's record (sent/accepted/done/failed/timeout).
 * Who may use them is the `guard`: the admin token by default, or the dashboard's operator check.
 * With several instances (`remote`, server/cluster/remote-commands.ts) a device whose session is on
 * another instance gets the command through that instance, and the answers are the same.
 * Errors are `{ error: { code, message } }` with the catalogue's HTTP status (the router's).
 */
import { z } from 'zod';
import type { CommandArg } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import { type CommandRecord, type CommandTracker, parseCommandRequest } from '../pipeline/commands.ts';
import type { DeviceSession } from '../transport/device-session.ts';
import { sendJson } from './respond.ts';
import type { Guard, Router } from './router.ts';
import { commandName, deviceId, deviceIdParams, noQuery } from './schemas.ts';

/** A command request body is a name and a few arguments. */
const MAX_BODY_BYTES = 16 * 1024;

export interface CommandRoutesOptions {
  commands: CommandTracker;
  /** The live session of a device, if any. */
  session: (deviceId: string) => DeviceSession | undefined;
  /** Who may read and send commands, e.g. `requireAdmin(token)` or `guardFrom(dashboardOperatorCheck)`. */
  guard: Guard;
  /** Several instances: devices whose session is elsewhere (null or absent: one instance). */
  remote?: () => RemoteCommands | null;
}

/** A command as the API answers it. */
export interface CommandView {
  deviceId: string;
  commandId: number;
  name: string;
  args: Record<string, number | boolean | string>;
  state: CommandRecord['state'];
  status: number | null;
  message: string | null;
  createdAtMs: number;
  updatedAtMs: number;
}

/** Commands for devices whose session is on another instance (server/cluster/remote-commands.ts). */
export interface RemoteCommands {
  /** Sends through the instance holding the device's session; null when none holds it (409). */
  send(deviceId: string, name: string, args: CommandArg[]): Promise<CommandView | null>;
  /** The command's record from the instance that issued it; null when unknown. */
  get(deviceId: string, commandId: number): Promise<CommandView | null>;
}

const commandBody = z.strictObject({
  name: commandName,
  args: z
    .record(z.string(), z.union([z.number(), z.boolean(), z.string()]))
    .nullable()
    .optional()
    .describe('At most 16 arguments; keys are channel-key shaped; known commands check their arguments'),
});

const commandView = z.object({
  deviceId: z.string(),
  commandId: z.number().int(),
  name: z.string(),
  args: z.record(z.string(), z.union([z.number(), z.boolean(), z.string()])),
  state: z.enum(['sent', 'accepted', 'done', 'failed', 'timeout']),
  status: z.number().nullable(),
  message: z.string().nullable(),
  createdAtMs: z.number(),
  updatedAtMs: z.number(),
});

export function registerCommandRoutes(router: Router, opts: CommandRoutesOptions): void {
  const options = {
    guard: opts.guard,
    headers: { 'cache-control': 'no-store' },
    maxBodyBytes: MAX_BODY_BYTES,
    tags: ['commands'],
  };

  router.post(
    '/api/devices/:id/commands',
    async (ctx) => {
      const { id } = ctx.input.params;
      const { name, args } = parseCommandRequest(ctx.input.body);
      const session = opts.session(id);
      if (!session?.isReady()) {
        const remote = opts.remote?.();
        const sent = remote ? await remote.send(id, name, args) : null;
        if (!sent) throw new HubError('DEVICE_OFFLINE', `${id} is not connected`);
        sendJson(ctx.res, 202, sent);
        return;
      }
      const commandId = opts.commands.nextId();
      session.sendCommand(commandId, name, args);
      sendJson(ctx.res, 202, commandToView(opts.commands.record(id, commandId, name, args)));
    },
    {
      ...options,
      summary: 'Send a command to a connected device [PROTO-3.6]',
      description:
        '409 DEVICE_OFFLINE when the device has no live session (on any instance); 504 CLUSTER_RPC_TIMEOUT when the instance holding it did not answer.',
      params: deviceIdParams,
      query: noQuery,
      body: commandBody,
      responses: { 202: commandView.describe('Sent; follow it with the GET route') },
    },
  );

  router.get(
    '/api/devices/:id/commands/:commandId',
    async (ctx) => {
      const { id, commandId } = ctx.input.params;
      const rec = opts.commands.get(id, commandId);
      if (rec) return commandToView(rec);
      const remote = (await opts.remote?.()?.get(id, commandId)) ?? null;
      if (!remote) throw new HubError('NOT_FOUND', 'no such command (unknown, or dropped from the bounded table)');
      return remote;
    },
    {
      ...options,
      summary: "A command's state: sent, accepted, done, failed or timeout",
      params: z.strictObject({
        id: deviceId,
        commandId: z
          .string()
          .regex(/^\d{1,10}$/, 'a command id is a decimal number')
          .transform(Number)
          .pipe(z.number().int().max(0xffffffff)),
      }),
      query: noQuery,
      responses: { 200: commandView },
    },
  );
}

export function commandToView(rec: CommandRecord): CommandView {
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
