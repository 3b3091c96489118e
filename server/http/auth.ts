/**
 * Credentials on HTTP requests: `Authorization: Bearer <token>` only (tokens never travel in URLs),
 * compared in constant time. `requireAdmin` guards the admin API; `anyOf` combines guards, e.g. the
 * history API accepts the dashboard credential or the admin token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type ErrorCode, HubError } from '../errors.ts';
import type { Guard } from './router.ts';

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const REALM = 'Bearer realm="esp32-hub"';

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 token68 syntax), or null. */
export function bearerToken(req: Pick<IncomingMessage, 'headers'>): string | null {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return null;
  return BEARER.exec(header)?.[1] ?? null;
}

/**
 * Compares two secrets in time that depends on neither: both are hashed to 32 bytes first (so
 * lengths never differ), then compared with `crypto.timingSafeEqual`.
 */
export function secretsEqual(presented: string, expected: string): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}

/**
 * A guard that requires `Authorization: Bearer <HUB_ADMIN_TOKEN>`. With no admin token configured
 * the admin API is disabled: every request gets 404 NOT_FOUND saying how to enable it. A missing or
 * wrong token gets 401 UNAUTHORIZED with `WWW-Authenticate: Bearer`.
 */
export function requireAdmin(adminToken: string | null): Guard {
  if (adminToken === null) {
    return () => {
      throw new HubError(
        'NOT_FOUND',
        'the admin API is disabled: set HUB_ADMIN_TOKEN (at least 32 characters, e.g. `openssl rand -hex 32`) and restart the hub',
      );
    };
  }
  const expected = sha256(adminToken);
  return (ctx) => {
    const presented = bearerToken(ctx.req);
    if (presented === null) {
      ctx.res.setHeader('www-authenticate', REALM);
      throw new HubError('UNAUTHORIZED', 'send the admin token as "Authorization: Bearer <HUB_ADMIN_TOKEN>"');
    }
    if (!timingSafeEqual(sha256(presented), expected)) {
      ctx.res.setHeader('www-authenticate', `${REALM}, error="invalid_token"`);
      throw new HubError('UNAUTHORIZED', 'the admin token is not valid');
    }
  };
}

/**
 * A guard that passes when any of `guards` passes (tried in order). When all refuse, it throws the
 * first UNAUTHORIZED among their errors (so the client learns a credential is needed), else the
 * first error.
 */
export function anyOf(...guards: Guard[]): Guard {
  if (guards.length === 0) throw new Error('anyOf needs at least one guard');
  return async (ctx) => {
    const errors: unknown[] = [];
    for (const guard of guards) {
      try {
        await guard(ctx);
        // A challenge set by a guard that refused does not belong on an accepted request.
        if (errors.length > 0 && !ctx.res.headersSent) ctx.res.removeHeader('www-authenticate');
        return;
      } catch (err) {
        errors.push(err);
      }
    }
    throw errors.find((e) => e instanceof HubError && e.code === 'UNAUTHORIZED') ?? errors[0];
  };
}

/** What a request check answers: the shape of `DashboardAuth.check` and the commands module's authorizers. */
export type AccessCheck = (req: IncomingMessage) => { ok: true } | { ok: false; code: ErrorCode; message: string };

/**
 * Turns a check that returns `{ ok }` into a router guard: a refusal becomes a `HubError` with its
 * code (UNAUTHORIZED 401, FORBIDDEN_ORIGIN 403, …), plus `WWW-Authenticate` for 401s. E.g.
 * `guardFrom(dashboardAuth.check)`.
 */
export function guardFrom(check: AccessCheck): Guard {
  return (ctx) => {
    const result = check(ctx.req);
    if (result.ok) return;
    if (result.code === 'UNAUTHORIZED' && !ctx.res.hasHeader('www-authenticate')) {
      ctx.res.setHeader('www-authenticate', REALM);
    }
    throw new HubError(result.code, result.message);
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
