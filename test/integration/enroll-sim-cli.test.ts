/**
 * `npm run sim -- --enroll` as people run it (the simulator CLI as a child process) against a real hub:
 * boards that start unprovisioned enroll, wait while pending until `npm run hub -- devices approve`
 * (another child process) lets them in, keep their token in `--state-dir`, and stream; with
 * `--fleet-secret` they are approved at once; a later run with the same state dir needs no enrollment.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { buildHub, type Hub } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';
import { runCli } from './registry-cli.ts';
import { runScript, startScript } from './run-script.ts';

const SECRET = 'sim-fleet-secret-0123456789';
let dir: TempDir;
let hub: Hub;
let port: number;

beforeAll(async () => {
  dir = await tempDir('enroll-sim-cli');
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: join(dir.path, 'hub'),
    HUB_LOG_LEVEL: 'silent',
    ENROLL_FLEET_SECRET: SECRET,
  });
  hub = buildHub(config, { logger: createLogger('silent') });
  port = (await hub.start()).port;
});

afterAll(async () => {
  await hub?.stop();
  await dir?.remove();
});

const sim = (args: string[]) => [
  '--url',
  `ws://127.0.0.1:${port}/v1/device`,
  '--duration',
  '2s',
  '--drain',
  '5s',
  '--quiet',
  '--json',
  ...args,
];

describe('npm run sim -- --enroll', () => {
  it('waits as pending until the CLI approves, stores the token in --state-dir, then streams', async () => {
    const state = join(dir.path, 'state-approve');
    const run = startScript(
      'firmware-sim/cli.ts',
      sim(['--enroll', '--state-dir', state, '--id-prefix', 'enr-', '--devices', '1']),
      {},
      { killAfterMs: 120_000 },
    );
    const hubDir = join(dir.path, 'hub');
    for (let i = 0; ; i++) {
      const list = await runCli(['devices', 'pending', '--json', '--data-dir', hubDir]);
      if (list.stdout.includes('enr-0001')) break;
      if (i > 200) throw new Error(`enr-0001 never became pending: ${run.output().stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(run.output().stderr).toContain('enr-0001: pending');
    expect((await runCli(['devices', 'approve', 'enr-0001', '--data-dir', hubDir])).code).toBe(0);
    const done = await run.exited;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain('enr-0001: approved, token stored');
    const summary = JSON.parse(done.stdout) as { totals: { framesAcked: number } };
    expect(summary.totals.framesAcked).toBeGreaterThan(0);
    expect(hub.context().log.lastReadings('enr-0001')).not.toBeNull();
    const nvs = JSON.parse(readFileSync(join(state, 'enr-0001', 'nvs.json'), 'utf8')) as { token: string };
    expect(hub.context().registry?.authenticate(nvs.token)).toBe('enr-0001');
    expect(existsSync(join(state, 'enr-0001', 'enroll-key'))).toBe(true);

    // The next run finds the token in the state dir: no enrollment, no tokens file.
    const again = await runScript('firmware-sim/cli.ts', sim(['--state-dir', state, '--id-prefix', 'enr-']));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('enrolling');
  });

  it('with --fleet-secret the boards are approved at once; a wrong secret is refused', async () => {
    const ok = await runScript(
      'firmware-sim/cli.ts',
      sim(['--enroll', '--fleet-secret', SECRET, '--id-prefix', 'sec-', '--devices', '2']),
    );
    expect(ok.code, ok.stderr).toBe(0);
    for (const id of ['sec-0001', 'sec-0002']) expect(hub.context().log.lastReadings(id)).not.toBeNull();

    const bad = await runScript(
      'firmware-sim/cli.ts',
      sim(['--enroll', '--fleet-secret', 'wrong-secret-0000000000', '--id-prefix', 'bad-']),
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('bad-0001: refused (ENROLL_SECRET_INVALID');
    expect(bad.stderr).not.toContain('wrong-secret-0000000000');
    expect(hub.context().registry?.get('bad-0001')).toBeUndefined();
  });
});
