/**
 * What an operator sees at the default log level (info), through the real gateway and sessions:
 *   - refused handshakes with code, reason, remote address and path, and never a token (a real
 *     registered token, refused for its subprotocol, then revoked);
 *   - device connect, frames missing (gap), duplicates, COMMAND_UNKNOWN and the disconnect with its
 *     close code;
 *   - a flood of 10,000 refused handshakes gives a handful of lines whose counts add up to 10,000;
 *   - `npm start` on a terminal (a pseudo-terminal from util-linux `script`) logs readable lines.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log/index.ts';
import { freePort, startProcess, tempDir } from '../harness/index.ts';
import { httpProbe, tryFindExecutable, waitForReady } from '../harness/process.ts';
import { startTestHub, TEST_CHANNELS, TestDevice, type TestHub, telemetry } from './ingest-device-client.ts';

type Line = Record<string, unknown> & { msg: string; level: number };

function captureLog() {
  const raw: string[] = [];
  const logger = createLogger('info', { write: (s: string) => raw.push(s) });
  const lines = () => raw.map((s) => JSON.parse(s) as Line);
  return { raw, logger, lines };
}

/** Polls `check` until it returns a value (a condition wait, not a timed assertion). */
async function until<T>(what: string, check: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const HANDSHAKE_REFUSED = /^handshake refused/;

describe('operator log at the default level', () => {
  let h: TestHub;
  const log = captureLog();
  const find = (msg: RegExp, fields: Record<string, unknown> = {}) =>
    log.lines().find((l) => msg.test(l.msg) && Object.entries(fields).every(([k, v]) => l[k] === v));

  beforeAll(async () => {
    h = await startTestHub({ HUB_LOG_LEVEL: 'info' }, { logger: log.logger });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('logs refused handshakes with code, reason, address and path, never the token', async () => {
    const token = await h.addDevice('esp-log-refused');
    // A real token, refused for its subprotocol; the token also rides in the query string.
    const refusal = await TestDevice.refused(`${h.url}?token=${token}`, { token, protocols: ['mqtt'] });
    expect(refusal.status).toBe(400);
    const badProto = await until('the BAD_SUBPROTOCOL line', () =>
      find(HANDSHAKE_REFUSED, { code: 'BAD_SUBPROTOCOL' }),
    );
    expect(badProto).toMatchObject({
      endpoint: 'device',
      code: 'BAD_SUBPROTOCOL',
      status: 400,
      remote: '127.0.0.1',
      path: '/v1/device',
    });
    expect(String(badProto.reason)).toContain('subprotocol');
    expect(badProto.level).toBeGreaterThanOrEqual(30);

    // The same token once revoked: UNAUTHORIZED.
    await h.registry.revoke('esp-log-refused');
    expect((await TestDevice.refused(h.url, { token })).status).toBe(401);
    const unauthorized = await until('the UNAUTHORIZED line', () => find(HANDSHAKE_REFUSED, { code: 'UNAUTHORIZED' }));
    expect(unauthorized).toMatchObject({ endpoint: 'device', status: 401, remote: '127.0.0.1', path: '/v1/device' });

    expect(log.raw.join('\n')).not.toContain(token);
  });

  it('logs a device connecting, missing frames, duplicates, COMMAND_UNKNOWN and its disconnect', async () => {
    const id = 'esp-log-activity';
    const token = await h.addDevice(id);
    const d = await TestDevice.connect(h.url, { token });
    const welcome = await d.hello(id, 7, { uptimeMs: 3_600_000 });
    if (!welcome.descriptorsKnown) d.send({ type: 'descriptors', channels: TEST_CHANNELS });
    const base = Date.now() - 60_000;
    d.send(telemetry(7, 1, base, 1));
    d.send(telemetry(7, 4, base + 3000, 1)); // seq 2 and 3 never arrive
    await d.ackOf(7, 4);
    d.send(telemetry(7, 1, base, 1)); // a replay: a duplicate, acknowledged again
    await d.ackOf(7, 1);
    d.send({ type: 'command_result', commandId: 4242, status: 0, message: 'done' });
    const error = await d.next('error');
    expect(error.fatal).toBe(false);
    expect(await d.close()).toBe(1000);

    const connected = await until('the connect line', () => find(/^device connected/, { deviceId: id }));
    expect(connected).toMatchObject({ bootId: 7, firmwareVersion: 'test-1.0.0' });
    expect(await until('the gap line', () => find(/frames missing/, { deviceId: id }))).toMatchObject({
      missingFrames: 2,
    });
    expect(await until('the duplicate line', () => find(/duplicate/, { deviceId: id }))).toMatchObject({
      bootId: 7,
      seq: 1,
    });
    const unknown = await until('the COMMAND_UNKNOWN line', () => find(/COMMAND_UNKNOWN/, { deviceId: id }));
    expect(unknown.code).toBe('COMMAND_UNKNOWN');
    expect(await until('the disconnect line', () => find(/^device disconnected/, { deviceId: id }))).toMatchObject({
      reason: 'closed',
      closeCode: 1000,
    });
  });

  it('logs a fatal rejection with what was wrong', async () => {
    const id = 'esp-log-mismatch';
    const d = await TestDevice.connect(h.url, { token: await h.addDevice(id) });
    d.send({
      type: 'hello',
      timeSynced: true,
      deviceId: 'esp-someone-else',
      firmwareVersion: 'test-1.0.0',
      maxProtocolVersion: 1,
      bootId: 1,
      resetReason: 1,
      uptimeMs: 1000,
      descriptorHash: 0,
      bufferedFrames: 0,
      droppedFrames: 0,
    });
    expect(await d.closed()).toBe(1008);
    const line = await until('the DEVICE_MISMATCH line', () => find(/DEVICE_MISMATCH/, { deviceId: id }));
    expect(line).toMatchObject({ code: 'DEVICE_MISMATCH', level: 40 });
    expect(String(line.detail)).toContain('esp-someone-else');
  });
});

describe('a flood of refused handshakes', () => {
  it('gives a bounded number of lines whose counts add up to every refusal', async () => {
    const log = captureLog();
    const h = await startTestHub({ HUB_LOG_LEVEL: 'info' }, { logger: log.logger });
    const N = 10_000;
    const token = 'not-a-registered-token-0123456789abcdef0123';
    const request = [
      'GET /v1/device HTTP/1.1',
      `Host: 127.0.0.1:${h.port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Protocol: esp32hub.v1',
      `Authorization: Bearer ${token}`,
      '',
      '',
    ].join('\r\n');
    const refuseOnce = () =>
      new Promise<void>((resolve, reject) => {
        const s = connect(h.port, '127.0.0.1', () => s.end(request));
        s.on('data', () => undefined);
        s.once('error', reject);
        s.once('close', () => resolve());
      });
    try {
      let next = 0;
      const worker = async () => {
        while (next < N) {
          next++;
          await refuseOnce();
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker));
      expect(await h.metricValue('hub_handshakes_rejected_total')).toBe(N);
    } finally {
      await h.stop(); // flushes the pending summaries
    }
    const refused = log.lines().filter((l) => HANDSHAKE_REFUSED.test(l.msg));
    // The first refusal per (code, address) is logged as it happens, the rest are folded into
    // summaries every 10 s and at shutdown.
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(refused.length).toBeLessThanOrEqual(20);
    const total = refused.reduce((n, l) => n + (typeof l.repeated === 'number' ? l.repeated : 1), 0);
    expect(total).toBe(N);
    expect(log.raw.join('\n')).not.toContain(token);
  });
});

const SCRIPT = tryFindExecutable('script');

describe('the log on a terminal', () => {
  it.skipIf(!SCRIPT)(
    'is human-readable by default (HUB_LOG_FORMAT=auto); skipped without util-linux script',
    async () => {
      const dir = await tempDir('pretty-tty');
      const port = await freePort();
      const command = `${process.execPath} --import tsx server/main.ts`;
      const hub = startProcess({
        name: 'hub-tty',
        command: SCRIPT as string,
        // `script` runs the hub on a pseudo-terminal and copies what it prints to our log file.
        args: ['-qefc', command, '/dev/null'],
        cwd: join(import.meta.dirname, '..', '..'),
        logFile: join(dir.path, 'hub.log'),
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          ENV_FILE: '/dev/null', // a developer's own .env stays out of the run
          TERM: 'dumb',
          NO_COLOR: '1',
          HUB_HOST: '127.0.0.1',
          HUB_PORT: String(port),
          HUB_DATA_DIR: dir.path,
        },
      });
      try {
        await waitForReady(hub, () => httpProbe(`http://127.0.0.1:${port}/readyz`), { what: 'GET /readyz' });
        await new Promise<void>((resolve, reject) => {
          const s = connect(port, '127.0.0.1', () =>
            s.end('GET /v1/device HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
          );
          s.on('data', () => undefined);
          s.once('error', reject);
          s.once('close', () => resolve());
        });
        const line = await until('the refusal line', () =>
          readFileSync(hub.logFile, 'utf8')
            .split(/\r?\n/)
            .find((l) => l.includes('handshake refused')),
        );
        expect(line).toMatch(
          /^\d\d:\d\d:\d\d\.\d{3} WARN {2}\[gateway\] handshake refused: BAD_SUBPROTOCOL {2}endpoint=device code=BAD_SUBPROTOCOL status=400 /,
        );
        expect(line).toContain('remote=127.0.0.1 path=/v1/device');
        expect(readFileSync(hub.logFile, 'utf8')).not.toContain('{"level"');
      } finally {
        await hub.stop();
        await dir.remove();
      }
    },
  );
});
