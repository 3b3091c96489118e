/**
 * The built-in page's routes on the hub's router: the page (`/`), its assets, login/logout
 * (server/http/dashboard-auth.ts) and its REST API (server/http/dashboard-api.ts). Registered by
 * the live extension when it starts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { DashboardApi } from './dashboard-api.ts';
import type { DashboardAuth } from './dashboard-auth.ts';
import type { Router } from './router.ts';

export interface DashboardRoutesOptions {
  auth: DashboardAuth;
  api: DashboardApi;
  /** Answers the page itself (redirects to /login when a password is needed). */
  page(req: IncomingMessage, res: ServerResponse): void;
  /** Answers a static asset by its path (`/app.js` …). */
  asset(req: IncomingMessage, res: ServerResponse, path: string): void;
}

const tags = ['dashboard'];
const html = { description: 'HTML page', contentType: 'text/html' };
const noQuery = z.strictObject({});
const deviceView = z.looseObject({ deviceId: z.string() }).describe('A device as the page shows it (docs/live-api.md)');

export function registerDashboardRoutes(router: Router, o: DashboardRoutesOptions): void {
  for (const path of ['/', '/index.html']) {
    router.get(path, (ctx) => o.page(ctx.req, ctx.res), {
      summary: 'The built-in live page',
      tags,
      responses: { 200: html, 303: { description: 'To /login when a password is needed' } },
    });
  }
  const assets = { '/app.js': 'text/javascript', '/app.css': 'text/css', '/favicon.svg': 'image/svg+xml' };
  for (const [path, contentType] of Object.entries(assets)) {
    router.get(path, (ctx) => o.asset(ctx.req, ctx.res, path), {
      summary: `Static asset of the page (${contentType}); public`,
      tags,
      responses: { 200: { description: 'The asset (ETag, conditional GET, compression)', contentType } },
    });
  }
  router.get('/login', (ctx) => o.auth.handleLogin(ctx.req, ctx.res), {
    summary: 'The login form',
    tags,
    responses: { 200: html },
  });
  router.post('/login', (ctx) => o.auth.handleLogin(ctx.req, ctx.res), {
    summary: 'Log in with the dashboard password or the admin token',
    description:
      'A form post (`application/x-www-form-urlencoded`, field `password`), as the login page sends it; the Origin must be allowed. Sets an HttpOnly session cookie.',
    tags,
    responses: {
      303: { description: 'Logged in: to / with the session cookie' },
      401: { description: 'Wrong password: the login page again', contentType: 'text/html' },
    },
  });
  router.post('/logout', (ctx) => o.auth.handleLogout(ctx.req, ctx.res), {
    summary: 'End the dashboard session',
    tags,
    responses: { 303: { description: 'To /login, the cookie cleared' } },
  });
  router.get('/api/session', (ctx) => o.api.session(ctx.req, ctx.res), {
    summary: "The caller's dashboard role and the auth mode",
    tags,
    query: noQuery,
    responses: {
      200: z.looseObject({
        mode: z.enum(['open', 'password']),
        role: z.enum(['viewer', 'operator']),
        via: z.string(),
        commands: z.boolean(),
      }),
    },
  });
  router.get('/api/devices', (ctx) => o.api.listDevices(ctx.req, ctx.res), {
    summary: 'Every device the hub knows, with status, last seen and last values',
    tags,
    query: noQuery,
    responses: { 200: z.object({ serverTimeMs: z.number(), devices: z.array(deviceView) }) },
  });
  router.get('/api/devices/:id', (ctx) => o.api.getDevice(ctx.req, ctx.res, ctx.input.params.id), {
    summary: 'One device as the page shows it',
    description: '404 NOT_FOUND "no such device" for an id the hub does not know (whatever its spelling).',
    tags,
    params: z.strictObject({ id: z.string() }),
    query: noQuery,
    responses: { 200: z.object({ serverTimeMs: z.number(), device: deviceView }) },
  });
}
