// The fleet view with 1,000 simulated boards (firmware-sim Fleet, real sockets) live in real
// headless Chromium, against a real hub (buildHub + the live extension, local log in a temp dir):
// all 1,000 listed and live while only the cards on screen exist in the DOM; search, status filter,
// sort by name / last seen / a channel, the compact table; offline boards dimmed with their commands
// disabled; the hub-down banner while the hub is stopped; and after the hub restarts, last values
// and last-seen times restored from the store before any board reconnects. Screenshots go to
// test-results/. Frame time and memory are measured by bench/browser.bench.ts, not here.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import type { DeviceView } from '../../server/live/state.ts';
import { createLogger } from '../../server/log/index.ts';
import { launchChromium } from '../harness/index.ts';

const RESULTS = join(process.cwd(), 'test-results');
const WAIT_MS = 120_000;
const N = 1000;
const IDS = fleetDeviceIds(N, 'board-');
const TOKENS = new Map(IDS.map((id) => [id, `token-${id}`]));

let dataDir: string;
let hub: Hub | undefined;
let port = 0;
let base = '';
let fleet: Fleet;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

async function startHub(fixedPort: number): Promise<void> {
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: String(fixedPort),
    HUB_DATA_DIR: dataDir,
    HUB_LOG_LEVEL: 'warn',
    DEVICE_MAX_CONNECTIONS: '5000',
    DEVICE_HANDSHAKES_PER_SEC: '5000',
  });
  const live = liveExtension(config);
  hub = buildHub(config, {
    logger: createLogger('error'),
    // Boards authenticate by a token derived from their id (no registry: 1,000 hashed tokens would
    // only slow the setup down).
    authenticate: (token) => (token.startsWith('token-') ? token.slice('token-'.length) : null),
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  port = (await hub.start()).port;
  base = `http://127.0.0.1:${port}`;
}

async function apiDevices(): Promise<DeviceView[]> {
  return ((await (await fetch(`${base}/api/devices`)).json()) as { devices: DeviceView[] }).devices;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'dashboard-fleet-'));
  await startHub(0);
  fleet = new Fleet({
    url: `ws://127.0.0.1:${port}/v1/device`,
    devices: N,
    idPrefix: 'board-',
    tokens: TOKENS,
    seed: 11,
    rate: 1,
    startSpreadMs: 5000,
  });
  fleet.start();
  await until('1,000 boards online with values', async () => {
    const devices = await apiDevices();
    return (
      devices.length === N &&
      devices.every((d) => d.state === 'online' && d.channels.some((c) => c.key === 'temperature' && c.last))
    );
  });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (err) => pageErrors.push(err.message));
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await fleet?.stop().catch(() => undefined);
  await hub?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 120_000);

describe('fleet view with 1,000 live boards', { timeout: 400_000 }, () => {
  it('lists all 1,000 live while only the cards on screen are in the DOM', async () => {
    await page.goto(`${base}/#/`);
    await page.waitForFunction(
      () => /^1000 devices · 1000 online/.test(document.querySelector('#fleet-summary')?.textContent ?? ''),
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    const rendered = await page.locator('#fleet > .card').count();
    expect(rendered).toBeGreaterThan(0);
    expect(rendered).toBeLessThan(60); // a screenful plus overscan, not 1,000
    expect(Number(await page.getAttribute('#fleet', 'data-rendered'))).toBe(rendered);
    // Live: the first card's uptime moves on.
    const sel = '#fleet > .card[data-device="board-0001"] [data-channel="uptime_s"] .val';
    const before = await page.textContent(sel);
    await page.waitForFunction(([s, old]) => document.querySelector(s as string)?.textContent !== old, [sel, before], {
      timeout: WAIT_MS,
    });
    // Scrolling to the end brings the last boards in (and the first ones out).
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await page.waitForSelector('#fleet > .card[data-device="board-1000"]', { timeout: WAIT_MS });
    expect(await page.locator('#fleet > .card[data-device="board-0001"]').count()).toBe(0);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(RESULTS, 'dashboard-fleet-1000.png') });
    expect(pageErrors).toEqual([]);
  });

  it('search, status filter and sort', async () => {
    await page.fill('#fleet-search', 'board-042');
    await page.waitForFunction(
      () => document.querySelector('#fleet-summary')?.getAttribute('data-shown') === '10',
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    expect(await page.locator('#fleet > .card').count()).toBe(10);
    await page.fill('#fleet-search', '');

    // Ten boards go away: offline, dimmed, commands disabled; the filter shows exactly them.
    await Promise.all(fleet.devices.slice(0, 10).map((d) => d.stop()));
    await page.selectOption('#fleet-status', 'offline');
    await page.waitForFunction(
      () => document.querySelector('#fleet-summary')?.getAttribute('data-shown') === '10',
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    const card = page.locator('#fleet > .card[data-device="board-0001"]');
    expect(await card.getAttribute('data-state')).toBe('offline');
    expect(Number(await card.evaluate((el) => getComputedStyle(el).opacity))).toBeLessThan(1);
    expect(await card.locator('.identify').isDisabled()).toBe(true);
    expect(await page.locator('#fleet > .card[data-device="board-0011"] .identify').count()).toBe(0); // not shown
    await page.screenshot({ path: join(RESULTS, 'dashboard-fleet-offline-filter.png') });
    await page.selectOption('#fleet-status', 'online');
    await page.waitForFunction(
      () => document.querySelector('#fleet-summary')?.getAttribute('data-shown') === '990',
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    expect(await page.locator('#fleet > .card[data-device="board-0011"] .identify').isDisabled()).toBe(false);
    await page.selectOption('#fleet-status', 'all');

    // Sort by a channel: largest first.
    await page.selectOption('#fleet-sort', 'channel:temperature');
    await page.waitForFunction(
      () => document.querySelector('#fleet > .card')?.getAttribute('data-device') !== 'board-0001',
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    const temps = await page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLElement>('#fleet > .card'))
        .sort((a, b) => {
          const [ax, ay] = (a.style.transform.match(/-?\d+(\.\d+)?/g) ?? []).map(Number);
          const [bx, by] = (b.style.transform.match(/-?\d+(\.\d+)?/g) ?? []).map(Number);
          return (ay ?? 0) - (by ?? 0) || (ax ?? 0) - (bx ?? 0);
        })
        .slice(0, 8)
        .map((el) => Number.parseFloat(el.querySelector('[data-channel="temperature"] .val')?.textContent ?? 'NaN')),
    );
    // Taken once a second from values that move: allow the sort's one-second staleness.
    for (let i = 1; i < temps.length; i++) expect(temps[i]!).toBeLessThanOrEqual((temps[0] as number) + 1);
    expect(Math.max(...temps)).toBeGreaterThan(Math.min(...temps) - 1);
    // Last seen: the ten stopped boards come last.
    await page.selectOption('#fleet-sort', 'lastSeen');
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await page.waitForSelector('#fleet > .card[data-device="board-0010"]', { timeout: WAIT_MS });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.selectOption('#fleet-sort', 'name');
  });

  it('compact table mode', async () => {
    await page.click('#fleet-mode');
    await page.waitForSelector('#fleet > .trow[data-device="board-0001"]', { timeout: WAIT_MS });
    expect(await page.locator('#fleet > .card').count()).toBe(0);
    const rows = await page.locator('#fleet > .trow').count();
    expect(rows).toBeGreaterThan(20);
    expect(rows).toBeLessThan(60);
    expect(await page.textContent('#fleet > .thead [data-channel="temperature"]')).toBe('Temperature');
    await page.screenshot({ path: join(RESULTS, 'dashboard-fleet-table.png') });
    await page.click('#fleet-mode');
    await page.waitForSelector('#fleet > .card', { timeout: WAIT_MS });
  });

  it('says so when the hub is down, and after a restart shows last values from the store', async () => {
    await fleet.stop();
    // Let the last acked frames land, then stop the hub: the page loses its live socket.
    const before = new Map((await apiDevices()).map((d) => [d.id, d]));
    await hub!.stop();
    hub = undefined;
    await page.waitForSelector('#hub-down:not([hidden])', { timeout: WAIT_MS });
    expect(await page.textContent('#hub-down')).toMatch(/hub is unreachable/);
    await page.screenshot({ path: join(RESULTS, 'dashboard-hub-down.png') });

    await startHub(port);
    await page.reload();
    await page.waitForFunction(
      () =>
        /^1000 devices · 0 online · 0 stale · 1000 offline/.test(
          document.querySelector('#fleet-summary')?.textContent ?? '',
        ),
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    expect(await page.isHidden('#hub-down')).toBe(true);
    const card = page.locator('#fleet > .card[data-device="board-0002"]');
    const value = await card.locator('[data-channel="temperature"] .val').textContent();
    expect(value).toMatch(/°C$/);
    expect(await card.locator('.meta').textContent()).not.toContain('seen never');
    const restored = (await apiDevices()).find((d) => d.id === 'board-0002');
    expect(restored?.lastSeenMs).not.toBeNull();
    expect(restored?.channels.find((c) => c.key === 'temperature')?.last?.[0]).toBeGreaterThanOrEqual(
      before.get('board-0002')?.channels.find((c) => c.key === 'temperature')?.last?.[0] ?? Number.POSITIVE_INFINITY,
    );
    await page.screenshot({ path: join(RESULTS, 'dashboard-fleet-restored.png') });
  });
});
