/**
 * `npm run sim` as people run it: the CLI as a child process against a real hub in embedded mode
 * (no InfluxDB), with tokens obtained both documented ways — a tokens file written by
 * `npm run hub -- devices add … --tokens-file`, and `--provision` through the admin API — and the
 * result checked through the hub's history API. Run again and again:
 * - what one run stores must not be taken by the hub for a replay of an earlier run (boot ids never
 *   repeat, whatever the seed);
 * - with `--state-dir` and the power-cut scenario, two runs in a row: every reading the boards
 *   sampled (their `--record`) is stored exactly once, compared by value per (device, channel, time).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetSummary } from '../../firmware-sim/fleet.ts';
import { readRecord } from '../../firmware-sim/record-file.ts';
import { readTokensFile } from '../../firmware-sim/tokens.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { runScript, startScript } from './run-script.ts';

const ADMIN = 'sim-cli-admin-token-abcdef0123456789abcdef';
const run = runScript;

let dir: TempDir;
let hub: Hub;
let port: number;

beforeAll(async () => {
  dir = await tempDir('sim-cli');
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: dir.path,
    HUB_LOG_LEVEL: 'silent',
    HUB_ADMIN_TOKEN: ADMIN,
  });
  hub = buildHub(config, { logger: createLogger('silent') });
  port = (await hub.start()).port;
});

afterAll(async () => {
  await hub?.stop();
  await dir?.remove();
});

interface StoredReading {
  channel: string;
  timeMs: number;
  value: number | boolean;
}

/** Every reading the hub stored for a device in the last 10 minutes, through the history API. */
async function stored(id: string): Promise<StoredReading[]> {
  const out: StoredReading[] = [];
  for (const channel of [
    'temperature',
    'humidity',
    'pressure',
    'battery_v',
    'rssi_dbm',
    'heap_free',
    'uptime_s',
    'led',
  ]) {
    const res = await fetch(
      `http://127.0.0.1:${port}/api/devices/${id}/history?channel=${channel}&limit=10000&from=${Date.now() - 600_000}`,
      { headers: { Authorization: `Bearer ${ADMIN}` } },
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { readings: StoredReading[]; truncated: boolean };
    expect(body.truncated).toBe(false);
    out.push(...body.readings);
  }
  return out;
}

async function history(id: string): Promise<number> {
  return (await stored(id)).length;
}

async function registered(ids: string[], file: string): Promise<void> {
  const add = await run('server/cli.ts', ['devices', 'add', ...ids, '--data-dir', dir.path, '--tokens-file', file]);
  expect(add.code, add.stderr).toBe(0);
}

describe('npm run sim', () => {
  it('uses the tokens file written by `npm run hub -- devices add`', async () => {
    const file = `${dir.path}/devices.tokens`;
    const add = await run('server/cli.ts', [
      'devices',
      'add',
      'sim-0001',
      'sim-0002',
      '--data-dir',
      dir.path,
      '--tokens-file',
      file,
    ]);
    expect(add.code, add.stderr).toBe(0);
    const sim = await run('firmware-sim/cli.ts', [
      '--url',
      `ws://127.0.0.1:${port}/v1/device`,
      '--devices',
      '2',
      '--rate',
      '2',
      '--tokens-file',
      file,
      '--duration',
      '3s',
      '--json',
    ]);
    expect(sim.code, sim.stderr).toBe(0);
    const summary = JSON.parse(sim.stdout) as FleetSummary;
    expect(summary.totals.framesAcked).toBeGreaterThan(4);
    expect(summary.outboxDepth).toBe(0);
    // What the simulator saw acknowledged is what the hub's embedded store answers.
    for (const d of summary.perDevice) expect(await history(d.id)).toBe(d.readingsAcked);
    for (const token of readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(',')[1] as string)) {
      expect(sim.stdout + sim.stderr).not.toContain(token);
    }
  }, 120_000);

  it('stops on Ctrl-C (SIGINT): drains, prints the summary and exits 0', async () => {
    const file = `${dir.path}/devices.tokens`;
    const ids = [...readTokensFile(file).keys()];
    expect(ids).toHaveLength(2);
    const before = await Promise.all(ids.map(history));
    const sim = startScript('firmware-sim/cli.ts', [
      '--url',
      `ws://127.0.0.1:${port}/v1/device`,
      '--devices',
      '2',
      '--tokens-file',
      file,
    ]);
    // Ctrl-C once both boards have had new readings acknowledged (stored by the hub) in this run.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const now = await Promise.all(ids.map(history));
      if (now.every((n, i) => n > (before[i] as number))) break;
      expect(Date.now() < deadline, `no new readings stored for both boards: ${sim.output().stderr}`).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
    }
    sim.child.kill('SIGINT');
    const { code, stdout } = await sim.exited;
    expect(code).toBe(0);
    expect(stdout).toMatch(/sessions \(WELCOME\)\s+2/);
    expect(stdout).toMatch(/acked\s+\d+\s+\d+/);
  }, 60_000);

  it('provisions missing devices through the admin API, keeps their tokens, and never prints a secret', async () => {
    const file = `${dir.path}/provisioned.tokens`;
    const args = [
      '--url',
      `ws://127.0.0.1:${port}/v1/device`,
      '--devices',
      '3',
      '--id-prefix',
      'prov-',
      '--tokens-file',
      file,
      '--provision',
      '--duration',
      '2s',
      '--per-device',
    ];
    const first = await run('firmware-sim/cli.ts', args, { HUB_ADMIN_TOKEN: ADMIN });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('registering 3 device(s)');
    expect(first.stdout).toMatch(/prov-0003\s+[0-9a-f]{8}\s+\d+\s+\d+/);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.split(',')[0])).toEqual(['prov-0001', 'prov-0002', 'prov-0003']);
    const output = first.stdout + first.stderr;
    expect(output).not.toContain(ADMIN);
    for (const l of lines) expect(output).not.toContain(l.split(',')[1] as string);

    // A second run reuses the file: nothing to register.
    const second = await run('firmware-sim/cli.ts', args, { HUB_ADMIN_TOKEN: ADMIN });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toContain('registering');

    // A taken id whose token is not in the file: a clear error, exit 1.
    const clash = await run(
      'firmware-sim/cli.ts',
      ['--url', `ws://127.0.0.1:${port}/v1/device`, '--id-prefix', 'prov-', '--provision', '--duration', '1s'],
      { HUB_ADMIN_TOKEN: ADMIN },
    );
    expect(clash.code).toBe(1);
    expect(clash.stderr).toContain('HTTP 409');
    expect(clash.stderr).toContain('devices rotate prov-0001');
  }, 120_000);
});

describe('npm run sim, run twice', () => {
  it("stores both runs' readings: the same seed never brings back the same boot ids", async () => {
    const file = `${dir.path}/twice.tokens`;
    await registered(['twice-0001', 'twice-0002'], file);
    const args = [
      '--url',
      `ws://127.0.0.1:${port}/v1/device`,
      '--devices',
      '2',
      '--id-prefix',
      'twice-',
      '--rate',
      '4',
      '--tokens-file',
      file,
      '--duration',
      '2s',
      '--json',
    ];
    const summaries: FleetSummary[] = [];
    for (let i = 0; i < 2; i++) {
      const sim = await run('firmware-sim/cli.ts', args); // the default seed both times
      expect(sim.code, sim.stderr).toBe(0);
      const summary = JSON.parse(sim.stdout) as FleetSummary;
      expect(summary.outboxDepth).toBe(0);
      summaries.push(summary);
    }
    const [first, second] = summaries as [FleetSummary, FleetSummary];
    for (const id of ['twice-0001', 'twice-0002']) {
      const a = first.perDevice.find((d) => d.id === id);
      const b = second.perDevice.find((d) => d.id === id);
      expect(a?.readingsAcked).toBeGreaterThan(0);
      expect(b?.readingsAcked).toBeGreaterThan(0);
      // What the simulator reports acknowledged, both runs together, is what the hub holds.
      expect((await stored(id)).length).toBe((a?.readingsAcked ?? 0) + (b?.readingsAcked ?? 0));
      expect(b?.bootId).not.toBe(a?.bootId);
    }
  }, 120_000);

  it('with --state-dir and power cuts: every sampled reading of both runs stored once, by value', async () => {
    const ids = ['cut-0001', 'cut-0002', 'cut-0003'];
    const file = `${dir.path}/cut.tokens`;
    await registered(ids, file);
    const state = `${dir.path}/state`;
    const record = `${dir.path}/cut.record`;
    const common = [
      '--url',
      `ws://127.0.0.1:${port}/v1/device`,
      '--devices',
      '3',
      '--id-prefix',
      'cut-',
      '--rate',
      '4',
      '--scenario',
      'power-cut',
      '--fault-every',
      '3s',
      '--state-dir',
      state,
      '--record',
      record,
      '--duration',
      '10s',
      '--json',
    ];
    // Run 1 stops without waiting for ACKs: what is in flight, or in the flash of a board that is
    // off at the end, stays in the state directory. The seed fixes when the power goes; should both
    // boards end a run off with nothing buffered, run again with another seed: the carry-over is
    // what this test is about (every run is in the record and checked).
    const summaries: FleetSummary[] = [];
    let s1: FleetSummary | null = null;
    for (let attempt = 0; attempt < 4 && !(s1 && s1.outboxDepth > 0); attempt++) {
      const seed = String(12 + attempt);
      const first = await run('firmware-sim/cli.ts', [
        ...common,
        '--seed',
        seed,
        '--tokens-file',
        file,
        '--drain',
        '0',
      ]);
      expect(first.code, first.stderr).toBe(0);
      s1 = JSON.parse(first.stdout) as FleetSummary;
      summaries.push(s1);
    }
    if (!s1) throw new Error('unreachable');
    expect(s1.totals.powerCuts).toBeGreaterThan(0);
    expect(s1.outboxDepth).toBeGreaterThan(0);
    // Run 2: no tokens file (the boards kept their tokens), the same power cuts, now on battery
    // (deep sleep: a frame per wake, flushed every 8 wakes), then a drain.
    const second = await run('firmware-sim/cli.ts', [
      ...common,
      '--profile',
      'deep-sleep',
      '--ticks-per-frame',
      '1',
      '--flush-every',
      '8',
      '--drain',
      '30s',
    ]);
    expect(second.code, second.stderr).toBe(0);
    const s2 = JSON.parse(second.stdout) as FleetSummary;
    summaries.push(s2);
    expect(s2.totals.powerCuts).toBeGreaterThan(0);
    expect(s2.totals.flushes).toBeGreaterThan(2);
    expect(s2.totals.framesRestored).toBeGreaterThanOrEqual(s1.outboxDepth);
    expect(s2.outboxDepth).toBe(0);

    // The hub's time offset per stored frame: how it mapped the unsynced (uptime) frames of each boot.
    const offsets = new Map<string, number>();
    for (const e of hub.context().log.readAfter(0, 10_000_000)) {
      offsets.set(`${e.deviceId}|${e.bootId}|${e.seq}`, e.timeOffsetMs);
    }
    const lines = readRecord(record);
    const frameKey = (r: { deviceId: string; bootId: number; seq: number }) => `${r.deviceId}|${r.bootId}|${r.seq}`;
    const readingKey = (r: { deviceId: string; bootId: number; seq: number; channel: string; deviceTimeMs: number }) =>
      `${frameKey(r)}|${r.channel}|${r.deviceTimeMs}`;
    let sampledTotal = 0;
    for (const id of ids) {
      const sampled = lines.filter((l) => l.event === 'sampled' && l.deviceId === id);
      expect(sampled.length).toBeGreaterThan(100);
      sampledTotal += sampled.length;
      expect(new Set(sampled.map((l) => l.bootId)).size).toBeGreaterThan(2); // several boots per run
      const notInHub = sampled.filter((l) => !offsets.has(frameKey(l))).map(frameKey);
      expect([...new Set(notInHub)]).toEqual([]); // no gap
      const expected = sampled.map(
        (l) => `${l.channel}|${l.deviceTimeMs + (offsets.get(frameKey(l)) as number)}|${l.value}`,
      );
      const got = (await stored(id)).map((r) => `${r.channel}|${r.timeMs}|${r.value}`);
      // Same multiset: every sampled reading once, with its value at its time, and nothing else.
      expect(got.sort()).toEqual(expected.sort());
      // "acked" means stored: the readings the boards saw acknowledged are exactly the sampled ones.
      const acked = lines.filter((l) => l.event === 'acked' && l.deviceId === id).map(readingKey);
      expect(acked.sort()).toEqual(sampled.map(readingKey).sort());
    }
    // Samples still in RAM at a cut never made a frame: reported, not claimed.
    const lost = lines.filter((l) => l.event === 'lost').length;
    const total = (k: string) => summaries.reduce((n, x) => n + (x.totals[k] ?? 0), 0);
    expect(lost).toBe(total('readingsLostOnCrash'));
    expect(sampledTotal).toBe(total('readingsGenerated'));
  }, 120_000);
});
