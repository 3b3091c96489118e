// Smoke test of the real browser used by integration tests: the system Chromium driven headless by
// playwright-core (docs/testing.md).
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoopbackSite, launchChromium, servePage } from '../harness/index.ts';

describe('real headless Chromium', () => {
  let browser: Browser;
  let site: LoopbackSite;

  beforeAll(async () => {
    site = await servePage({
      '/': `<!doctype html>
<html><head><title>smoke</title></head>
<body>
  <h1 id="title">Telemetry hub</h1>
  <p id="reading">waiting</p>
  <script type="module">
    const response = await fetch('/reading.json');
    const { device, value } = await response.json();
    document.getElementById('reading').textContent = device + ': ' + value.toFixed(1) + ' °C';
  </script>
</body></html>`,
      '/reading.json': { body: JSON.stringify({ device: 'esp-01', value: 21.5 }), contentType: 'application/json' },
    });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await site?.close();
  });

  it('renders a page served on loopback, scripts and fetches included', async () => {
    const page = await browser.newPage();
    await page.goto(site.url);
    expect(await page.title()).toBe('smoke');
    expect(await page.textContent('#title')).toBe('Telemetry hub');
    await page.waitForFunction(() => document.getElementById('reading')?.textContent !== 'waiting');
    expect(await page.textContent('#reading')).toBe('esp-01: 21.5 °C');
    await page.close();
  });
});
