// The device page's time ranges in real headless Chromium (playwright-core, the system's chromium)
// against a real hub (buildHub + the live extension, registry and local log in a temp dir).
//
// Setup writes 24 h of history at 1 s resolution straight into the embedded store (86,400 points per
// channel: a float, a fixed-point and a bool channel; a 10-minute hole 12 h ago) before the hub starts.
// The page then loads 24 h downsampled (one bucket per pixel column), which must count every stored
// point, break the line at the hole (a null point handed to uPlot, and no line pixels drawn over it),
// draw the bool channel as an on/off timeline, export CSV, rename a channel, link to Grafana, and
// say "no such device" for an unknown id. Screenshots go to test-results/.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import type { DownsampledResponse } from '../../server/http/history.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { liveExtension } from '../../server/live/index.ts';
import { createLogger } from '../../server/log/index.ts';
import { openDeviceRegistry } from '../../server/registry/index.ts';
import { writeHistory } from '../harness/history-fixture.ts';
import { launchChromium } from '../harness/index.ts';

const RESULTS = join(process.cwd(), 'test-results');
const WAIT_MS = 60_000;
const DEVICE = 'hist-1';
const DAY_S = 86_400;
let dataDir: string;
let hub: Hub;
let base: string;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
/** Stored range: [END − 24 h + 1 s, END], one sample a second, except the hole. */
let END = 0;
let HOLE: [number, number] = [0, 0];
let stored = 0;

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), 'dashboard-range-'));
  END = Math.floor(Date.now() / 1000) * 1000 - 2000;
  HOLE = [END - 12 * 3_600_000, END - 12 * 3_600_000 + 10 * 60_000];
  stored = await writeHistory({ dataDir, deviceId: DEVICE, endMs: END, seconds: DAY_S, hole: HOLE });
  const logger = createLogger('warn');
  const registry = openDeviceRegistry({ dataDir, logger, watchIntervalMs: 0 });
  await registry.add(DEVICE);
  await registry.close();
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dataDir,
    HUB_LOG_LEVEL: 'warn',
    LOG_RETENTION_HOURS: '168',
    GRAFANA_URL: 'http://grafana.test:3000',
  });
  const live = liveExtension(config);
  hub = buildHub(config, {
    logger,
    extensions: [live],
    authorizeCommands: live.authorizeCommands,
    readAccess: live.readAccess,
  });
  base = `http://127.0.0.1:${(await hub.start()).port}`;
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const chart = (key: string) => `.chart[data-channel="${key}"]`;

async function loadRange(id: string): Promise<void> {
  await page.click(`#range-picker [data-range="${id}"]`);
  await page.waitForSelector(`#charts[data-loaded-range="${id}"]`, { timeout: WAIT_MS });
}

/** Counts line-coloured pixels (the mean line, #1f6feb, opaque) in a column of the chart's canvas at time `tMs`. */
function linePixelsAt(key: string, tMs: number): Promise<number> {
  return page.evaluate(
    ([sel, t]) => {
      const section = document.querySelector(sel as string) as HTMLElement;
      const over = section.querySelector('.u-over') as HTMLElement;
      const canvas = section.querySelector('.u-wrap canvas') as HTMLCanvasElement;
      const xMin = Number(section.dataset.xMin);
      const xMax = Number(section.dataset.xMax);
      const o = over.getBoundingClientRect();
      const c = canvas.getBoundingClientRect();
      const ratio = canvas.width / c.width;
      const xCss = o.left - c.left + (((t as number) / 1000 - xMin) / (xMax - xMin)) * o.width;
      const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
      const x = Math.round(xCss * ratio);
      const data = ctx.getImageData(x - 1, Math.round((o.top - c.top) * ratio), 3, Math.round(o.height * ratio)).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        const [r = 0, g = 0, b = 0, a = 0] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
        if (a > 200 && Math.abs(r - 31) < 40 && Math.abs(g - 111) < 40 && Math.abs(b - 235) < 40) n++;
      }
      return n;
    },
    [chart(key), tMs] as const,
  );
}

describe('device page: time ranges on the embedded store', () => {
  it('loads 24 h at 1 s resolution, downsampled, counting every stored point; the hole is a gap', async ({
    annotate,
  }) => {
    await page.goto(`${base}/#/device/${DEVICE}`);
    await page.waitForSelector(`#charts[data-loaded-range="1h"]`, { timeout: WAIT_MS });
    const t0 = Date.now();
    await loadRange('24h');
    await annotate(`24 h range shown ${Date.now() - t0} ms after the click (timing: bench/browser.bench.ts)`);
    const points = Number(await page.getAttribute(chart('temperature'), 'data-points'));
    const nulls = Number(await page.getAttribute(chart('temperature'), 'data-nulls'));
    // One bucket per pixel column (~600 on this screen), minus the hole's few.
    expect(points).toBeGreaterThan(400);
    expect(points).toBeLessThanOrEqual(8000);
    expect(nulls).toBe(1);

    // The same request the page made: every stored reading counted once (1 s resolution, none lost).
    const width = Number(await page.evaluate(() => (document.querySelector('.plot') as HTMLElement).clientWidth));
    const answer = (await page.evaluate(
      async ([device, from, to, buckets]) =>
        (await fetch(`/api/devices/${device}/history?from=${from}&to=${to}&buckets=${buckets}`)).json(),
      [DEVICE, END - DAY_S * 1000 + 1000, END, width] as const,
    )) as DownsampledResponse;
    for (const s of answer.series)
      expect(
        s.count.reduce((a, b) => a + b, 0),
        s.channel,
      ).toBe(stored);
    expect(stored).toBe(DAY_S - 600);

    // Pixels: the mean line is drawn on both sides of the hole and not across it.
    expect(await linePixelsAt('temperature', HOLE[0] - 3_600_000)).toBeGreaterThan(0);
    expect(await linePixelsAt('temperature', HOLE[0] + 5 * 60_000)).toBe(0);
    expect(await linePixelsAt('power', HOLE[0] + 5 * 60_000)).toBe(0);

    // SI prefixes: 12,000 W and more shows as kW.
    expect(await page.textContent(`${chart('power')} .latest`)).toMatch(/^\d+(\.\d+)? kW$/);
    await page.screenshot({ path: join(RESULTS, 'dashboard-range-24h.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('draws the bool channel as an on/off timeline with the hole left blank', async () => {
    const timeline = `${chart('relay')} canvas.timeline`;
    await page.waitForSelector(timeline, { timeout: WAIT_MS });
    expect(await page.getAttribute(chart('relay'), 'data-kind')).toBe('bool');
    // 24 on and 24 off half-hours, give or take the window's edges and the hole.
    expect(Number(await page.getAttribute(timeline, 'data-on'))).toBeGreaterThanOrEqual(23);
    expect(Number(await page.getAttribute(timeline, 'data-off'))).toBeGreaterThanOrEqual(23);
    const colours = await page.evaluate(
      ([sel, holeMid, from, to]) => {
        const canvas = document.querySelector(sel as string) as HTMLCanvasElement;
        const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
        const y = Math.round(canvas.height / 2);
        const at = (t: number) => {
          const x = Math.round(((t - (from as number)) / ((to as number) - (from as number))) * canvas.width);
          return Array.from(ctx.getImageData(x, y, 1, 1).data);
        };
        let green = 0;
        let grey = 0;
        const row = ctx.getImageData(0, y, canvas.width, 1).data;
        for (let i = 0; i < row.length; i += 4) {
          if (row[i + 3] === 255 && (row[i + 1] as number) > 140 && (row[i] as number) < 80) green++;
          if (row[i + 3] === 255 && row[i] === 139 && row[i + 1] === 148) grey++;
        }
        return { green, grey, hole: at(holeMid as number) };
      },
      [timeline, (HOLE[0] + HOLE[1]) / 2, END - DAY_S * 1000 + 1000, END] as const,
    );
    expect(colours.green).toBeGreaterThan(50);
    expect(colours.grey).toBeGreaterThan(50);
    // Nothing drawn in the hole: segments are opaque; at most a faint edge of the neighbours'
    // anti-aliasing reaches its middle.
    expect(colours.hole[3] ?? 255, JSON.stringify(colours)).toBeLessThan(32);
  });

  it('15 min: buckets finer than the samples draw no false gaps; live ranges follow the clock', async () => {
    await loadRange('15m');
    expect(Number(await page.getAttribute(chart('temperature'), 'data-nulls'))).toBe(0);
    // About one bucket per pixel column, every one holding a sample.
    expect(Number(await page.getAttribute(chart('temperature'), 'data-points'))).toBeGreaterThan(400);
    expect(await page.getAttribute('#range-picker [data-range="15m"]', 'aria-pressed')).toBe('true');
  });

  it('a custom range shows only that span, and exports it as CSV', async () => {
    const from = new Date(HOLE[0] - 30 * 60_000);
    const to = new Date(HOLE[1] + 30 * 60_000);
    const local = (d: Date) => {
      const p = (n: number) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    };
    await page.fill('#range-from', local(from));
    await page.fill('#range-to', local(to));
    await page.click('#range-apply');
    await page.waitForSelector('#charts[data-loaded-range="custom"]', { timeout: WAIT_MS });
    expect(Number(await page.getAttribute(chart('temperature'), 'data-nulls'))).toBe(1);
    const href = (await page.getAttribute('#csv-export', 'href')) as string;
    expect(href).toContain('format=csv');
    const csv = await page.evaluate(async (url) => (await fetch(url)).text(), href);
    const lines = csv.trim().split('\n');
    expect(lines[0]).toBe('time,time_ms,channel,unit,value');
    // 70 minutes of 3 channels at 1 s, minus the 10-minute hole, both ends inclusive.
    expect(lines.length - 1).toBe(3 * (60 * 60 + 1));
    await page.screenshot({ path: join(RESULTS, 'dashboard-range-custom-gap.png'), fullPage: true });
  });

  it('links to the Grafana device dashboard for the shown range', async () => {
    const href = (await page.getAttribute('#grafana-link', 'href')) as string;
    const url = new URL(href);
    expect(`${url.origin}${url.pathname}`).toBe('http://grafana.test:3000/d/esp32hub-device/');
    expect(url.searchParams.get('var-device')).toBe(DEVICE);
  });

  it('an operator renames a channel; the name stays after a reload', async () => {
    await page.click(`${chart('temperature')} .rename`);
    await page.fill(`${chart('temperature')} .label-input`, 'Room temperature');
    await page.press(`${chart('temperature')} .label-input`, 'Enter');
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent === 'Room temperature (°C)',
      `${chart('temperature')} h2`,
      { timeout: WAIT_MS },
    );
    await page.reload();
    await page.waitForSelector('#charts[data-loaded-range="1h"]', { timeout: WAIT_MS });
    expect(await page.textContent(`${chart('temperature')} h2`)).toBe('Room temperature (°C)');
    expect(await page.textContent(`${chart('power')} h2`)).toBe('Power (W)');
  });

  it('an unknown id says "no such device"', async () => {
    await page.goto(`${base}/#/device/not-a-board`);
    await page.waitForSelector('#no-such-device', { timeout: WAIT_MS });
    expect(await page.textContent('#no-such-device')).toMatch(/^No such device/);
    expect(pageErrors.filter((e) => !/404/.test(e))).toEqual([]);
  });
});
