// The alert banner of the built-in page in real headless Chromium, against a real hub (buildHub + the
// live extension, real registry and local log) and a device on a real socket. Registered boards that
// never connect since the start raise `offline` (not seen since the hub started); the page loads
// the firing alerts from GET /api/alerts with its dashboard access, then follows the live `alert`
// messages: a board that returns leaves the banner, one that goes away again comes back into it.
// Screenshot in test-results/. Waits on conditions only (generous bounds for a shared machine).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { type DeviceRegistry, openDeviceRegistry } from '../../server/registry/index.ts';
import { launchChromium, type TempDir, tempDir } from '../harness/index.ts';
import { TEST_CHANNELS, TestDevice } from './ingest-device-client.ts';

const RESULTS = join(process.cwd(), 'test-results');
const WAIT_MS = 30_000;

let dir: TempDir;
let registry: DeviceRegistry;
let hub: Hub;
let base: string;
let browser: Browser;
let page: Page;
let token: string;
const pageErrors: string[] = [];

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  dir = await tempDir('alerts-browser');
  const logger = createLogger('warn');
  registry = openDeviceRegistry({ dataDir: dir.path, logger, watchIntervalMs: 0 });
  // Registered, never connect: with board-away, 22 alerts, more than the banner lists one by one.
  for (let i = 1; i <= 21; i++) await registry.add(`board-never-${String(i).padStart(2, '0')}`);
  token = (await registry.add('board-away')).token;
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dir.path,
    HUB_LOG_LEVEL: 'warn',
    ALERT_OFFLINE_AFTER_SEC: '1',
  });
  const live = liveExtension(config);
  hub = buildHub(config, { registry, logger, extensions: [live], readAccess: live.readAccess });
  const { port } = await hub.start();
  base = `http://127.0.0.1:${port}`;
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  page.on('pageerror', (err) => pageErrors.push(err.message));
});

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
  await registry?.close();
  await dir?.remove();
});

async function connect(boot: number): Promise<TestDevice> {
  const d = await TestDevice.connect(`${base.replace('http', 'ws')}/v1/device`, { token });
  const welcome = await d.hello('board-away', boot, { uptimeMs: 3_600_000 });
  if (!welcome.descriptorsKnown) d.send({ type: 'descriptors', channels: TEST_CHANNELS });
  return d;
}

const item = (device: string) => page.locator(`section.alerts li[data-device="${device}"]`);

describe('alert banner on the built-in page (Chromium)', () => {
  it('shows the firing alerts loaded at page load, then follows live transitions', async () => {
    // Both boards offline for more than a second before the page opens.
    await (await connect(1)).close();
    for (;;) {
      const res = await fetch(`${base}/api/alerts`);
      const body = (await res.json()) as { alerts: { device: string }[] };
      if (body.alerts.length === 22) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    await page.goto(base);
    await item('board-away').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('section.alerts h2').textContent()).toBe('22 alerts firing');
    // 20 listed (the latest first: board-away went last), the rest counted.
    expect(await page.locator('section.alerts li').count()).toBe(20);
    expect(await page.locator('section.alerts li').first().getAttribute('data-device')).toBe('board-away');
    expect(await page.locator('section.alerts .more').textContent()).toContain('and 2 more');
    const never = page.locator('section.alerts li[data-device^="board-never-"]').first();
    expect(await never.textContent()).toContain('not seen since the hub started');
    expect(await never.locator('a').getAttribute('href')).toMatch(/^#\/device\/board-never-\d\d$/);
    await page.screenshot({ path: join(RESULTS, 'alerts-banner.png') });

    // The board returns: its alert resolves on the live socket and leaves the banner.
    const back = await connect(2);
    await item('board-away').waitFor({ state: 'detached', timeout: WAIT_MS });
    expect(await page.locator('section.alerts h2').textContent()).toBe('21 alerts firing');

    // It goes away again: after ALERT_OFFLINE_AFTER_SEC the live message brings it back.
    await back.close();
    await item('board-away').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('section.alerts h2').textContent()).toBe('22 alerts firing');
    expect(pageErrors).toEqual([]);
  });
});
