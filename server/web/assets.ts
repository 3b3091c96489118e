/**
 * The built-in dashboard's static files, served by the hub itself (no CDN, no build step): at hub
 * start the page's TypeScript (`server/web/app.ts` and what it imports, uPlot included) is bundled
 * in-process by esbuild into one ES module and kept in memory with the HTML and CSS, each with an
 * ETag and a gzip variant. Rebuilt only when the hub restarts.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { PAGE_HEADERS } from '../http/dashboard-auth.ts';

export interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/** URL path → asset. */
export type AssetTable = ReadonlyMap<string, Asset>;

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

/** Bundles the page. Takes ~100 ms; the hub calls it once in `start()`. */
export async function buildAssets(): Promise<AssetTable> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [here('./app.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'eof',
    write: false,
    logLevel: 'silent',
  });
  const js = result.outputFiles[0];
  if (!js) throw new Error('dashboard bundle produced no output');
  const require = createRequire(import.meta.url);
  const uplotCss = await readFile(require.resolve('uplot/dist/uPlot.min.css'));
  const [html, css, icon] = await Promise.all([
    readFile(here('./index.html')),
    readFile(here('./style.css')),
    readFile(here('./favicon.svg')),
  ]);
  const table = new Map<string, Asset>();
  const add = (path: string, type: string, body: Buffer): void => {
    table.set(path, {
      type,
      body,
      gzip: gzipSync(body, { level: 9 }),
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    });
  };
  add('/', 'text/html; charset=utf-8', html);
  add('/app.js', 'text/javascript; charset=utf-8', Buffer.from(js.contents));
  add('/app.css', 'text/css; charset=utf-8', Buffer.concat([uplotCss, Buffer.from('\n'), css]));
  add('/favicon.svg', 'image/svg+xml', icon);
  return table;
}

/** Writes an asset with caching (ETag revalidation), gzip when accepted, and the page's security headers. */
export function sendAsset(req: IncomingMessage, res: ServerResponse, asset: Asset): void {
  const headers: Record<string, string | number> = {
    ...PAGE_HEADERS,
    'Content-Type': asset.type,
    ETag: asset.etag,
    // Revalidate every time: cheap (304) and a restarted hub never serves a stale page.
    'Cache-Control': 'no-cache',
    Vary: 'Accept-Encoding',
  };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzip ? asset.gzip : asset.body;
  if (gzip) headers['Content-Encoding'] = 'gzip';
  headers['Content-Length'] = body.length;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}
