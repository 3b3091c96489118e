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
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import type {
  DeadLetterFilter,
  DeadLetterRecent,
  DeadLetterTotals,
  DeadLetterView,
  OpenDeadLetterStore,
} from '../storage/dead-letter.ts';
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

export function registerDeadLetterRoutes(router: Router, options: DeadLetterRoutesOptions): void {
  const { admin } = options;
  const logger = options.logger?.child({ component: 'admin-api' });
  const route = {
    guard: requireAdmin(options.adminToken),
    headers: { 'cache-control': 'no-store' },
    maxBodyBytes: 64 * 1024,
  };
  const audit = (ctx: RequestContext, action: string, detail: object) =>
    logger?.info({ action, ...detail, remoteAddress: ctx.req.socket.remoteAddress }, 'admin API changed dead letters');

  router.get(
    DEAD_LETTERS_PATH,
    (ctx) => {
      const q = ctx.query;
      const filter = filterFromQuery(q);
      const limit = intParam(q, 'limit', 1, MAX_PAGE) ?? DEFAULT_PAGE;
      const lines = intParam(q, 'lines', 0, 1_000_000) ?? DEFAULT_LINES_PER_RECORD;
      const afterId = intParam(q, 'after', 0, Number.MAX_SAFE_INTEGER) ?? 0;
      const page = admin.store.query({ ...filter, afterId, limit, maxLinesPerRecord: lines });
      return {
        totals: admin.store.totals(),
        recent: admin.store.recent(),
        records: page.records.map(viewOf),
        next: page.nextAfterId,
      } satisfies {
        totals: DeadLetterTotals;
        recent: DeadLetterRecent;
        records: DeadLetterView[];
        next: number | null;
      };
    },
    route,
  );

  router.get(
    `${DEAD_LETTERS_PATH}/:id`,
    (ctx) => {
      const id = idParam(ctx.params.id as string);
      const record = admin.store.get(id);
      if (!record) throw new HubError('NOT_FOUND', `no dead-letter record ${id} (replayed, dropped or evicted)`);
      return viewOf(record);
    },
    route,
  );

  router.post(
    `${DEAD_LETTERS_PATH}/replay`,
    async (ctx) => {
      // `{}` replays every record.
      const { filter, limit, bucket } = parseReplayBody(await ctx.body());
      const result = await admin.replay({
        filter,
        ...(limit !== undefined ? { limit } : {}),
        ...(bucket !== undefined ? { bucket } : {}),
      });
      audit(ctx, 'replay', { filter, bucket, ...result });
      return result;
    },
    route,
  );

  router.delete(
    DEAD_LETTERS_PATH,
    async (ctx) => {
      const q = ctx.query;
      const filter = filterFromQuery(q);
      const all = q.get('all') === 'true';
      const filtered = filter.ids !== undefined || filter.reason !== undefined || filter.status !== undefined;
      if (all === filtered) {
        throw new HubError(
          'BAD_REQUEST',
          'say which dead letters to drop: ?reason=, ?status=, ?ids=1,2, or ?all=true alone',
        );
      }
      const dropped = await admin.store.drop(filter);
      audit(ctx, 'drop', { filter, all, ...dropped });
      return { dropped };
    },
    route,
  );

  router.delete(
    `${DEAD_LETTERS_PATH}/:id`,
    async (ctx) => {
      const id = idParam(ctx.params.id as string);
      const dropped = await admin.store.drop({ ids: [id] });
      if (dropped.records === 0) throw new HubError('NOT_FOUND', `no dead-letter record ${id}`);
      audit(ctx, 'drop', { id, ...dropped });
      return { dropped };
    },
    route,
  );
}

function idParam(text: string): number {
  if (!/^[1-9]\d{0,15}$/.test(text)) throw new HubError('BAD_REQUEST', `"${text.slice(0, 20)}" is not a record id`);
  return Number(text);
}

function intParam(q: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const text = q.get(name);
  if (text === null) return undefined;
  const n = Number(text);
  if (text === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new HubError('BAD_REQUEST', `"${name}" must be an integer from ${min} to ${max}`);
  }
  return n;
}

function filterFromQuery(q: URLSearchParams): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  const reason = q.get('reason');
  if (reason !== null && reason !== '') filter.reason = reason;
  const status = intParam(q, 'status', 0, 999);
  if (status !== undefined) filter.status = status;
  const ids = q.get('ids');
  if (ids !== null) filter.ids = ids.split(',').map(idParam);
  return filter;
}

const REPLAY_FIELDS = new Set(['ids', 'reason', 'status', 'limit', 'bucket']);

function parseReplayBody(body: unknown): { filter: DeadLetterFilter; limit?: number; bucket?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HubError('BAD_REQUEST', 'the body must be a JSON object like {"reason":"field type conflict"}');
  }
  const extra = Object.keys(body).filter((k) => !REPLAY_FIELDS.has(k));
  if (extra.length > 0) throw new HubError('BAD_REQUEST', `unknown field(s): ${extra.slice(0, 5).join(', ')}`);
  const b = body as Record<string, unknown>;
  const out: { filter: DeadLetterFilter; limit?: number; bucket?: string } = { filter: {} };
  if (b.ids !== undefined) {
    if (!Array.isArray(b.ids) || !b.ids.every((i) => Number.isSafeInteger(i) && (i as number) > 0)) {
      throw new HubError('BAD_REQUEST', '"ids" must be an array of record ids');
    }
    out.filter.ids = b.ids as number[];
  }
  if (b.reason !== undefined) {
    if (typeof b.reason !== 'string' || b.reason === '') throw new HubError('BAD_REQUEST', '"reason" must be a string');
    out.filter.reason = b.reason;
  }
  if (b.status !== undefined) {
    if (!Number.isInteger(b.status)) throw new HubError('BAD_REQUEST', '"status" must be an HTTP status');
    out.filter.status = b.status as number;
  }
  if (b.limit !== undefined) {
    if (!Number.isInteger(b.limit) || (b.limit as number) < 1) {
      throw new HubError('BAD_REQUEST', '"limit" must be a positive integer');
    }
    out.limit = b.limit as number;
  }
  if (b.bucket !== undefined) {
    if (typeof b.bucket !== 'string' || b.bucket === '') throw new HubError('BAD_REQUEST', '"bucket" must be a string');
    out.bucket = b.bucket;
  }
  return out;
}
