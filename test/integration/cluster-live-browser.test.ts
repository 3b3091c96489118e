// The built-in dashboard with several instances, in real Chromium: the page served by instance A
// shows a board whose session is on instance B online, and its Identify button works (the page uses
// the same commands API, which goes through B). Two real hubs in this process, a real PostgreSQL and
// Mosquitto; the board is a real WebSocket client that answers the command.

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  type MosquittoServer,
  type PostgresServer,
  startMosquitto,
  startPostgres,
  until,
} from '../harness/index.ts';
import { type InProcessInstance, startInProcessInstance } from './cluster-inprocess.ts';
import { TEST_CHANNELS, TestDevice } from './ingest-device-client.ts';

const WAIT_MS = 30_000;

describe('dashboard of instance A, board on instance B (Chromium, real Mosquitto and PostgreSQL)', () => {
  let broker: MosquittoServer;
  let pg: PostgresServer;
  let a: InProcessInstance;
  let b: InProcessInstance;
  let browser: Browser;
  let page: Page;
  let board: TestDevice;
  const errors: string[] = [];

  beforeAll(async () => {
    [broker, pg] = await Promise.all([startMosquitto(), startPostgres()]);
    const shared = { broker: broker.url, database: pg.url, live: true };
    // No admin token: open mode on loopback makes the page an operator (docs/live-api.md §1.1).
    a = await startInProcessInstance('a', null, shared);
    b = await startInProcessInstance('b', null, shared);
    const { token } = await (a.hub.context().registry ?? { add: () => Promise.reject(new Error('no registry')) }).add(
      'esp-remote',
    );
    await until('B knows the board', () => b.hub.context().registry?.get('esp-remote') !== undefined);
    board = await TestDevice.connect(b.deviceUrl, { token });
    const welcome = await board.hello('esp-remote', 9);
    if (!welcome.descriptorsKnown) board.send({ type: 'descriptors', channels: TEST_CHANNELS });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on('pageerror', (err) => errors.push(err.message));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await board?.close().catch(() => undefined);
    await a?.hub.stop();
    await b?.hub.stop();
    await Promise.all([broker?.stop(), pg?.stop(), a?.dir.remove(), b?.dir.remove()]);
  });

  it('shows the board online and its Identify button reaches it through B; the result shows on A', async () => {
    await page.goto(`${a.http}/#/device/esp-remote`);
    await page.waitForSelector('#identify:not([disabled])', { timeout: WAIT_MS });
    await page.click('#identify');
    const command = await board.next('command', WAIT_MS);
    expect(command.name).toBe('identify');
    board.send({ type: 'command_accepted', commandId: command.commandId });
    board.send({ type: 'command_result', commandId: command.commandId, status: 0, message: 'blinking for 3000 ms' });
    await page.waitForSelector('#command-results li[data-state="done"][data-status="0"]', { timeout: WAIT_MS });
    const shown = await page.textContent('#command-results li[data-state="done"]');
    expect(shown).toBe(`identify #${command.commandId}: done: ok — blinking for 3000 ms`);
    expect(errors).toEqual([]);
  });
});
