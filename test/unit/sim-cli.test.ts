/**
 * The simulator CLI's pure parts: flags, durations, tokens files, provisioning through the admin API
 * (against a real HTTP server on loopback that answers as the API is documented), and the report.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetSummary } from '../../firmware-sim/fleet.ts';
import { parseCliOptions, parseDuration, UsageError } from '../../firmware-sim/options.ts';
import { statusLine, summaryTable } from '../../firmware-sim/report.ts';
import { adminUrlFor, appendTokens, parseTokens, provisionDevices, readTokensFile } from '../../firmware-sim/tokens.ts';

const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('flags', () => {
  it('have defaults and take every documented option', () => {
    const o = parseCliOptions(['--tokens-file', 't.csv'], {});
    expect(o).toMatchObject({
      url: 'ws://localhost:8080/v1/device',
      devices: 1,
      rate: 1,
      seed: 1,
      scenario: 'steady',
      durationMs: null,
      drainMs: 10_000,
      idPrefix: 'sim-',
      outboxFrames: 512,
      json: false,
    });
    const p = parseCliOptions(
      [
        '--url',
        'wss://hub.example:8443/v1/device',
        '--devices',
        '50',
        '--rate',
        '0.5',
        '--seed',
        '42',
        '--scenario',
        'flaky-wifi',
        '--duration',
        '5m',
        '--drain',
        '2s',
        '--provision',
        '--json',
        '--per-device',
      ],
      { HUB_ADMIN_TOKEN: 'a'.repeat(40) },
    );
    expect(p).toMatchObject({
      devices: 50,
      rate: 0.5,
      seed: 42,
      scenario: 'flaky-wifi',
      durationMs: 300_000,
      drainMs: 2000,
      provision: true,
      json: true,
      perDevice: true,
    });
    expect(p.adminToken).toBe('a'.repeat(40));
  });

  it('list every problem at once', () => {
    try {
      parseCliOptions(['--devices', '0', '--scenario', 'chaos', '--rate=-1', '--url', 'http://x?token=1'], {});
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      const problems = (err as UsageError).problems.join('\n');
      expect(problems).toContain('--devices');
      expect(problems).toContain('--scenario');
      expect(problems).toContain('--rate');
      expect(problems).toContain('ws://');
      expect(problems).toContain('tokens');
    }
  });

  it('require the admin token in the environment for --provision, and never take it as a flag', () => {
    expect(() => parseCliOptions(['--provision'], {})).toThrow(/HUB_ADMIN_TOKEN/);
    expect(
      parseCliOptions(['--provision', '--admin-token-env', 'MY_ADMIN'], { MY_ADMIN: 'x'.repeat(32) }).adminToken,
    ).toBe('x'.repeat(32));
    expect(() => parseCliOptions(['--tokens-file', 'f', '--admin-token', 'secret'], {})).toThrow(UsageError);
  });

  it('take the state directory, the power profile and the fault pace; a state directory may hold the tokens', () => {
    const o = parseCliOptions(['--state-dir', 'state'], {}); // no tokens file: the boards keep theirs
    expect(o).toMatchObject({
      stateDir: 'state',
      profile: 'always-on',
      faultEveryMs: null,
      flushEverySamples: 60,
      flushIntervalMs: 300_000,
      recordFile: null,
    });
    const p = parseCliOptions(
      [
        '--state-dir',
        'state',
        '--scenario',
        'power-cut',
        '--fault-every',
        '1500ms',
        '--profile',
        'deep-sleep',
        '--flush-every',
        '10',
        '--flush-interval',
        '2m',
        '--record',
        'r.jsonl',
      ],
      {},
    );
    expect(p).toMatchObject({
      scenario: 'power-cut',
      faultEveryMs: 1500,
      profile: 'deep-sleep',
      flushEverySamples: 10,
      flushIntervalMs: 120_000,
      recordFile: 'r.jsonl',
    });
    const problems = (argv: string[]) => {
      try {
        parseCliOptions(['--tokens-file', 't', ...argv], {});
        return '';
      } catch (err) {
        return (err as UsageError).problems.join('\n');
      }
    };
    expect(problems(['--profile', 'hibernate'])).toContain('--profile');
    expect(problems(['--flush-every', '5'])).toContain('need --profile deep-sleep');
    expect(problems(['--fault-every', 'often'])).toContain('--fault-every');
    expect(problems(['--profile', 'deep-sleep', '--flush-every', '0'])).toContain('--flush-every');
  });

  it('parse durations', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('1.5m')).toBe(90_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('soon')).toBeNull();
  });
});

describe('tokens', () => {
  it('reads the hub CLI’s "id,token" lines and appends new ones with mode 0600', () => {
    const file = join(dir, 'devices.tokens');
    writeFileSync(file, '# tokens\nsim-0001,esp32hub_aaa\n\nsim-0002,esp32hub_bbb\n');
    appendTokens(file, [['sim-0003', 'esp32hub_ccc']]);
    const tokens = readTokensFile(file);
    expect([...tokens]).toEqual([
      ['sim-0001', 'esp32hub_aaa'],
      ['sim-0002', 'esp32hub_bbb'],
      ['sim-0003', 'esp32hub_ccc'],
    ]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readTokensFile(join(dir, 'absent')).size).toBe(0);
    expect(() => parseTokens('not a line')).toThrow(/line 1/);
    expect(parseTokens('a,1\na,2').get('a')).toBe('2');
  });

  it('derives the admin API URL from the device URL', () => {
    expect(adminUrlFor('ws://localhost:8080/v1/device')).toBe('http://localhost:8080');
    expect(adminUrlFor('wss://hub.example/v1/device')).toBe('https://hub.example');
  });
});

describe('provisioning through the admin API', () => {
  const ADMIN = 'admin-token-0123456789abcdef0123456789';
  let server: Server;
  let url: string;
  const registered = new Set<string>(['sim-0009']);
  const seenAuth: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        seenAuth.push(req.headers.authorization ?? '');
        const json = (status: number, value: unknown) =>
          res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(value));
        if (req.method !== 'POST' || req.url !== '/api/admin/devices')
          return json(404, { error: { code: 'NOT_FOUND' } });
        if (req.headers.authorization !== `Bearer ${ADMIN}`) return json(401, { error: { code: 'UNAUTHORIZED' } });
        const { id } = JSON.parse(body) as { id: string };
        if (registered.has(id)) return json(409, { error: { code: 'DEVICE_EXISTS' } });
        registered.add(id);
        return json(201, { id, token: `esp32hub_token_for_${id}` });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('registers each device and returns its token', async () => {
    const { issued, error } = await provisionDevices(['sim-0001', 'sim-0002', 'sim-0003'], {
      adminUrl: url,
      adminToken: ADMIN,
    });
    expect(error).toBeNull();
    expect(issued.get('sim-0002')).toBe('esp32hub_token_for_sim-0002');
    expect(seenAuth.every((a) => a === `Bearer ${ADMIN}`)).toBe(true);
  });

  it('stops with a hint on a taken id or a refused admin token, without echoing the token', async () => {
    const taken = await provisionDevices(['sim-0009'], { adminUrl: url, adminToken: ADMIN });
    expect(taken.error?.status).toBe(409);
    expect(taken.error?.message).toContain('devices rotate sim-0009');
    const refused = await provisionDevices(['sim-0100'], {
      adminUrl: url,
      adminToken: 'wrong-admin-token-value-xxxxxxxxxxxx',
    });
    expect(refused.error?.status).toBe(401);
    expect(refused.error?.message).not.toContain('wrong-admin-token');
    const unreachable = await provisionDevices(['sim-0101'], { adminUrl: 'http://127.0.0.1:9', adminToken: ADMIN });
    expect(unreachable.error?.status).toBeNull();
  });
});

describe('report', () => {
  const summary: FleetSummary = {
    scenario: 'malformed',
    seed: 42,
    devices: 2,
    ratePerDevice: 1,
    durationMs: 61_000,
    totals: {
      framesGenerated: 120,
      readingsGenerated: 1700,
      framesSent: 130,
      framesAcked: 120,
      readingsAcked: 1700,
      framesReplayed: 10,
      framesDropped: 0,
      readingsDropped: 0,
      framesDroppedUnsent: 0,
      sessions: 14,
      reconnects: 12,
      malformedSent: 12,
      malformedRejected: 12,
      malformedUnanswered: 0,
    },
    ackLatencyMs: { count: 130, p50: 2.5, p99: 31.2, max: 40 },
    errorsByCode: { BAD_CRC: 6, TRUNCATED: 6 },
    closesByCode: { '1007': 12 },
    refusalsByStatus: {},
    malformedByOutcome: { 'bad_crc→BAD_CRC/1007': 6, 'truncated→TRUNCATED/1007': 6 },
    outboxDepth: 0,
    perDevice: [
      {
        id: 'sim-0001',
        state: 'stopped',
        bootId: 0xabc,
        framesSent: 65,
        framesAcked: 60,
        framesReplayed: 5,
        framesDropped: 0,
        reconnects: 6,
        readingsAcked: 850,
        outboxDepth: 0,
      },
    ],
  };

  it('prints the summary table with the numbers people look for', () => {
    const text = summaryTable(summary, { perDevice: true });
    expect(text).toMatch(/acked\s+120\s+1700/);
    expect(text).toMatch(/replayed\s+10/);
    expect(text).toMatch(/reconnects\s+12/);
    expect(text).toContain('p50 2.50  p99 31.2');
    expect(text).toContain('bad_crc→BAD_CRC/1007 6');
    expect(text).toMatch(/sim-0001\s+00000abc\s+65\s+60/);
    expect(text).toContain('01:01');
  });

  it('draws a status line with per-second rates', () => {
    const a = {
      atMs: 0,
      devices: 50,
      connected: 48,
      framesSent: 100,
      framesAcked: 90,
      outboxDepth: 7,
      reconnects: 2,
      framesDropped: 0,
    };
    const b = { ...a, atMs: 2000, framesSent: 200, framesAcked: 190 };
    const line = statusLine('steady', a, b, 65_000);
    expect(line).toBe(
      'sim steady 01:05 · 48/50 connected · sent 50.0/s · acked 50.0/s · outbox 7 · reconnects 2 · dropped 0',
    );
  });
});

it('never writes a token into the tokens module’s error messages', () => {
  const file = join(dir, 'bad.tokens');
  writeFileSync(file, 'sim-0001,esp32hub_secret\nbroken line\n');
  expect(() => readTokensFile(file)).toThrow(/line 2/);
  try {
    readTokensFile(file);
  } catch (err) {
    expect((err as Error).message).not.toContain('esp32hub_secret');
  }
  expect(readFileSync(file, 'utf8')).toContain('broken');
});
