// The "Add a board" page and dashboard approval in real headless Chromium against a real hub (buildHub
// + the live extension, its own registry and local log) with simulated boards enrolling over real
// sockets [PROTO-8].
//
// - The firmware image uploaded from the page is served with a manifest that validates against the
//   `Manifest` type of esp-web-tools' own source (node_modules/esp-web-tools/dist/const.d.ts, turned
//   into a JSON schema), and its parts resolve (relative to the manifest URL, as ESP Web Tools does)
//   to the uploaded bytes.
// - The page loads <esp-web-install-button> from the hub (no other origin), wires it to that
//   manifest, and a click reaches navigator.serial.requestPort (stubbed: Web Serial needs hardware).
// - Without navigator.serial the page says why it cannot flash.
// - A board that enrolls shows up in the page's pending list; Approve hands it a token and it streams
//   (readings stored); Reject tells another board so, and it never gets a token.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import type { Browser, Page } from 'playwright-core';
import { createGenerator } from 'ts-json-schema-generator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimDevice } from '../../firmware-sim/device.ts';
import { type EnrollOutcome, enrollBoard } from '../../firmware-sim/enroll.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { ImprovType, improvPacket, setHubPacket } from '../../server/web/improv.ts';
import { launchChromium } from '../harness/index.ts';

const str8 = (t: string): number[] => {
  const b = [...Buffer.from(t, 'utf8')];
  return [b.length, ...b];
};
const RESULTS = join(process.cwd(), 'test-results');
const WAIT_MS = 30_000;
const IMAGE = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));

let dataDir: string;
let hub: Hub;
let port: number;
let base: string;
let browser: Browser;
const pageErrors: string[] = [];
const devices: SimDevice[] = [];

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'enroll-dashboard-'));
  // Open mode (loopback, no admin token): the page's user is an operator.
  const config = configFrom({ HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dataDir, HUB_LOG_LEVEL: 'warn' });
  const live = liveExtension(config);
  hub = buildHub(config, {
    logger: createLogger('warn'),
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  ({ port } = await hub.start());
  base = `http://127.0.0.1:${port}`;
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(devices.map((d) => d.stop()));
  await hub?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A page that records what it requested, with Web Serial stubbed (or removed). */
async function openPage(serial: 'stub' | 'missing'): Promise<{ page: Page; requests: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  await context.addInitScript((mode: string) => {
    const w = window as unknown as { serialCalls: number };
    w.serialCalls = 0;
    if (mode === 'missing') {
      delete (Navigator.prototype as unknown as { serial?: unknown }).serial;
      Object.defineProperty(navigator, 'serial', { value: undefined, configurable: true });
      delete (navigator as unknown as { serial?: unknown }).serial;
    } else {
      // Web Serial needs a board on USB: record that the page asked for a port, then act as if the
      // user closed the picker.
      Object.defineProperty(navigator, 'serial', {
        configurable: true,
        value: {
          requestPort: () => {
            w.serialCalls++;
            return Promise.reject(new DOMException('No port selected by the user.', 'NotFoundError'));
          },
          getPorts: () => Promise.resolve([]),
          addEventListener: () => undefined,
        },
      });
    }
  }, serial);
  const page = await context.newPage();
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (err) => pageErrors.push(err.message));
  return { page, requests };
}

describe('Add a board page in Chromium', () => {
  let manifestUrl: string;

  it('uploads a firmware image and serves a manifest valid for ESP Web Tools', async () => {
    const { page } = await openPage('stub');
    await page.goto(`${base}/#/add-board`);
    await page.waitForSelector('#fw-upload');
    await page.setInputFiles('#fw-file', {
      name: 'firmware.factory.bin',
      mimeType: 'application/octet-stream',
      buffer: IMAGE,
    });
    await page.fill('#fw-name', 'esp32hub');
    await page.fill('#fw-version', '1.4.0');
    await page.selectOption('#fw-chip', 'ESP32-C3');
    await page.click('#fw-upload button[type=submit]');
    await page.waitForSelector('#fw-status[data-kind="ok"]', { timeout: WAIT_MS });
    await page.waitForSelector('[data-image="esp32hub"]', { timeout: WAIT_MS });
    await page.close();

    manifestUrl = `${base}/firmware/esp32hub/manifest.json`;
    const manifest = (await (await fetch(manifestUrl)).json()) as { builds: { parts: { path: string }[] }[] };
    const schema = createGenerator({
      path: join(process.cwd(), 'node_modules/esp-web-tools/dist/const.d.ts'),
      type: 'Manifest',
      skipTypeCheck: true,
      additionalProperties: false,
    }).createSchema('Manifest');
    const ajv = new Ajv({ allErrors: true, strict: false });
    const valid = ajv.validate(schema, manifest);
    expect(ajv.errors ?? [], JSON.stringify(manifest)).toEqual([]);
    expect(valid).toBe(true);
    expect(manifest).toMatchObject({
      name: 'esp32hub',
      version: '1.4.0',
      new_install_prompt_erase: true,
      builds: [{ chipFamily: 'ESP32-C3', parts: [{ offset: 0 }] }],
    });
    // ESP Web Tools fetches each part relative to the manifest's URL.
    const part = new URL(manifest.builds[0]?.parts[0]?.path as string, manifestUrl);
    const bytes = Buffer.from(await (await fetch(part)).arrayBuffer());
    expect(bytes.equals(IMAGE)).toBe(true);
  });

  it('renders the install button from the hub, wired to the manifest; a click asks for a serial port', async () => {
    const { page, requests } = await openPage('stub');
    await page.goto(`${base}/#/add-board`);
    await page.waitForSelector('esp-web-install-button[install-supported]', { timeout: WAIT_MS });
    const attr = await page.getAttribute('#install', 'manifest');
    expect(new URL(attr as string, base).toString()).toBe(manifestUrl);
    expect(await page.isHidden('#serial-missing')).toBe(true);
    // The component came from the hub; nothing was loaded from another origin.
    expect(requests.some((u) => u.startsWith(`${base}/vendor/esp-web-tools/install-button.js`))).toBe(true);
    expect(requests.filter((u) => !u.startsWith(base) && !u.startsWith('data:'))).toEqual([]);

    await page.click('#install button[slot="activate"]');
    await page.waitForFunction(() => (window as unknown as { serialCalls: number }).serialCalls > 0, undefined, {
      timeout: WAIT_MS,
    });
    await page.screenshot({ path: join(RESULTS, 'add-board.png'), fullPage: true });
    await page.close();
  });

  it('explains that flashing needs Web Serial when the browser has none', async () => {
    const { page } = await openPage('missing');
    await page.goto(`${base}/#/add-board`);
    await page.waitForSelector('#serial-missing', { state: 'visible', timeout: WAIT_MS });
    expect(await page.textContent('#serial-missing')).toContain('Web Serial is missing');
    expect(await page.isDisabled('#send-hub')).toBe(true);
    await page.waitForSelector('esp-web-install-button[install-unsupported]', { timeout: WAIT_MS });
    await page.close();
  });
});

describe('sending the hub URL over Improv (Web Serial stubbed with a board that answers)', () => {
  it('writes SET_HUB with this hub URL, shows the board it names, and highlights it when it enrolls', async () => {
    const hw = 'esp32-0c0c0c0c0c0c';
    // The board's RPC result for 0x80: command, data length, hub page URL, hardware id.
    const strings = [...str8(`${base}/#/device/${hw}`), ...str8(hw)];
    const fixed = improvPacket(ImprovType.RPC_RESULT, Uint8Array.from([0x80, strings.length, ...strings]));
    const context = await browser.newContext();
    await context.addInitScript(
      (reply: number[]) => {
        const w = window as unknown as { written: number[] };
        w.written = [];
        const port = {
          open: () => Promise.resolve(),
          close: () => Promise.resolve(),
          writable: new WritableStream<Uint8Array>({
            write(chunk) {
              w.written.push(...chunk);
            },
          }),
          readable: new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(new TextEncoder().encode('I (812) boot: log noise\r\n'));
              controller.enqueue(Uint8Array.from(reply));
            },
          }),
        };
        Object.defineProperty(navigator, 'serial', {
          configurable: true,
          value: {
            requestPort: () => Promise.resolve(port),
            getPorts: () => Promise.resolve([]),
            addEventListener: () => undefined,
          },
        });
      },
      [...fixed],
    );
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${base}/#/add-board`);
    await page.fill('#fleet-secret', 'fleet-s3cret');
    await page.click('#send-hub');
    await page.waitForSelector('#hub-status[data-kind="ok"]', { timeout: WAIT_MS });
    expect(await page.textContent('#hub-status')).toContain(hw);
    const written = await page.evaluate(() => (window as unknown as { written: number[] }).written);
    expect(Buffer.from(written).toString('hex')).toBe(
      `${Buffer.from(setHubPacket(`ws://127.0.0.1:${port}`, 'fleet-s3cret')).toString('hex')}0a`,
    );
    const controller = new AbortController();
    const r = enrollBoard({
      url: `ws://127.0.0.1:${port}/v1/enroll`,
      hardwareId: hw,
      backoff: { minMs: 50, maxMs: 200 },
      signal: controller.signal,
    });
    await page.waitForSelector(`[data-hardware-id="${hw}"].highlight`, { timeout: WAIT_MS });
    await page.click(`[data-hardware-id="${hw}"] button.reject`);
    expect((await r).outcome).toBe('rejected');
    await context.close();
  });
});

describe('approving boards from the dashboard', () => {
  it('a pending board appears live, Approve hands it a token and it streams; Reject refuses another', async () => {
    const { page } = await openPage('stub');
    await page.goto(`${base}/#/add-board`);
    await page.waitForSelector('#pending-empty', { state: 'visible', timeout: WAIT_MS });

    const url = `ws://127.0.0.1:${port}/v1/enroll`;
    const backoff = { minMs: 50, maxMs: 200 };
    const a = enrollBoard({ url, hardwareId: 'esp32-0a0a0a0a0a0a', backoff });
    const b = enrollBoard({ url, hardwareId: 'esp32-0b0b0b0b0b0b', backoff });
    const rowA = '[data-hardware-id="esp32-0a0a0a0a0a0a"]';
    const rowB = '[data-hardware-id="esp32-0b0b0b0b0b0b"]';
    await page.waitForSelector(`${rowA}[data-state="pending"]`, { timeout: WAIT_MS });
    await page.waitForSelector(`${rowB}[data-state="pending"]`, { timeout: WAIT_MS });
    // The header says so from any view.
    await page.waitForSelector('#add-board-link[data-pending="2"]', { timeout: WAIT_MS });
    expect(await page.textContent('#add-board-link')).toBe('Add a board (2 waiting)');
    await page.screenshot({ path: join(RESULTS, 'add-board-pending.png'), fullPage: true });

    await page.fill(`${rowA} input.device-id`, 'kitchen-1');
    await page.click(`${rowA} button.approve`);
    const ra: EnrollOutcome = await a;
    if (ra.outcome !== 'approved') throw new Error(`expected approved, got ${ra.outcome}`);
    expect(ra.deviceId).toBe('kitchen-1');
    const device = new SimDevice({
      id: ra.deviceId,
      token: ra.token,
      url: `ws://127.0.0.1:${port}/v1/device`,
      seed: 5,
      index: 1,
    });
    devices.push(device);
    device.start();
    await expect
      .poll(() => hub.context().log.lastReadings('kitchen-1') !== null, { timeout: WAIT_MS, interval: 100 })
      .toBe(true);
    // Delivered boards leave the list.
    await page.waitForSelector(rowA, { state: 'detached', timeout: WAIT_MS });

    await page.click(`${rowB} button.reject`);
    expect((await b).outcome).toBe('rejected');
    await page.waitForSelector(rowB, { state: 'detached', timeout: WAIT_MS });
    expect(hub.context().registry?.get('esp32-0b0b0b0b0b0b')).toBeUndefined();
    expect(hub.context().log.lastReadings('esp32-0b0b0b0b0b0b')).toBeNull();
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
