/** Command requests and the bounded tracking table [PROTO-3.6, PROTO-3.7]. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ValueType } from '../../server/codec/index.ts';
import { HubEventBus } from '../../server/events.ts';
import { createMetrics } from '../../server/metrics/index.ts';
import { createCommandTracker, parseCommandRequest } from '../../server/pipeline/commands.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('parseCommandRequest', () => {
  it('types the minimum command set and infers others', () => {
    expect(parseCommandRequest({ name: 'set_sample_interval', args: { interval_ms: 5000 } })).toEqual({
      name: 'set_sample_interval',
      args: [{ key: 'interval_ms', valueType: ValueType.U32, value: 5000 }],
    });
    expect(parseCommandRequest({ name: 'reboot' })).toEqual({ name: 'reboot', args: [] });
    expect(parseCommandRequest({ name: 'custom', args: { a: -3, b: 1.5, c: true, d: 'x' } }).args).toEqual([
      { key: 'a', valueType: ValueType.I32, value: -3 },
      { key: 'b', valueType: ValueType.F32, value: 1.5 },
      { key: 'c', valueType: ValueType.BOOL, value: true },
      { key: 'd', valueType: ValueType.STRING, value: 'x' },
    ]);
  });
  it('rejects bad requests with BAD_REQUEST', () => {
    for (const bad of [
      null,
      [],
      { name: 'Bad Name' },
      { name: 'set_sample_interval', args: { interval_ms: 5 } },
      { name: 'set_sample_interval', args: { interval_ms: 1000, extra: 1 } },
      { name: 'identify', args: { duration_ms: -1 } },
      { name: 'x', args: { 'Bad-Key': 1 } },
      { name: 'x', args: { a: {} } },
    ]) {
      expect(() => parseCommandRequest(bad), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: 'BAD_REQUEST' }),
      );
    }
  });
});

describe('command tracker', () => {
  const make = (maxTracked = 3) => {
    const bus = new HubEventBus();
    const updates: string[] = [];
    bus.on('command:update', (u) => updates.push(`${u.commandId}:${u.state}`));
    const t = createCommandTracker({ metrics: createMetrics(), bus, now: Date.now, timeoutMs: 1000, maxTracked });
    return { t, updates };
  };

  it('tracks sent → accepted → done and emits updates', () => {
    const { t, updates } = make();
    const rec = t.record('dev', 7, 'identify', []);
    expect(t.accepted('dev', 7)).toBe(true);
    expect(t.result('dev', 7, 0, 'ok')).toBe(true);
    expect(t.get('dev', 7)).toMatchObject({ state: 'done', status: 0, message: 'ok' });
    expect(updates).toEqual(['7:sent', '7:accepted', '7:done']);
    expect(rec.commandId).toBe(7);
    expect(t.accepted('dev', 8)).toBe(false);
    expect(t.result('other', 7, 0, '')).toBe(false);
    t.close();
  });

  it('marks a non-zero status failed and times out silent commands', () => {
    vi.useFakeTimers();
    const { t } = make();
    t.record('dev', 1, 'reboot', []);
    t.record('dev', 2, 'identify', []);
    t.result('dev', 1, 2, 'unsupported');
    vi.advanceTimersByTime(1001);
    expect(t.get('dev', 1)?.state).toBe('failed');
    expect(t.get('dev', 2)?.state).toBe('timeout');
    t.close();
  });

  it('stays bounded, dropping finished commands first', () => {
    const { t } = make(3);
    t.record('dev', 1, 'a', []);
    t.record('dev', 2, 'b', []);
    t.result('dev', 2, 0, '');
    t.record('dev', 3, 'c', []);
    t.record('dev', 4, 'd', []);
    expect(t.size()).toBe(3);
    expect(t.get('dev', 2)).toBeUndefined();
    expect(t.get('dev', 1)).toBeDefined();
    t.close();
  });

  it('allocates non-zero ids that do not repeat', () => {
    const { t } = make();
    const ids = new Set(Array.from({ length: 1000 }, () => t.nextId()));
    expect(ids.size).toBe(1000);
    expect(ids.has(0)).toBe(false);
    t.close();
  });
});
