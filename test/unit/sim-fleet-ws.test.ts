/**
 * The simulator over real WebSockets against the in-process fake hub (a `ws` server using the real
 * codec): handshake headers, connection drops, replays, and the CLI's run loop end to end. No mocks of
 * `ws`; no timing assertions (waits poll for conditions).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeHub, type FakeWsHub, startFakeWsHub } from '../../firmware-sim/fake-hub.ts';
import { Fleet, type FleetSummary, fleetDeviceIds } from '../../firmware-sim/fleet.ts';
import { parseCliOptions } from '../../firmware-sim/options.ts';
import { MemoryRecorder } from '../../firmware-sim/recorder.ts';
import { runSimulator } from '../../firmware-sim/run.ts';

const dir = mkdtempSync(join(tmpdir(), 'sim-ws-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ids = fleetDeviceIds(5);
const tokens = new Map(ids.map((id, i) => [id, `esp32hub_test_token_${i}`]));
let hub: FakeHub;
let server: FakeWsHub;

beforeEach(async () => {
  hub = new FakeHub({ tokens });
  server = await startFakeWsHub(hub);
});
afterEach(async () => {
  await server.close();
});

describe('fleet over real sockets', () => {
  it('reconnects after the network drops every socket and stores every acked reading exactly once', async () => {
    const recorder = new MemoryRecorder();
    const fleet = new Fleet({
      url: server.url,
      devices: 5,
      tokens,
      seed: 3,
      rate: 10,
      recorder,
      device: { backoff: { initialMs: 100, maxMs: 500 } },
    });
    fleet.start();
    await until('all online', () => fleet.snapshot().connected === 5);
    await until('some acks', () => fleet.snapshot().framesAcked >= 30);
    server.dropAll();
    const ackedBefore = fleet.snapshot().framesAcked;
    await until('reconnected', () => fleet.devices.every((d) => d.stats.sessions >= 2 && d.state === 'online'));
    await until('acks after reconnect', () => fleet.snapshot().framesAcked >= ackedBefore + 30);
    const summary = await fleet.stop({ drainMs: 5000 });

    expect(summary.outboxDepth).toBe(0);
    expect(summary.totals.reconnects).toBeGreaterThanOrEqual(5);
    expect(summary.totals.framesAcked).toBe(summary.totals.framesGenerated);
    for (const id of ids) {
      const d = hub.device(id);
      const stored = d.readings.map((r) => `${r.channel}|${r.timeMs}|${r.value}`);
      const acked = recorder.ackedReadings(id).map((r) => {
        const offset = r.unsynced ? (d.boots.get(r.bootId)?.offsetMs ?? Number.NaN) : 0;
        return `${r.channel}|${r.deviceTimeMs + offset}|${r.value}`;
      });
      expect(new Set(stored).size).toBe(stored.length);
      expect(stored.sort()).toEqual(acked.sort());
      expect(d.gaps).toBe(0);
    }
    const readings = [...hub.devices.values()].reduce((n, d) => n + d.readings.length, 0);
    expect(readings).toBe(summary.totals.readingsAcked);
  });

  it('is refused with 401 for a wrong token and counts it', async () => {
    const fleet = new Fleet({
      url: server.url,
      devices: 1,
      tokens: new Map([['sim-0001', 'esp32hub_wrong']]),
      device: { backoff: { initialMs: 50, maxMs: 100 } },
    });
    fleet.start();
    await until('refusals', () => fleet.totals().handshakeRefusals >= 3);
    const s = await fleet.stop();
    expect(s.refusalsByStatus['401']).toBe(s.totals.handshakeRefusals);
    expect(s.totals.sessions).toBe(0);
    expect(hub.devices.size).toBe(0);
  });
});

describe('the CLI run loop', () => {
  function io(interrupt = new AbortController()) {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      interrupt,
      io: {
        stdout: { write: (t: string) => out.push(t) },
        stderr: { write: (t: string) => err.push(t) },
        statusTty: false,
        interrupt: interrupt.signal,
      },
    };
  }

  it('runs for --duration, drains, and prints the JSON summary', async () => {
    const file = join(dir, 'devices.tokens');
    writeFileSync(file, [...tokens].map(([id, t]) => `${id},${t}`).join('\n'), { mode: 0o600 });
    const opts = parseCliOptions(
      ['--url', server.url, '--devices', '3', '--rate', '5', '--tokens-file', file, '--duration', '1500ms', '--json'],
      {},
    );
    const { out, err, io: runIo } = io();
    const result = await runSimulator(opts, runIo);
    expect(result.exitCode).toBe(0);
    const summary = JSON.parse(out.join('')) as FleetSummary;
    expect(summary.devices).toBe(3);
    expect(summary.totals.framesAcked).toBeGreaterThan(5);
    expect(summary.totals.framesAcked).toBe(summary.totals.framesGenerated);
    expect(summary.ackLatencyMs.p50).not.toBeNull();
    expect(err.join('')).toContain('simulating 3 board(s)');
    expect(err.join('')).not.toContain('esp32hub_test_token');
  });

  it('draws the live status line on a terminal', async () => {
    const file = join(dir, 'tty.tokens');
    writeFileSync(file, 'sim-0001,esp32hub_test_token_0\n');
    const { err, io: runIo } = io();
    const opts = parseCliOptions(
      ['--url', server.url, '--tokens-file', file, '--duration', '2500ms', '--rate', '4'],
      {},
    );
    const result = await runSimulator(opts, { ...runIo, statusTty: true });
    expect(result.exitCode).toBe(0);
    const lines = err
      .join('')
      .split('\r\x1b[2K')
      .filter((l) => l.startsWith('sim steady'));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatch(
      /^sim steady 00:0\d · 1\/1 connected · sent [\d.]+\/s · acked [\d.]+\/s · outbox \d+ · reconnects 0 · dropped 0$/,
    );
  });

  it('stops on interrupt and prints the table; tells how to get missing tokens', async () => {
    const file = join(dir, 'two.tokens');
    writeFileSync(file, 'sim-0001,esp32hub_test_token_0\nsim-0002,esp32hub_test_token_1\n');
    const ctl = new AbortController();
    const { out, io: runIo } = io(ctl);
    const opts = parseCliOptions(['--url', server.url, '--devices', '2', '--tokens-file', file], {});
    const running = runSimulator(opts, runIo);
    await until('a session', () => hub.isOnline('sim-0001') && hub.isOnline('sim-0002'));
    ctl.abort();
    const result = await running;
    expect(result.exitCode).toBe(0);
    expect(out.join('')).toMatch(/sessions \(WELCOME\)\s+2/);

    const missing = io();
    const r2 = await runSimulator(
      parseCliOptions(['--url', server.url, '--devices', '3', '--tokens-file', file], {}),
      missing.io,
    );
    expect(r2.exitCode).toBe(2);
    expect(missing.err.join('')).toContain('npm run hub -- devices add sim-0003 --tokens-file');
  });

  it('exits 1 and says so when the hub refuses every handshake', async () => {
    const file = join(dir, 'wrong.tokens');
    writeFileSync(file, 'sim-0001,esp32hub_not_valid\n');
    const { err, io: runIo } = io();
    const opts = parseCliOptions(['--url', server.url, '--tokens-file', file, '--duration', '1s'], {});
    const result = await runSimulator(opts, runIo);
    expect(result.exitCode).toBe(1);
    expect(err.join('')).toMatch(/refused every handshake \(HTTP 401 ×\d+\): the tokens do not match/);
  });
});
