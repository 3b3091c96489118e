// The built-in dashboard end to end in real headless Chromium (playwright-core, the system's
// chromium): a real hub (buildHub + the live extension, real registry and local log) and three
// simulated boards (firmware-sim) on real sockets.
//
// Fleet view lists all three with values that change; the device view's chart grows (history
// backfill + live); identify and set-interval buttons show the commands' results; cutting a board's
// connection turns it offline on the page. Screenshots of each view go to test-results/.
//
// No timed assertions: waits are generous (the machine is shared); how long updates took is recorded
// as test annotations, and latency is measured by bench/fanout.bench.ts.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimDevice } from '../../firmware-sim/device.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { type DeviceRegistry, openDeviceRegistry } from '../../server/registry/index.ts';
import { launchChromium } from '../harness/index.ts';

const RESULTS = join(process.cwd(), 'test-results');
const IDS = ['sim-1', 'sim-2', 'sim-3'];
/** Generous: updates arrive every second; this only bounds a hang on a loaded machine. */
const WAIT_MS = 30_000;

let dataDir: string;
let registry: DeviceRegistry;
let hub: Hub;
let base: string;
let devices: SimDevice[];
let browser: Browser;
let page: Page;

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'dashboard-e2e-'));
  const logger = createLogger('warn');
  registry = openDeviceRegistry({ dataDir, logger, watchIntervalMs: 0 });
  const tokens = new Map<string, string>();
  for (const id of IDS) tokens.set(id, (await registry.add(id)).token);

  const config = configFrom({ HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dataDir, HUB_LOG_LEVEL: 'warn' });
  const live = liveExtension(config);
  hub = buildHub(config, {
    registry,
    logger,
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  const { port } = await hub.start();
  base = `http://127.0.0.1:${port}`;

  devices = IDS.map(
    (id, index) =>
      new SimDevice({ id, token: tokens.get(id) as string, url: `ws://127.0.0.1:${port}/v1/device`, seed: 7, index }),
  );
  for (const d of devices) d.start();

  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  (globalThis as { pageErrors?: string[] }).pageErrors = errors;
});

afterAll(async () => {
  await browser?.close();
  await Promise.all((devices ?? []).map((d) => d.stop()));
  await hub?.stop();
  await registry?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const pageErrors = (): string[] => (globalThis as { pageErrors?: string[] }).pageErrors ?? [];

async function cardValue(id: string, channel: string): Promise<string> {
  return (await page.textContent(`[data-device="${id}"] [data-channel="${channel}"] .val`)) ?? '';
}

describe('built-in dashboard in Chromium', () => {
  it('fleet view: all three boards online, values changing live', async ({ annotate }) => {
    const response = await page.goto(`${base}/`);
    expect(response?.status()).toBe(200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    for (const id of IDS) {
      await page.waitForSelector(`[data-device="${id}"][data-state="online"]`, { timeout: WAIT_MS });
      await page.waitForFunction(
        (sel) => (document.querySelector(sel)?.textContent ?? '—') !== '—',
        `[data-device="${id}"] [data-channel="temperature"] .val`,
        { timeout: WAIT_MS },
      );
    }
    expect(await page.locator('[data-device]').count()).toBe(3);
    expect(await page.textContent('#conn')).toBe('live');

    // Values change: another reading replaces each board's shown humidity/temperature/uptime.
    const before = new Map<string, string>();
    for (const id of IDS) before.set(id, `${await cardValue(id, 'temperature')}|${await cardValue(id, 'uptime_s')}`);
    const t0 = Date.now();
    for (const id of IDS) {
      await page.waitForFunction(
        ([sel1, sel2, old]) =>
          `${document.querySelector(sel1 as string)?.textContent}|${document.querySelector(sel2 as string)?.textContent}` !==
          old,
        [
          `[data-device="${id}"] [data-channel="temperature"] .val`,
          `[data-device="${id}"] [data-channel="uptime_s"] .val`,
          before.get(id),
        ],
        { timeout: WAIT_MS },
      );
    }
    await annotate(`all three boards showed new values ${Date.now() - t0} ms after the first look`);
    // Sparklines drew a line once a few points are in.
    await page.waitForFunction(
      () =>
        Array.from(document.querySelectorAll('[data-channel="temperature"] .spark polyline')).every(
          (p) => (p.getAttribute('points') ?? '').split(' ').length >= 2,
        ),
      undefined,
      { timeout: WAIT_MS },
    );
    await page.screenshot({ path: join(RESULTS, 'dashboard-fleet.png'), fullPage: true });
    expect(pageErrors()).toEqual([]);
  });

  it('device view: the chart is backfilled and grows live', async ({ annotate }) => {
    await page.click('[data-device="sim-1"] a.device-link');
    await page.waitForSelector('#device-state.state-online', { timeout: WAIT_MS });
    const chart = '.chart[data-channel="temperature"]';
    await page.waitForSelector(`${chart} canvas`, { timeout: WAIT_MS });
    const points = async () => Number(await page.getAttribute(chart, 'data-points'));
    await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-points')) >= 2, chart, {
      timeout: WAIT_MS,
    });
    const first = await points();
    const t0 = Date.now();
    await page.waitForFunction(
      ([sel, n]) => Number(document.querySelector(sel as string)?.getAttribute('data-points')) > (n as number),
      [chart, first],
      { timeout: WAIT_MS },
    );
    await annotate(`temperature chart grew from ${first} to ${await points()} points in ${Date.now() - t0} ms`);
    // One chart per channel of the board.
    expect(await page.locator('.chart').count()).toBeGreaterThanOrEqual(7);
  });

  it('device view: identify and set-interval show the commands’ results', async () => {
    await page.click('#identify');
    const identify = page.locator('#command-results li', { hasText: 'identify' }).first();
    await identify.waitFor({ timeout: WAIT_MS });
    await page.waitForFunction(
      () => document.querySelector('#command-results li[data-state="done"][data-status="0"]') !== null,
      undefined,
      { timeout: WAIT_MS },
    );
    expect(await identify.textContent()).toMatch(/^identify #\d+: done: ok — blinking for 3000 ms$/);

    await page.fill('#interval-ms', '500');
    await page.click('#set-interval');
    const interval = page.locator('#command-results li', { hasText: 'set_sample_interval' }).first();
    await page.waitForFunction(
      () =>
        Array.from(document.querySelectorAll('#command-results li[data-state="done"]')).some((li) =>
          li.textContent?.startsWith('set_sample_interval'),
        ),
      undefined,
      { timeout: WAIT_MS },
    );
    expect(await interval.textContent()).toMatch(/^set_sample_interval #\d+: done: ok — sample interval 500 ms$/);
    await page.screenshot({ path: join(RESULTS, 'dashboard-device.png'), fullPage: true });
    expect(pageErrors()).toEqual([]);
  });

  it('a board whose connection is cut turns offline on the page, with the reason', async () => {
    await page.goto(`${base}/#/`);
    await page.waitForSelector('[data-device="sim-3"][data-state="online"]', { timeout: WAIT_MS });
    const sim3 = devices[2] as SimDevice;
    sim3.dropWifi(10 * 60_000); // drops the TCP connection; the board stays away for 10 min
    await page.waitForSelector('[data-device="sim-3"][data-state="offline"]', { timeout: WAIT_MS });
    expect(await page.textContent('[data-device="sim-3"] .badge')).toBe('offline');
    expect(await page.textContent('[data-device="sim-3"] .meta')).toContain('connection lost');
    // The others stay online.
    expect(await page.locator('[data-state="online"]').count()).toBe(2);
    await page.screenshot({ path: join(RESULTS, 'dashboard-fleet-offline.png'), fullPage: true });
  });

  it('reads well on a phone-sized screen', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
    await phone.goto(`${base}/#/device/sim-2`);
    await phone.waitForSelector('.chart[data-channel="temperature"] canvas', { timeout: WAIT_MS });
    // Nothing overflows horizontally.
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await phone.screenshot({ path: join(RESULTS, 'dashboard-device-phone.png') });
    await phone.goto(`${base}/#/`);
    await phone.waitForSelector('[data-device="sim-1"]', { timeout: WAIT_MS });
    await phone.screenshot({ path: join(RESULTS, 'dashboard-fleet-phone.png') });
    await phone.close();
  });
});

describe('password mode in Chromium', () => {
  const PASSWORD = 'correct horse battery staple';
  let pwHub: Hub;
  let pwBase: string;
  let pwDir: string;

  beforeAll(async () => {
    pwDir = mkdtempSync(join(tmpdir(), 'dashboard-pw-'));
    const config = configFrom({
      HUB_HOST: '127.0.0.1',
      HUB_PORT: '0',
      HUB_DATA_DIR: pwDir,
      HUB_DASHBOARD_PASSWORD: PASSWORD,
    });
    const live = liveExtension(config);
    pwHub = buildHub(config, {
      authenticate: () => null,
      logger: createLogger('silent'),
      extensions: [live],
      authorizeCommands: live.authorizeCommands,
      readAccess: live.readAccess,
    });
    pwBase = `http://127.0.0.1:${(await pwHub.start()).port}`;
  });

  afterAll(async () => {
    await pwHub?.stop();
    if (pwDir) rmSync(pwDir, { recursive: true, force: true });
  });

  it('sends a visitor to the login form; the password (in a POST body) opens a read-only live session', async () => {
    const context = await browser.newContext();
    const p = await context.newPage();
    await p.goto(`${pwBase}/`);
    expect(new URL(p.url()).pathname).toBe('/login');
    await p.screenshot({ path: join(RESULTS, 'dashboard-login.png') });
    await p.fill('#password', 'wrong password!');
    await p.click('button[type="submit"]');
    expect(await p.textContent('.problem')).toBe('Wrong password.');
    await p.fill('#password', PASSWORD);
    await p.click('button[type="submit"]');
    await p.waitForSelector('#conn[data-state="live"]', { timeout: WAIT_MS });
    expect(new URL(p.url()).pathname).toBe('/');
    expect(new URL(p.url()).search).toBe(''); // the password never appears in a URL
    expect(await p.textContent('#who')).toBe('read-only');
    expect(await p.isVisible('#logout')).toBe(true);
    // The session cookie is HttpOnly: page scripts cannot read it.
    expect(await p.evaluate(() => document.cookie)).toBe('');
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: 'hub_session', httpOnly: true, sameSite: 'Strict' });
    // Logging out ends the session: back to the form.
    await p.click('#logout button');
    await p.waitForURL(`${pwBase}/login`);
    await p.goto(`${pwBase}/`);
    expect(new URL(p.url()).pathname).toBe('/login');
    await context.close();
  });
});
