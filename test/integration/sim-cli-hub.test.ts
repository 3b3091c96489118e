/**
 * `npm run sim` as people run it: the CLI as a child process against a real hub in embedded mode
 * (no InfluxDB), with tokens obtained both documented ways — a tokens file written by
 * `npm run hub -- devices add … --tokens-file`, and `--provision` through the admin API — and the
 * result checked through the hub's history API.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetSummary } from '../../firmware-sim/fleet.ts';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
const ADMIN = 'sim-cli-admin-token-abcdef0123456789abcdef';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(script: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, [script, ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

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

async function history(id: string): Promise<number> {
  let total = 0;
  for (const channel of ['temperature', 'humidity', 'pressure', 'battery_v', 'rssi_dbm', 'heap_free', 'uptime_s']) {
    const res = await fetch(
      `http://127.0.0.1:${port}/api/devices/${id}/history?channel=${channel}&limit=10000&from=${Date.now() - 600_000}`,
      { headers: { Authorization: `Bearer ${ADMIN}` } },
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { readings: unknown[]; truncated: boolean };
    expect(body.truncated).toBe(false);
    total += body.readings.length;
  }
  return total;
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
    const child = spawn(
      TSX,
      ['firmware-sim/cli.ts', '--url', `ws://127.0.0.1:${port}/v1/device`, '--devices', '2', '--tokens-file', file],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const deadline = Date.now() + 30_000;
    while (!stderr.includes('simulating 2 board(s)') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 2500));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
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
