/**
 * The enrollment API (docs/provisioning.md, Hub): the pending list and the operator's decisions, for
 * the dashboard and for scripts. Reading needs dashboard access or the admin token; deciding needs the
 * operator role (admin token, or a dashboard operator session with its CSRF checks) — the commands API's
 * guard. Every answer is `Cache-Control: no-store`; every decision is logged with the peer address.
 *
 * | route | answer |
 * |---|---|
 * | `GET /api/enrollments` | 200 `{ requests: EnrollView[], rejections: RejectionView[] }` |
 * | `POST /api/enrollments/:hardwareId/approve` `{ "deviceId"?: "…" }` | 200 `EnrollView` (approved) |
 * | `POST /api/enrollments/:hardwareId/reject` | 200 `RejectionView` |
 * | `DELETE /api/enrollments/:hardwareId` | 200 `{ hardwareId, request, rejections }` (forgotten) |
 */
import { z } from 'zod';
import type { Guard, RequestContext, Router } from '../http/router.ts';
import type { Logger } from '../log/index.ts';
import {
  approveEnrollment,
  forgetEnrollment,
  listEnrollments,
  type OperatorDeps,
  rejectEnrollment,
} from './operations.ts';

export const ENROLL_API_PREFIX = '/api/enrollments';

export interface EnrollRoutesOptions extends OperatorDeps {
  guard: Guard;
  logger: Logger;
}

const hardwareIdParams = z.strictObject({ hardwareId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/) });

export function registerEnrollRoutes(router: Router, o: EnrollRoutesOptions): void {
  const logger = o.logger.child({ component: 'enroll-api' });
  const base = { guard: o.guard, headers: { 'cache-control': 'no-store' }, tags: ['enrollment'], maxBodyBytes: 1024 };
  const audit = (ctx: RequestContext, action: string, hardwareId: string, deviceId?: string) =>
    logger.info(
      { action, hardwareId, ...(deviceId ? { deviceId } : {}), remoteAddress: ctx.req.socket.remoteAddress },
      'enrollment decision over the API',
    );

  router.get(ENROLL_API_PREFIX, () => listEnrollments(o.store.snapshot()), {
    ...base,
    summary: 'Enrollment requests waiting for a decision or for their board, and rejections',
    query: z.strictObject({}),
  });

  router.post(
    `${ENROLL_API_PREFIX}/:hardwareId/approve`,
    async (ctx) => {
      const { hardwareId } = ctx.input.params;
      // No body approves under the default id.
      const view = await approveEnrollment(o, hardwareId, ctx.input.body?.deviceId);
      audit(ctx, 'approve', hardwareId, view.deviceId ?? undefined);
      return view;
    },
    {
      ...base,
      params: hardwareIdParams,
      body: z.strictObject({ deviceId: z.string().max(64).optional() }).optional(),
      summary: 'Approve a board: the hub hands it a token (now if connected, else when it asks next)',
    },
  );

  router.post(
    `${ENROLL_API_PREFIX}/:hardwareId/reject`,
    async (ctx) => {
      const { hardwareId } = ctx.input.params;
      const view = await rejectEnrollment(o, hardwareId);
      audit(ctx, 'reject', hardwareId);
      return view;
    },
    { ...base, params: hardwareIdParams, summary: 'Reject a board (its hardware id and enroll key)' },
  );

  router.delete(
    `${ENROLL_API_PREFIX}/:hardwareId`,
    async (ctx) => {
      const { hardwareId } = ctx.input.params;
      const result = await forgetEnrollment(o, hardwareId);
      audit(ctx, 'forget', hardwareId);
      return result;
    },
    {
      ...base,
      params: hardwareIdParams,
      query: z.strictObject({}),
      summary: 'Forget a board: its request and rejections',
    },
  );
}
