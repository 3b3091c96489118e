/**
 * OTA campaign routes (docs/ota.md):
 *
 * | route | guard | answer |
 * |---|---|---|
 * | `GET /api/ota/campaigns` | read | `{ campaigns: Campaign[] }` (without per-board detail) |
 * | `POST /api/ota/campaigns` `{ imageId, devices?, group?, waves?, maxFailures? }` | operator | 201 `Campaign` |
 * | `GET /api/ota/campaigns/:id` | read | `Campaign` with every board's state |
 * | `POST /api/ota/campaigns/:id/actions` `{ action: pause \| resume \| abort }` | operator | `Campaign` |
 */
import { z } from 'zod';
import { sendJson } from '../http/respond.ts';
import type { Guard, Router } from '../http/router.ts';
import { deviceId } from '../http/schemas.ts';
import { BOARD_STATES, type Campaign, type Campaigns } from './campaign.ts';

const noStore = { 'cache-control': 'no-store' };
const idParams = z.strictObject({ id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a campaign id (12 hex characters)') });

function summary(c: Campaign) {
  const counts = Object.fromEntries(BOARD_STATES.map((s) => [s, 0])) as Record<string, number>;
  for (const b of Object.values(c.boards)) counts[b.state] = (counts[b.state] ?? 0) + 1;
  const { boards, ...rest } = c;
  return { ...rest, boardCount: Object.keys(boards).length, counts };
}

export function registerCampaignRoutes(
  router: Router,
  o: { campaigns: Campaigns; guard: Guard; readGuard: Guard },
): void {
  const tags = ['ota'];
  router.get('/api/ota/campaigns', () => ({ campaigns: o.campaigns.list().map(summary) }), {
    guard: o.readGuard,
    headers: noStore,
    tags,
    summary: 'OTA campaigns with board counts by state',
    query: z.strictObject({}),
  });
  router.post(
    '/api/ota/campaigns',
    async (ctx) => {
      const c = await o.campaigns.start(ctx.input.body);
      sendJson(ctx.res, 201, { ...summary(c), boards: c.boards }, noStore);
    },
    {
      guard: o.guard,
      headers: noStore,
      tags,
      summary: 'Start an OTA campaign: all boards, a list or a glob group, in waves',
      query: z.strictObject({}),
      body: z.strictObject({
        imageId: z.string().regex(/^[0-9a-f]{16}$/, 'an image id is 16 hex characters'),
        devices: z.array(deviceId).min(1).max(100_000).optional(),
        group: z
          .string()
          .regex(/^[A-Za-z0-9_.*?-]{1,64}$/, 'a glob over device ids, e.g. sim-*')
          .optional(),
        waves: z.string().max(200).optional().describe('Cumulative counts or shares, e.g. 1,10%,100%'),
        maxFailures: z.string().max(10).optional().describe('Pause past this share (10%) or count (3) of failures'),
      }),
    },
  );
  router.get(
    '/api/ota/campaigns/:id',
    (ctx) => {
      const c = o.campaigns.get(ctx.input.params.id);
      return { ...summary(c), boards: c.boards };
    },
    {
      guard: o.readGuard,
      headers: noStore,
      tags,
      summary: "An OTA campaign with each board's state",
      params: idParams,
      query: z.strictObject({}),
    },
  );
  router.post(
    '/api/ota/campaigns/:id/actions',
    (ctx) => {
      const { id } = ctx.input.params;
      const { action } = ctx.input.body;
      const c =
        action === 'pause'
          ? o.campaigns.pause(id)
          : action === 'resume'
            ? o.campaigns.resume(id)
            : o.campaigns.abort(id);
      return summary(c);
    },
    {
      guard: o.guard,
      headers: noStore,
      tags,
      summary: 'Pause, resume or abort an OTA campaign',
      params: idParams,
      query: z.strictObject({}),
      body: z.strictObject({ action: z.enum(['pause', 'resume', 'abort']) }),
    },
  );
}
