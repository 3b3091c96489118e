/**
 * The admin API for dead letters (lines InfluxDB rejected permanently), behind the admin token like
 * the rest of `/api/admin` (404 when no admin token is configured). Registered when the hub forwards
 * to InfluxDB. Reference: docs/storage.md §4.
 *
 * | route | answer |
 * |---|---|
 * | `GET /api/admin/dead-letters?reason=&status=&after=&limit=&lines=` | 200 `{ totals, recent, records, next }` |
 * | `GET /api/admin/dead-letters/:id` | 200 one record with all its lines |
 * | `POST /api/admin/dead-letters/replay` `{ ids?, reason?, status?, limit?, bucket? }` (`{}`: all) | 200 `ReplayResult` |
 * | `DELETE /api/admin/dead-letters?reason=&status=&ids=1,2` (or `?all=true`) | 200 `{ dropped: { records, lines } }` |
 * | `DELETE /api/admin/dead-letters/:id` | 200 `{ dropped: { records: 1, lines } }` |
 *
 * Replay re-sends the matching records to InfluxDB (`bucket` may name another bucket/database, e.g.
 * a fresh one); lines rejected again stay, with the new reason. A transient failure stops it with
 * `complete: false` and `stoppedBy` (the records not settled are untouched). Replays and drops are
 * audit-logged with the peer address.
 */
import { z } from 'zod';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type { DeadLetterFilter, OpenDeadLetterStore } from '../storage/dead-letter.ts';
import { viewOf } from '../storage/dead-letter.ts';
import type { ReplayRequest, ReplayResult } from '../storage/influx/replay.ts';
import { ADMIN_PREFIX } from './admin.ts';
import { requireAdmin } from './auth.ts';
import type { RequestContext, Router } from './router.ts';

/** What the routes need: the store and a replay into InfluxDB (optionally another bucket). */
export interface DeadLetterAdmin {
  store: Pick<OpenDeadLetterStore, 'totals' | 'recent' | 'query' | 'get' | 'drop'>;
  replay(req: ReplayRequest): Promise<ReplayResult>;
}

export interface DeadLetterRoutesOptions {
  admin: DeadLetterAdmin;
  /** `config.auth.adminToken`; null disables the routes (404 saying how to enable them). */
  adminToken: string | null;
  logger?: Logger;
}

export const DEAD_LETTERS_PATH = `${ADMIN_PREFIX}/dead-letters`;
const MAX_PAGE = 1000;
const DEFAULT_PAGE = 50;
const DEFAULT_LINES_PER_RECORD = 20;

/** A record id: a positive decimal integer. */
const recordId = z
  .string()
  .regex(/^[1-9]\d{0,15}$/, 'a record id is a positive integer')
  .transform(Number);
/** An integer query parameter in [min, max]. */
const intText = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?\d+$/, `an integer from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
const filterQuery = {
  reason: z.string().optional().describe('Records whose reason contains this text (case-insensitive)'),
  status: intText(0, 999).optional().describe("InfluxDB's HTTP status"),
  ids: z
    .string()
    .transform((text, ctx) => {
      const ids = text.split(',').map((t) => recordId.safeParse(t));
      if (ids.every((r) => r.success)) return ids.map((r) => r.data as number);
      ctx.addIssue({ code: 'custom', message: 'a comma-separated list of record ids' });
      return z.NEVER;
    })
    .optional()
    .describe('Comma-separated record ids'),
};
const replayBody = z.strictObject({
  ids: z.array(z.number().int().positive()).optional(),
  reason: z.string().min(1).optional(),
  status: z.number().int().optional(),
  limit: z.number().int().positive().optional(),
  bucket: z.string().min(1).optional().describe('Another bucket/database to replay into'),
});
const deadLetterRecord = z.looseObject({ id: z.number(), reason: z.string(), status: z.number() });
const dropped = z.object({ dropped: z.object({ records: z.number(), lines: z.number() }) });

export function registerDeadLetterRoutes(router: Router, options: DeadLetterRoutesOptions): void {
  const { admin } = options;
  const logger = options.logger?.child({ component: 'admin-api' });
  const route = {
    guard: requireAdmin(options.adminToken),
    headers: { 'cache-control': 'no-store' },
    maxBodyBytes: 64 * 1024,
    tags: ['admin', 'dead letters'],
  };
  const idParams = z.strictObject({ id: recordId });
  const audit = (ctx: RequestContext, action: string, detail: object) =>
    logger?.info({ action, ...detail, remoteAddress: ctx.req.socket.remoteAddress }, 'admin API changed dead letters');

  router.get(
    DEAD_LETTERS_PATH,
    (ctx) => {
      const { limit, lines, after, ...q } = ctx.input.query;
      const page = admin.store.query({ ...filterOf(q), afterId: after, limit, maxLinesPerRecord: lines });
      return {
        totals: admin.store.totals(),
        recent: admin.store.recent(),
        records: page.records.map(viewOf),
        next: page.nextAfterId,
      };
    },
    {
      ...route,
      summary: 'Dead letters: totals, the recent rate and a page of records',
      query: z.strictObject({
        ...filterQuery,
        limit: intText(1, MAX_PAGE).default(DEFAULT_PAGE).describe('Records per page'),
        lines: intText(0, 1_000_000).default(DEFAULT_LINES_PER_RECORD).describe('Lines shown per record'),
        after: intText(0, Number.MAX_SAFE_INTEGER).default(0).describe('The `next` of the previous page'),
      }),
      responses: {
        200: z.object({
          totals: z.looseObject({ lines: z.number(), bytes: z.number(), maxBytes: z.number() }),
          recent: z.looseObject({ windowMs: z.number(), lines: z.number(), evictedLines: z.number() }),
          records: z.array(deadLetterRecord),
          next: z.number().nullable(),
        }),
      },
    },
  );

  router.get(
    `${DEAD_LETTERS_PATH}/:id`,
    (ctx) => {
      const { id } = ctx.input.params;
      const record = admin.store.get(id);
      if (!record) throw new HubError('NOT_FOUND', `no dead-letter record ${id} (replayed, dropped or evicted)`);
      return viewOf(record);
    },
    {
      ...route,
      summary: 'One dead-letter record with all its lines',
      params: idParams,
      query: z.strictObject({}),
      responses: { 200: deadLetterRecord },
    },
  );

  router.post(
    `${DEAD_LETTERS_PATH}/replay`,
    async (ctx) => {
      // `{}` replays every record.
      const { limit, bucket, ...filter } = ctx.input.body;
      const result = await admin.replay({
        filter: filterOf(filter),
        ...(limit !== undefined ? { limit } : {}),
        ...(bucket !== undefined ? { bucket } : {}),
      });
      audit(ctx, 'replay', { filter, bucket, ...result });
      return result;
    },
    {
      ...route,
      summary: 'Replay dead letters into InfluxDB (`{}`: all of them)',
      description:
        'Lines rejected again stay, with the new reason. A transient failure stops the replay with `complete: false` and `stoppedBy`.',
      query: z.strictObject({}),
      body: replayBody,
      responses: { 200: z.looseObject({ records: z.number(), storedLines: z.number(), complete: z.boolean() }) },
    },
  );

  router.delete(
    DEAD_LETTERS_PATH,
    async (ctx) => {
      const { all, ...q } = ctx.input.query;
      const filter = filterOf(q);
      const filtered = filter.ids !== undefined || filter.reason !== undefined || filter.status !== undefined;
      if (all === filtered) {
        throw new HubError(
          'BAD_REQUEST',
          'say which dead letters to drop: ?reason=, ?status=, ?ids=1,2, or ?all=true alone',
        );
      }
      const result = await admin.store.drop(filter);
      audit(ctx, 'drop', { filter, all, ...result });
      return { dropped: result };
    },
    {
      ...route,
      summary: 'Drop dead letters by filter, or all of them with `all=true` alone',
      query: z.strictObject({
        ...filterQuery,
        all: z
          .enum(['true', 'false'])
          .optional()
          .transform((v) => v === 'true'),
      }),
      responses: { 200: dropped },
    },
  );

  router.delete(
    `${DEAD_LETTERS_PATH}/:id`,
    async (ctx) => {
      const { id } = ctx.input.params;
      const result = await admin.store.drop({ ids: [id] });
      if (result.records === 0) throw new HubError('NOT_FOUND', `no dead-letter record ${id}`);
      audit(ctx, 'drop', { id, ...result });
      return { dropped: result };
    },
    {
      ...route,
      summary: 'Drop one dead-letter record',
      params: idParams,
      query: z.strictObject({}),
      responses: { 200: dropped },
    },
  );
}

/** The store's filter from the parsed query or body (an empty reason filters nothing). */
function filterOf(q: {
  reason?: string | undefined;
  status?: number | undefined;
  ids?: number[] | undefined;
}): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  if (q.reason !== undefined && q.reason !== '') filter.reason = q.reason;
  if (q.status !== undefined) filter.status = q.status;
  if (q.ids !== undefined) filter.ids = q.ids;
  return filter;
}
