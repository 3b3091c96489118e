/**
 * ESP Web Tools (the `esp-web-tools` package's browser bundle, `dist/web/*.js`: the
 * `<esp-web-install-button>` component, its install dialog, the flasher stubs) served by the hub at
 * `/vendor/esp-web-tools/<file>`, so the "Add a board" page never loads code from another site (the
 * page's CSP allows scripts from the hub only). Read into memory at start with an ETag and a gzip
 * variant; public, like the page's own code (no data in it).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { z } from 'zod';
import { HubError } from '../errors.ts';
import type { Router } from '../http/router.ts';
import { type Asset, sendAsset } from '../web/assets.ts';

export const WEB_TOOLS_PREFIX = '/vendor/esp-web-tools';
/** The component's entry module: `<script type="module" src=…>` defines `<esp-web-install-button>`. */
export const WEB_TOOLS_ENTRY = `${WEB_TOOLS_PREFIX}/install-button.js`;

/** The bundle's files by name. */
export function loadWebTools(): Map<string, Asset> {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('esp-web-tools/dist/web/install-button.js'));
  const table = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    if (!/^[A-Za-z0-9_.-]+\.js$/.test(name)) continue;
    const body = readFileSync(join(dir, name));
    table.set(name, {
      type: 'text/javascript; charset=utf-8',
      body,
      gzip: gzipSync(body, { level: 9 }),
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    });
  }
  if (!table.has('install-button.js')) throw new Error(`esp-web-tools bundle not found in ${dir}`);
  return table;
}

export function registerWebToolsRoutes(router: Router): void {
  const files = loadWebTools();
  router.get(
    `${WEB_TOOLS_PREFIX}/:file`,
    (ctx) => {
      const asset = files.get(ctx.input.params.file);
      if (!asset) throw new HubError('NOT_FOUND', 'no such file in the ESP Web Tools bundle');
      sendAsset(ctx.req, ctx.res, asset);
    },
    {
      params: z.strictObject({ file: z.string().regex(/^[A-Za-z0-9_.-]+\.js$/) }),
      summary: 'ESP Web Tools browser bundle (vendored from the esp-web-tools package); public',
      tags: ['enrollment'],
      hidden: true,
    },
  );
}
