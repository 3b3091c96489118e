/**
 * The admin API: the device registry over HTTP, behind `Authorization: Bearer <HUB_ADMIN_TOKEN>`
 * (disabled, 404, when no admin token is configured). Reference: docs/devices.md.
 *
 * | route | answer |
 * |---|---|
 * | `GET /api/admin/devices` | 200 `{ devices: Device[] }` |
 * | `GET /api/admin/devices/:id` | 200 `Device` |
 * | `POST /api/admin/devices` `{ "id": "…" }` | 201 `{ id, token, createdAt, deviceUrl }`: the only time the token is shown |
 * | `POST /api/admin/devices/:id/rotate` | 200 `{ id, token, rotatedAt, deviceUrl }` |
 * | `DELETE /api/admin/devices/:id` | 200 `Device` (revoked) |
 *
 * Every answer carries `Cache-Control: no-store` (tokens must not sit in caches). Tokens are never
 * logged; the audit log line names the device, the action and the peer address.
 */
import { z } from 'zod';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { DeviceInfo, DeviceRegistry } from '../registry/index.ts';
import { requireAdmin } from './auth.ts';
import { sendJson } from './respond.ts';
import type { RequestContext, Router } from './router.ts';
import { deviceId, noQuery } from './schemas.ts';

/** A device as the admin API shows it. Times are ISO-8601 UTC. */
export interface AdminDevice {
  id: string;
  revoked: boolean;
  createdAt: string;
  rotatedAt: string | null;
  revokedAt: string | null;
}

export interface AdminRoutesOptions {
  registry: Pick<DeviceRegistry, 'add' | 'list' | 'get' | 'revoke' | 'rotate'>;
  /** `config.auth.adminToken`; null disables the admin API (every route answers 404 saying so). */
  adminToken: string | null;
  /** Where devices connect (`deviceUrlFrom(config.server.publicUrl)`), returned with new tokens. */
  deviceUrl: string;
  logger?: Logger;
}

/** Path prefix of every admin route. */
export const ADMIN_PREFIX = '/api/admin';
/** Largest admin request body: `{ "id": "<64 chars>" }` needs far less. */
const MAX_BODY_BYTES = 1024;

/** Registers the admin device routes on `router`. */
export function registerAdminRoutes(router: Router, options: AdminRoutesOptions): void {
  const { registry, deviceUrl } = options;
  const logger = options.logger?.child({ component: 'admin-api' });
  const route = {
    guard: requireAdmin(options.adminToken),
    headers: { 'cache-control': 'no-store' },
    maxBodyBytes: MAX_BODY_BYTES,
    tags: ['admin'],
    query: noQuery,
  };
  // The registry checks the [PROTO-2.8] alphabet (and answers 404 for an unknown id).
  const idParams = z.strictObject({ id: z.string() });
  const audit = (ctx: RequestContext, action: string, deviceId: string) =>
    logger?.info({ action, deviceId, remoteAddress: ctx.req.socket.remoteAddress }, 'admin API changed a device');

  router.get(`${ADMIN_PREFIX}/devices`, () => ({ devices: registry.list().map(toAdminDevice) }), {
    ...route,
    summary: 'Every registered device (revoked ones too)',
    responses: { 200: z.object({ devices: z.array(adminDevice) }) },
  });

  router.get(
    `${ADMIN_PREFIX}/devices/:id`,
    (ctx) => {
      const { id } = ctx.input.params;
      const device = registry.get(id);
      if (!device) throw new HubError('NOT_FOUND', `no device ${id} is registered`);
      return toAdminDevice(device);
    },
    { ...route, summary: 'One registered device', params: idParams, responses: { 200: adminDevice } },
  );

  router.post(
    `${ADMIN_PREFIX}/devices`,
    async (ctx) => {
      const { id } = ctx.input.body;
      const { token, device } = await registry.add(id);
      audit(ctx, 'add', id);
      sendJson(
        ctx.res,
        201,
        { id, token, createdAt: iso(device.createdAtMs), deviceUrl },
        { location: `${ADMIN_PREFIX}/devices/${encodeURIComponent(id)}` },
      );
    },
    {
      ...route,
      summary: 'Register a device and issue its token (the only time the token is shown)',
      description: '409 DEVICE_EXISTS when the id is taken; 400 when it is not a valid device id [PROTO-2.8].',
      body: z.strictObject({ id: deviceId }),
      responses: { 201: issued.extend({ createdAt: z.string() }).describe('Registered; Location names the device') },
    },
  );

  router.post(
    `${ADMIN_PREFIX}/devices/:id/rotate`,
    async (ctx) => {
      const id = ctx.params.id as string;
      const { token, device } = await registry.rotate(id);
      audit(ctx, 'rotate', id);
      return { id, token, rotatedAt: iso(device.rotatedAtMs as number), deviceUrl };
    },
    {
      ...route,
      summary: "Rotate a device's token (the old one stops working at once)",
      params: idParams,
      responses: { 200: issued.extend({ rotatedAt: z.string() }) },
    },
  );

  router.delete(
    `${ADMIN_PREFIX}/devices/:id`,
    async (ctx) => {
      const id = ctx.params.id as string;
      const device = await registry.revoke(id);
      audit(ctx, 'revoke', id);
      return toAdminDevice(device);
    },
    {
      ...route,
      summary: "Revoke a device's token (its session ends at once)",
      params: idParams,
      responses: { 200: adminDevice.describe('The device, revoked') },
    },
  );
}

const adminDevice = z.object({
  id: z.string(),
  revoked: z.boolean(),
  createdAt: z.string().describe('ISO-8601 UTC'),
  rotatedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});

const issued = z.object({ id: z.string(), token: z.string(), deviceUrl: z.string() });

export function toAdminDevice(device: DeviceInfo): AdminDevice {
  return {
    id: device.id,
    revoked: device.revoked,
    createdAt: iso(device.createdAtMs),
    rotatedAt: device.rotatedAtMs === null ? null : iso(device.rotatedAtMs),
    revokedAt: device.revokedAtMs === null ? null : iso(device.revokedAtMs),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
