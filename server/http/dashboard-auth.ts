/**
 * Who may use the built-in dashboard, its REST routes and the live endpoint (docs/live-api.md §1).
 *
 * - `HUB_DASHBOARD_PASSWORD` set ("password mode"): a login form POSTs the password (never a URL);
 *   the hub answers with an HttpOnly, SameSite=Strict cookie holding a random 256-bit session id
 *   (stored hashed, expires after `sessionTtlMs`). Programs may send `Authorization: Bearer
 *   <password>` instead. The password grants the read-only `viewer` role.
 * - Unset ("open mode"): no login, but only for peers on the loopback interface and only under a
 *   Host name DNS rebinding cannot forge (an IP literal, `localhost`, the public URL's host or an
 *   allowed origin's host). Exposing the dashboard to a network therefore needs a password.
 * - `HUB_ADMIN_TOKEN`, entered in the same form (or sent as a Bearer token), grants `operator`: the
 *   page may send commands. In open mode without an admin token, loopback users are operators
 *   (a single-machine setup with nothing else to protect).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HubConfig } from '../config/index.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { createOriginPolicy, isLoopbackAddress, type OriginPolicy } from '../live/origin.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { redirect, sendJson, sendText } from './respond.ts';

export type DashboardRole = 'viewer' | 'operator';

export interface DashboardPrincipal {
  role: DashboardRole;
  /** How the request was authenticated. */
  via: 'open' | 'session' | 'bearer';
}

export type AccessResult =
  | { ok: true; principal: DashboardPrincipal }
  | { ok: false; code: Extract<ErrorCode, 'UNAUTHORIZED' | 'FORBIDDEN_ORIGIN'>; message: string };

export interface DashboardAuthOptions {
  config: Readonly<Pick<HubConfig, 'server' | 'auth'>>;
  logger?: Logger;
  metrics?: Pick<Metrics, 'handshakesRejected'>;
  /** Session lifetime (ms), absolute from login. */
  sessionTtlMs?: number;
  /** Sessions kept at most; the oldest is dropped first. */
  maxSessions?: number;
  /** Failed logins allowed per peer address per minute. */
  loginFailuresPerMinute?: number;
  now?: () => number;
}

export interface DashboardAuth {
  readonly mode: 'open' | 'password';
  readonly origins: OriginPolicy;
  /** Decides whether a request (page, REST, live upgrade) may read the dashboard's data. */
  check(req: IncomingMessage): AccessResult;
  /**
   * For state-changing requests authenticated by the cookie (e.g. sending a command): `check` plus
   * the Origin allowlist, with Origin required for cookie sessions (SameSite=Strict already keeps the
   * cookie off cross-site requests; this is the second lock).
   */
  checkWrite(req: IncomingMessage): AccessResult;
  /** GET /login: the form. POST /login: verify and set the cookie. POST /logout: end the session. */
  handleLogin(req: IncomingMessage, res: ServerResponse): void;
  handleLogout(req: IncomingMessage, res: ServerResponse): void;
  /** Sessions currently held (for tests and /metrics-style introspection). */
  sessionCount(): number;
  /**
   * Logs and counts logins (refusals in `hub_handshakes_rejected_total{endpoint="login"}`) from now
   * on; for an auth built before the hub's logger and metrics exist.
   */
  attach(metrics: Pick<Metrics, 'handshakesRejected'>, logger: Logger): void;
}

const COOKIE_PLAIN = 'hub_session';
// The __Host- prefix makes browsers refuse the cookie unless Secure, Path=/ and no Domain: it cannot
// be planted by a sibling subdomain. Only usable over https.
const COOKIE_SECURE = '__Host-hub_session';
const MAX_LOGIN_BODY_BYTES = 1024;

interface Session {
  role: DashboardRole;
  expiresMs: number;
}

export function createDashboardAuth(options: DashboardAuthOptions): DashboardAuth {
  const { config } = options;
  let metrics = options.metrics;
  let logger = options.logger;
  const now = options.now ?? Date.now;
  const ttl = options.sessionTtlMs ?? 12 * 3600_000;
  const maxSessions = options.maxSessions ?? 10_000;
  const failuresPerMinute = options.loginFailuresPerMinute ?? 10;
  const password = config.auth.dashboardPassword;
  const adminToken = config.auth.adminToken;
  const secure = config.server.tls !== null || config.server.publicUrl.startsWith('https:');
  const cookieName = secure ? COOKIE_SECURE : COOKIE_PLAIN;
  const origins = createOriginPolicy({
    publicUrl: config.server.publicUrl,
    allowedOrigins: config.server.allowedOrigins,
    tls: config.server.tls !== null,
  });
  const mode = password === null ? 'open' : 'password';
  /** sha256(session id) → session: a leaked heap dump or log of this map does not yield cookies. */
  const sessions = new Map<string, Session>();
  const failures = new Map<string, { count: number; windowStartMs: number }>();

  const roleForSecret = (secret: string): DashboardRole | null => {
    // Compare digests in constant time: equal lengths, no early exit on the first differing byte.
    if (adminToken !== null && safeEqual(secret, adminToken)) return 'operator';
    if (password !== null && safeEqual(secret, password)) return 'viewer';
    return null;
  };

  const sessionOf = (req: IncomingMessage): Session | null => {
    const id = readCookie(req.headers.cookie, cookieName);
    if (id === null) return null;
    const key = digest(id);
    const s = sessions.get(key);
    if (s === undefined) return null;
    if (s.expiresMs <= now()) {
      sessions.delete(key);
      return null;
    }
    return s;
  };

  const check = (req: IncomingMessage): AccessResult => {
    const bearer = readBearer(req.headers.authorization);
    if (bearer !== null) {
      const role = roleForSecret(bearer);
      if (role === null) return deny('UNAUTHORIZED', 'the bearer credential is not valid');
      return { ok: true, principal: { role, via: 'bearer' } };
    }
    const session = sessionOf(req);
    if (session !== null) return { ok: true, principal: { role: session.role, via: 'session' } };
    if (mode === 'password') return deny('UNAUTHORIZED', 'log in at /login');
    if (!isLoopbackAddress(req.socket.remoteAddress)) {
      return deny(
        'UNAUTHORIZED',
        'the dashboard has no password (HUB_DASHBOARD_PASSWORD), so it is only served to this machine',
      );
    }
    if (!origins.hostTrusted(req.headers.host)) {
      return deny(
        'FORBIDDEN_ORIGIN',
        `Host ${JSON.stringify(req.headers.host ?? '')} is not this hub's public URL or an allowed origin ` +
          '(set HUB_PUBLIC_URL or HUB_ALLOWED_ORIGINS, or HUB_DASHBOARD_PASSWORD)',
      );
    }
    return { ok: true, principal: { role: adminToken === null ? 'operator' : 'viewer', via: 'open' } };
  };

  const checkWrite = (req: IncomingMessage): AccessResult => {
    const result = check(req);
    if (!result.ok) return result;
    const origin = req.headers.origin;
    if (result.principal.via !== 'bearer' && origin === undefined) {
      return deny('FORBIDDEN_ORIGIN', 'a state-changing request from a browser session needs an Origin header');
    }
    if (!origins.originAllowed(origin, req.headers.host)) return deny('FORBIDDEN_ORIGIN', 'origin not allowed');
    return result;
  };

  const tooManyFailures = (address: string): boolean => {
    const t = now();
    const f = failures.get(address);
    if (f === undefined || t - f.windowStartMs >= 60_000) return false;
    return f.count >= failuresPerMinute;
  };

  const noteFailure = (address: string): void => {
    const t = now();
    const f = failures.get(address);
    if (f === undefined || t - f.windowStartMs >= 60_000) {
      if (failures.size >= 10_000) failures.clear(); // bounded; worst case an attacker gets a fresh window
      failures.set(address, { count: 1, windowStartMs: t });
    } else f.count++;
  };

  const createSession = (role: DashboardRole): string => {
    const t = now();
    if (sessions.size >= maxSessions) {
      for (const [k, s] of sessions) if (s.expiresMs <= t) sessions.delete(k);
      while (sessions.size >= maxSessions) {
        const oldest = sessions.keys().next().value;
        if (oldest === undefined) break;
        sessions.delete(oldest);
      }
    }
    const id = randomBytes(32).toString('base64url');
    sessions.set(digest(id), { role, expiresMs: t + ttl });
    return id;
  };

  const cookie = (value: string, maxAgeSec: number): string =>
    `${cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}${secure ? '; Secure' : ''}`;

  const handleLogin = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      sendLoginPage(res, 200, mode, null);
      return;
    }
    if (req.method !== 'POST') {
      sendError(res, 'NOT_FOUND', 'use GET or POST');
      return;
    }
    const address = req.socket.remoteAddress ?? 'unknown';
    const reject = (code: ErrorCode, message: string): void => {
      metrics?.handshakesRejected.inc({ endpoint: 'login', code });
      req.resume();
      sendError(res, code, message);
    };
    if (!origins.originAllowed(req.headers.origin, req.headers.host)) {
      reject('FORBIDDEN_ORIGIN', 'origin not allowed');
      return;
    }
    if (tooManyFailures(address)) {
      res.setHeader('Retry-After', '60');
      reject('RATE_LIMITED', 'too many failed logins; retry in a minute');
      return;
    }
    readSmallBody(req, MAX_LOGIN_BODY_BYTES, (err, body) => {
      if (err !== null) {
        reject('PAYLOAD_TOO_LARGE', 'login body too large');
        return;
      }
      const secret = new URLSearchParams(body).get('password') ?? '';
      const role = secret === '' ? null : roleForSecret(secret);
      if (role === null) {
        noteFailure(address);
        metrics?.handshakesRejected.inc({ endpoint: 'login', code: 'UNAUTHORIZED' });
        logger?.warn({ peer: address }, 'dashboard login failed');
        sendLoginPage(res, 401, mode, 'Wrong password.');
        return;
      }
      const id = createSession(role);
      logger?.info({ peer: address, role }, 'dashboard login');
      redirect(res, '/', { 'set-cookie': cookie(id, Math.floor(ttl / 1000)), 'cache-control': 'no-store' });
    });
  };

  const handleLogout = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'POST') {
      sendError(res, 'NOT_FOUND', 'use POST');
      return;
    }
    if (!origins.originAllowed(req.headers.origin, req.headers.host)) {
      req.resume();
      sendError(res, 'FORBIDDEN_ORIGIN', 'origin not allowed');
      return;
    }
    req.resume();
    const id = readCookie(req.headers.cookie, cookieName);
    if (id !== null) sessions.delete(digest(id));
    redirect(res, '/login', { 'set-cookie': cookie('', 0) });
  };

  return {
    mode,
    origins,
    check,
    checkWrite,
    handleLogin,
    handleLogout,
    sessionCount: () => sessions.size,
    attach(m, l) {
      metrics = m;
      logger = l;
    },
  };
}

function deny(code: 'UNAUTHORIZED' | 'FORBIDDEN_ORIGIN', message: string): AccessResult {
  return { ok: false, code, message };
}

function digest(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/**
 * The credential of `Authorization: Bearer <secret>`; '' (never valid) for another scheme. Not only
 * RFC 6750 token68 characters: a dashboard password may be a passphrase with spaces.
 */
function readBearer(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer +(\S(?:.*\S)?)\s*$/i.exec(header);
  return m ? (m[1] as string) : '';
}

/** Reads one cookie's value; ignores malformed pairs. */
export function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return /^[A-Za-z0-9_-]{1,128}$/.test(value) ? value : null;
    }
  }
  return null;
}

function readSmallBody(req: IncomingMessage, limit: number, done: (err: Error | null, body: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (err: Error | null): void => {
    if (finished) return;
    finished = true;
    done(err, err ? '' : Buffer.concat(chunks).toString('utf8'));
  };
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      req.removeAllListeners('data');
      req.resume();
      finish(new Error('too large'));
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => finish(null));
  req.on('error', (err) => finish(err));
}

/** JSON error body `{ error: { code, message } }` with the catalogue's HTTP status. */
export function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
  sendJson(res, ERRORS[code].http ?? 500, { error: { code, message } }, { 'cache-control': 'no-store' });
}

/** Strict CSP for hub-served HTML: nothing inline, nothing from elsewhere. */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Security headers for every page and asset the hub serves to browsers. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': PAGE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` with the login form's
  // POST, which the Origin check must refuse. Referrers still never leave the hub's origin.
  'Referrer-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=()',
};

function sendLoginPage(res: ServerResponse, status: number, mode: 'open' | 'password', problem: string | null): void {
  const hint =
    mode === 'open'
      ? 'This dashboard is open on this machine. Enter the admin token to send commands to devices.'
      : 'Enter the dashboard password (read-only) or the admin token (commands).';
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · ESP32 hub</title><link rel="stylesheet" href="/app.css"></head>
<body class="login"><main class="login-box"><h1>ESP32 hub</h1>
<p>${hint}</p>${problem ? `<p class="problem" role="alert">${problem}</p>` : ''}
<form method="post" action="/login"><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button></form></main></body></html>`;
  sendText(res, status, 'text/html; charset=utf-8', html, { ...PAGE_HEADERS, 'cache-control': 'no-store' });
}
