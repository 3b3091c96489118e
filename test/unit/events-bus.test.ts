// HubEventBus.emit, which runs per frame on the ingest path without allocating: every listener gets the
// arguments as emitted, runs isolated (a throw is reported, the others still run), and an emit runs the
// listeners present when it began, whatever they add or remove meanwhile (once listeners and nested
// emits included). Deterministic: plain calls, no timers.
import { describe, expect, it } from 'vitest';
import { HubEventBus } from '../../server/events.ts';

describe('HubEventBus.emit', () => {
  it('passes each listener exactly the arguments emitted; says whether anyone listened', () => {
    const bus = new HubEventBus();
    const seen: unknown[][] = [];
    expect(bus.emit('device:gap', 'dev-a', 3)).toBe(false);
    bus.on('device:gap', (...args) => seen.push(args));
    bus.on('device:rejected', (...args) => seen.push(args));
    bus.on('device:rejected', (...args) => seen.push(['second', ...args]));
    bus.on('device:duplicate', (...args) => seen.push(args));
    expect(bus.emit('device:gap', 'dev-a', 3)).toBe(true);
    expect(bus.emit('device:rejected', 'dev-a', 'BAD_FRAME')).toBe(true);
    expect(bus.emit('device:rejected', 'dev-a', 'BAD_FRAME', 'too short')).toBe(true);
    expect(bus.emit('device:duplicate', 'dev-a', 7, 42)).toBe(true);
    expect(seen).toEqual([
      ['dev-a', 3],
      ['dev-a', 'BAD_FRAME'],
      ['second', 'dev-a', 'BAD_FRAME'],
      ['dev-a', 'BAD_FRAME', 'too short'],
      ['second', 'dev-a', 'BAD_FRAME', 'too short'],
      ['dev-a', 7, 42],
    ]);
  });

  it('a throwing listener is reported with its event and the listeners after it still run', () => {
    const bus = new HubEventBus();
    const reported: [string, string][] = [];
    bus.onListenerError = (err, event) => reported.push([(err as Error).message, event]);
    const ran: string[] = [];
    bus.on('device:descriptors', () => {
      throw new Error('first');
    });
    bus.on('device:descriptors', (id) => ran.push(id));
    expect(bus.emit('device:descriptors', 'dev-a')).toBe(true);
    expect(ran).toEqual(['dev-a']);
    expect(reported).toEqual([['first', 'device:descriptors']]);

    // A lone listener (stored without an array) is isolated too, and so is a throwing reporter.
    bus.on('device:revoked', () => {
      throw new Error('lone');
    });
    bus.onListenerError = () => {
      throw new Error('reporter');
    };
    expect(() => bus.emit('device:revoked', 'dev-a')).not.toThrow();
    expect(() => bus.emit('device:descriptors', 'dev-b')).not.toThrow();
    expect(ran).toEqual(['dev-a', 'dev-b']);
  });

  it('an emit runs the listeners present when it began: added ones wait, removed ones still run', () => {
    const bus = new HubEventBus();
    const ran: string[] = [];
    const late = () => ran.push('late');
    const removed = () => ran.push('removed');
    let changed = false;
    bus.on('device:revoked', () => {
      ran.push('first');
      if (changed) return;
      changed = true;
      bus.on('device:revoked', late);
      bus.off('device:revoked', removed);
    });
    bus.on('device:revoked', removed);
    bus.on('device:revoked', () => ran.push('last'));
    bus.emit('device:revoked', 'dev-a');
    expect(ran).toEqual(['first', 'removed', 'last']);
    ran.length = 0;
    bus.emit('device:revoked', 'dev-a');
    expect(ran).toEqual(['first', 'last', 'late']);

    // With a lone listener too: one it adds waits for the next emit.
    const lone = new HubEventBus();
    const order: string[] = [];
    lone.on('device:descriptors', () => {
      order.push('lone');
      if (lone.listenerCount('device:descriptors') === 1) lone.on('device:descriptors', () => order.push('added'));
    });
    lone.emit('device:descriptors', 'dev-a');
    expect(order).toEqual(['lone']);
    lone.emit('device:descriptors', 'dev-a');
    expect(order).toEqual(['lone', 'lone', 'added']);
  });

  it('once listeners run once and the listeners after them are not skipped', () => {
    const bus = new HubEventBus();
    const ran: string[] = [];
    bus.once('device:descriptors', () => ran.push('once-1'));
    bus.once('device:descriptors', () => ran.push('once-2'));
    bus.on('device:descriptors', () => ran.push('always'));
    bus.emit('device:descriptors', 'dev-a');
    bus.emit('device:descriptors', 'dev-a');
    expect(ran).toEqual(['once-1', 'once-2', 'always', 'always']);
    expect(bus.listenerCount('device:descriptors')).toBe(1);
  });

  it('a listener that emits (the same event or another) does not disturb the emit that called it', () => {
    const bus = new HubEventBus();
    const ran: string[] = [];
    let depth = 0;
    bus.on('device:gap', (id, n) => {
      ran.push(`gap-a ${id} ${n}`);
      if (n > 0) {
        depth++;
        bus.emit('device:gap', id, n - 1);
        bus.emit('device:descriptors', id);
        depth--;
      }
    });
    bus.on('device:gap', (id, n) => ran.push(`gap-b ${id} ${n}`));
    bus.on('device:gap', (id, n) => ran.push(`gap-c ${id} ${n}`));
    bus.on('device:descriptors', (id) => ran.push(`desc-1 ${id} depth ${depth}`));
    bus.on('device:descriptors', (id) => ran.push(`desc-2 ${id} depth ${depth}`));
    bus.emit('device:gap', 'dev-a', 2);
    expect(ran).toEqual([
      'gap-a dev-a 2',
      'gap-a dev-a 1',
      'gap-a dev-a 0',
      'gap-b dev-a 0',
      'gap-c dev-a 0',
      'desc-1 dev-a depth 2',
      'desc-2 dev-a depth 2',
      'gap-b dev-a 1',
      'gap-c dev-a 1',
      'desc-1 dev-a depth 1',
      'desc-2 dev-a depth 1',
      'gap-b dev-a 2',
      'gap-c dev-a 2',
    ]);
  });
});
