/**
 * Rate-limited log lines (server/log/rate-limit.ts) and the device activity log built on them
 * (server/log/device-activity.ts): bounded lines under a flood, counts that add up, listeners that
 * never throw into the emitter.
 */
import { describe, expect, it } from 'vitest';
import { HubEventBus } from '../../server/events.ts';
import { logDeviceActivity } from '../../server/log/device-activity.ts';
import { createLogger } from '../../server/log/index.ts';
import { createLogLimiter } from '../../server/log/rate-limit.ts';

type Line = Record<string, unknown> & { msg: string; level: number };

function capture(level = 'info') {
  const lines: Line[] = [];
  const logger = createLogger(level, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

/** Occurrences a set of lines accounts for: 1 per first line, `repeated` per summary. */
const occurrences = (lines: Line[]) => lines.reduce((n, l) => n + (typeof l.repeated === 'number' ? l.repeated : 1), 0);

describe('log limiter', () => {
  it('logs the first occurrence at once and the rest of the window as one summary', () => {
    const { logger, lines } = capture();
    const limiter = createLogLimiter({ logger, timer: false });
    for (let i = 0; i < 10_000; i++) {
      limiter.hit('handshake', 'UNAUTHORIZED|10.0.0.7', {
        level: 'warn',
        msg: 'handshake refused: UNAUTHORIZED',
        fields: { code: 'UNAUTHORIZED', remote: '10.0.0.7' },
      });
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ code: 'UNAUTHORIZED', remote: '10.0.0.7', level: 40 });
    limiter.flush();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ code: 'UNAUTHORIZED', repeated: 9_999, windowSec: 10, level: 40 });
    expect(lines[1]?.msg).toBe('handshake refused: UNAUTHORIZED (9999 more in the last 10 s)');
    expect(occurrences(lines)).toBe(10_000);
  });

  it('forgets a key after a quiet window, so its next occurrence is logged at once', () => {
    const { logger, lines } = capture();
    const limiter = createLogLimiter({ logger, timer: false });
    const hit = () => limiter.hit('c', 'k', { level: 'info', msg: 'm', fields: {} });
    hit();
    limiter.flush(); // nothing more happened: no summary
    expect(lines).toHaveLength(1);
    hit();
    expect(lines).toHaveLength(2);
  });

  it('folds keys beyond maxKeys into one line per window, with how many sources', () => {
    const { logger, lines } = capture();
    const limiter = createLogLimiter({ logger, timer: false, maxKeys: 5 });
    for (let i = 0; i < 10_000; i++) {
      limiter.hit('handshake', `addr-${i}`, { level: 'info', msg: 'handshake refused: UNAUTHORIZED', fields: { i } });
    }
    expect(lines).toHaveLength(5);
    limiter.flush();
    expect(lines).toHaveLength(6);
    expect(lines[5]).toMatchObject({ category: 'handshake', repeated: 9_995, sources: 9_995 });
    expect(occurrences(lines)).toBe(10_000);
  });

  it('adds up summed fields and keeps the highest level of the window', () => {
    const { logger, lines } = capture();
    const limiter = createLogLimiter({ logger, timer: false });
    limiter.hit('gap', 'd', { level: 'info', msg: 'gap', fields: { missingFrames: 2 }, sums: { missingFrames: 2 } });
    limiter.hit('gap', 'd', { level: 'warn', msg: 'gap', fields: { missingFrames: 3 }, sums: { missingFrames: 3 } });
    limiter.hit('gap', 'd', { level: 'info', msg: 'gap', fields: { missingFrames: 4 }, sums: { missingFrames: 4 } });
    limiter.close();
    expect(lines.map((l) => [l.level, l.missingFrames, l.repeated])).toEqual([
      [30, 2, undefined],
      [40, 7, 2],
    ]);
    limiter.hit('gap', 'd', { level: 'info', msg: 'gap', fields: {} }); // closed: ignored
    expect(lines).toHaveLength(2);
  });
});

describe('device activity log', () => {
  it('logs every kind of device event with its fields, once per device and window', () => {
    const { logger, lines } = capture();
    const bus = new HubEventBus();
    const activity = logDeviceActivity({ bus, logger, timer: false });
    const online = {
      deviceId: 'esp-1',
      firmwareVersion: '1.2.3',
      bootId: 9,
      timeSynced: true,
      bufferedFrames: 4,
      droppedFrames: 0,
      atMs: 0,
    };
    bus.emit('device:online', online);
    bus.emit('device:gap', 'esp-1', 3);
    bus.emit('device:gap', 'esp-1', 5);
    for (let seq = 1; seq <= 1000; seq++) bus.emit('device:duplicate', 'esp-1', 9, seq);
    bus.emit('device:boot-reused', 'esp-1', 9);
    bus.emit('device:rejected', 'esp-1', 'COMMAND_UNKNOWN');
    bus.emit('device:rejected', 'esp-1', 'BAD_CRC', 'CRC mismatch');
    bus.emit('device:offline', { deviceId: 'esp-1', reason: 'connection_lost', closeCode: 1006, atMs: 0 });
    expect(lines.map((l) => l.msg)).toEqual([
      'device connected',
      'frames missing: the device lost them before they reached the hub',
      'duplicate frames: already stored, acknowledged again, not stored twice',
      'the device reused a boot id the hub holds frames of; its new frames are stored as a new boot',
      'frame rejected: COMMAND_UNKNOWN',
      'frame rejected: BAD_CRC',
      'device disconnected',
    ]);
    expect(lines[0]).toMatchObject({ deviceId: 'esp-1', bootId: 9, firmwareVersion: '1.2.3', level: 30 });
    expect(lines[1]).toMatchObject({ deviceId: 'esp-1', missingFrames: 3, level: 40 });
    expect(lines[2]).toMatchObject({ deviceId: 'esp-1', bootId: 9, seq: 1 });
    expect(lines[4]).toMatchObject({ code: 'COMMAND_UNKNOWN', level: 30 });
    expect(lines[5]).toMatchObject({ code: 'BAD_CRC', detail: 'CRC mismatch', level: 40 });
    expect(lines[6]).toMatchObject({ reason: 'connection_lost', closeCode: 1006 });
    activity.flush();
    const summaries = lines.slice(7);
    expect(summaries.map((l) => [l.msg.split(' (')[0], l.repeated, l.missingFrames])).toEqual([
      ['frames missing: the device lost them before they reached the hub', 1, 5],
      ['duplicate frames: already stored, acknowledged again, not stored twice', 999, undefined],
    ]);
    activity.close();
    bus.emit('device:gap', 'esp-1', 1);
    expect(lines).toHaveLength(9);
    // A board that dropped frames from its outbox is a warning.
    const again = logDeviceActivity({ bus, logger, timer: false });
    bus.emit('device:online', { ...online, deviceId: 'esp-2', droppedFrames: 12 });
    expect(lines[9]).toMatchObject({ deviceId: 'esp-2', droppedFrames: 12, level: 40 });
    again.close();
  });

  it('a reconnect storm of 5,000 devices gives a bounded number of lines that add up', () => {
    const { logger, lines } = capture();
    const bus = new HubEventBus();
    const activity = logDeviceActivity({ bus, logger, timer: false, maxDevices: 20 });
    for (let i = 0; i < 5000; i++) {
      bus.emit('device:online', {
        deviceId: `esp-${i}`,
        firmwareVersion: '1',
        bootId: 1,
        timeSynced: true,
        bufferedFrames: 0,
        droppedFrames: 0,
        atMs: 0,
      });
    }
    activity.close();
    expect(lines.length).toBe(21);
    expect(occurrences(lines)).toBe(5000);
  });

  it('never throws into the emitter when the log destination fails', () => {
    const bus = new HubEventBus();
    const logger = createLogger('info', {
      write: () => {
        throw new Error('disk gone');
      },
    });
    const activity = logDeviceActivity({ bus, logger, timer: false });
    let reported = 0;
    bus.onListenerError = () => reported++; // the bus's own safety net must not be needed
    let after = 0;
    bus.on('device:gap', () => after++);
    expect(() => bus.emit('device:gap', 'esp-1', 2)).not.toThrow();
    expect(after).toBe(1);
    expect(reported).toBe(0);
    activity.close();
  });
});
