/**
 * A real browser for integration tests: the system's `chromium` (Debian package), driven headless
 * through `playwright-core`. Nothing is ever downloaded: the executable is the one found on PATH
 * (or `CHROMIUM_PATH`).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium, type LaunchOptions } from 'playwright-core';
import { registerCleanup } from './cleanup.ts';
import { findExecutable, tryFindExecutable } from './process.ts';

/**
 * Flags for a quiet, deterministic headless Chromium in a container:
 * - `--no-sandbox`: the tests run as root, where Chromium's sandbox refuses to start;
 * - `--disable-gpu`: no GPU here;
 * - the rest stop background traffic (updates, sync, QUIC, first-run work) that has nothing to do
 *   with the page under test and only costs CPU on a 2-core machine.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Path of the Chromium to launch: `$CHROMIUM_PATH`, else `chromium` (or `chromium-browser`) on PATH. */
export function findChromium(): string {
  const fromEnv = process.env['CHROMIUM_PATH'];
  if (fromEnv) return fromEnv;
  return tryFindExecutable('chromium') ?? findExecutable('chromium-browser');
}

/**
 * Launches headless Chromium. `options` are passed to `chromium.launch`; `args` are appended to
 * {@link CHROMIUM_ARGS}. Close it with `browser.close()` in `afterAll` (the safety net closes it
 * too, and Playwright kills the browser if the test process exits).
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  const browser = await chromium.launch({
    headless: true,
    timeout: 60_000,
    ...options,
    executablePath: options.executablePath ?? findChromium(),
    args: [...CHROMIUM_ARGS, ...(options.args ?? [])],
  });
  const unregister = registerCleanup({
    label: 'chromium',
    stop: () => browser.close(),
    // Playwright registers its own exit handler that kills the browser process group.
    killSync: () => {},
  });
  browser.once('disconnected', unregister);
  return browser;
}

/** What a path of a {@link servePage} site answers: a body (HTML by default) or a full response. */
export type PageRoute =
  | string
  | { body: string | Uint8Array; contentType?: string; status?: number; headers?: Record<string, string> };

/** A tiny HTTP site on a loopback port. */
export interface LoopbackSite {
  /** URL of `/`, e.g. `http://127.0.0.1:41234/`. */
  readonly url: string;
  /** `http://127.0.0.1:41234` (no trailing slash), e.g. for Origin allowlists. */
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * Serves `routes` (path → response) on a free loopback port; a plain string is served as the HTML
 * of `/`. Unknown paths get 404. Paths are matched without the query string.
 */
export async function servePage(routes: string | Record<string, PageRoute>): Promise<LoopbackSite> {
  const table: Record<string, PageRoute> = typeof routes === 'string' ? { '/': routes } : routes;
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = table[path];
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const r = typeof route === 'string' ? { body: route } : route;
    res
      .writeHead(r.status ?? 200, {
        'content-type': r.contentType ?? 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        ...r.headers,
      })
      .end(r.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      unregister();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closed;
  };
  const unregister = registerCleanup({
    label: `page server ${origin}`,
    stop: close,
    killSync: () => {
      server.closeAllConnections();
      server.close();
    },
  });
  return { url: `${origin}/`, origin, close };
}
