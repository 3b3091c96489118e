// The dashboard's rollout page (#/ota) in real headless Chromium against a real hub (buildHub + the live
// extension, open mode: the page's user is an operator) with simulated boards over real sockets: the
// page uploads a signed image with its .sig (an unsigned one is refused with the hub's message), starts
// a campaign, shows each board's progress (a board updates: succeeded, 50 %; an offline board stays
// pending), and pauses and resumes it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimDevice } from '../../firmware-sim/device.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { generateSigningKey, signImage } from '../../server/ota/signing.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import { launchChromium } from '../harness/index.ts';

const RESULTS = join(process.cwd(), 'test-results');
const WAIT_MS = 30_000;
const keys = generateSigningKey();
const IMAGE = Buffer.from(Array.from({ length: 20_000 }, (_, i) => (i * 3) & 0xff));

let dataDir: string;
let hub: Hub;
let base: string;
let browser: Browser;
const boards: SimDevice[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'ota-dashboard-'));
  writeFileSync(join(dataDir, 'pub.pem'), keys.publicPem);
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    HUB_LOG_LEVEL: 'warn',
    OTA_PUBLIC_KEY_FILE: join(dataDir, 'pub.pem'),
  });
  const live = liveExtension(config);
  const logger = createLogger('warn');
  const registry = openDeviceRegistry({ dataDir, logger, watchIntervalMs: 0 });
  hub = buildHub(config, {
    logger,
    registry,
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  const { port } = await hub.start();
  base = `http://127.0.0.1:${port}`;
  for (const [i, id] of ['ota-page-1', 'ota-page-2'].entries()) {
    boards.push(
      new SimDevice({
        id,
        index: i + 1,
        seed: 4,
        token: (await registry.add(id)).token,
        url: `ws://127.0.0.1:${port}/v1/device`,
        otaPublicKeyPem: keys.publicPem,
      }),
    );
  }
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(boards.map((b) => b.stop()));
  await hub?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('the rollout page', () => {
  it('uploads, starts, shows progress, pauses and resumes', async () => {
    // Board 1 online; board 2 stays offline (its pending state keeps the campaign running).
    const [online] = boards as [SimDevice, SimDevice];
    online.start();
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${base}/`);
    await page.click('#ota-link');
    await page.waitForSelector('#ota-upload');

    const bin = { name: 'app.bin', mimeType: 'application/octet-stream', buffer: IMAGE };
    await page.setInputFiles('#ota-file', bin);
    await page.setInputFiles('#ota-sig', {
      name: 'app.bin.sig',
      mimeType: 'text/plain',
      buffer: Buffer.from(`${signImage(IMAGE, generateSigningKey().privatePem)}\n`),
    });
    await page.fill('#ota-version', 'page-2.0.0');
    await page.click('#ota-upload button[type=submit]');
    await page.waitForSelector('#ota-upload-status[data-kind="error"]', { timeout: WAIT_MS });
    expect(await page.textContent('#ota-upload-status')).toContain('signature does not verify');

    await page.setInputFiles('#ota-sig', {
      name: 'app.bin.sig',
      mimeType: 'text/plain',
      buffer: Buffer.from(`${signImage(IMAGE, keys.privatePem)}\n`),
    });
    await page.click('#ota-upload button[type=submit]');
    await page.waitForSelector('#ota-upload-status[data-kind="ok"]', { timeout: WAIT_MS });
    await page.waitForSelector('#ota-images [data-image]', { timeout: WAIT_MS });

    await page.fill('#ota-group', 'ota-page-*');
    await page.fill('#ota-waves', '100%');
    await page.click('#ota-start button[type=submit]');
    await page.waitForSelector('#ota-start-status[data-kind="ok"]', { timeout: WAIT_MS });
    await page.waitForSelector('tr[data-board="ota-page-1"][data-state="succeeded"]', { timeout: WAIT_MS });
    await page.waitForSelector('tr[data-board="ota-page-2"][data-state="pending"]');
    expect(await page.textContent('#ota-percent')).toBe('50 %');
    expect(online.firmwareVersion).toBe('page-2.0.0');

    await page.click('#ota-pause');
    await page.waitForSelector('#ota-campaign[data-state="paused"]', { timeout: WAIT_MS });
    expect(await page.textContent('#ota-campaign')).toContain('paused by the operator');
    await page.screenshot({ path: join(RESULTS, 'ota-rollout.png'), fullPage: true });
    await page.click('#ota-resume');
    await page.waitForSelector('#ota-campaign[data-state="running"]', { timeout: WAIT_MS });
    await page.close();
    expect(pageErrors).toEqual([]);
  });
});
