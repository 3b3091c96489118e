// Alert messages in the live fan-out: every client with a subscription gets them whatever devices it
// covers; a client without one gets none; a client that fell behind gets the latest state of each
// alert when it drains (not every transition it missed).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AlertEvent } from '../../server/alerts/types.ts';
import { LiveFanout, type LiveSocket } from '../../server/live/fanout.ts';
import { LiveState } from '../../server/live/state.ts';
import { createLogger } from '../../server/log/index.ts';
import { createMetrics } from '../../server/metrics/index.ts';

class Socket implements LiveSocket {
  bufferedAmount = 0;
  sent: Buffer[] = [];
  send(data: Buffer): void {
    this.sent.push(data);
  }
  terminate(): void {}
  close(): void {}
  alerts(): { device: string; rule: string; state: string; seq: number }[] {
    return this.sent.map((b) => JSON.parse(b.toString('utf8'))).filter((m) => m.type === 'alert');
  }
}

const HW = 10_000;
let fanout: LiveFanout;

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
  fanout = new LiveFanout({
    state: new LiveState(),
    metrics: createMetrics(),
    logger: createLogger('silent'),
    tickMs: 50,
    highWaterBytes: HW,
    drainTimeoutMs: 60_000,
    maxSubscriptions: 3,
  });
  fanout.start();
});

afterEach(() => {
  fanout.stop();
  vi.useRealTimers();
});

function client(subs: object[]): Socket {
  const socket = new Socket();
  const c = fanout.addClient(socket, 'viewer');
  for (const s of subs) fanout.receive(c, JSON.stringify({ type: 'subscribe', ...s }));
  return socket;
}

let seq = 0;
function alert(device: string, state: AlertEvent['state'], rule = 'offline'): AlertEvent & { type: 'alert' } {
  return {
    type: 'alert',
    id: `${rule}/${device}/1`,
    rule,
    kind: 'offline',
    device,
    state,
    severity: 'warning',
    summary: 's',
    firingSinceMs: 1,
    atMs: 1,
    seq: ++seq,
  };
}

describe('alert messages on the live endpoint', () => {
  it('reach every client with a subscription, whatever it covers; not a client without one', () => {
    const fleet = client([{ sub: 'f' }]);
    const other = client([{ sub: 'd', device: 'esp-other' }]);
    const none = client([]);
    fanout.alert(alert('esp-1', 'firing'));
    fanout.flush();
    expect(fleet.alerts().map((a) => a.device)).toEqual(['esp-1']);
    expect(other.alerts().map((a) => a.device)).toEqual(['esp-1']);
    expect(none.alerts()).toEqual([]);
  });

  it('a client behind gets the latest state of each alert when it drains', () => {
    const slow = client([{ sub: 'f' }]);
    slow.bufferedAmount = HW + 1;
    fanout.alert(alert('esp-1', 'firing'));
    fanout.flush();
    fanout.alert(alert('esp-1', 'resolved'));
    fanout.alert(alert('esp-2', 'firing'));
    fanout.alert(alert('esp-1', 'firing', 'hot'));
    fanout.flush();
    expect(slow.alerts()).toEqual([]);
    slow.bufferedAmount = 0;
    vi.advanceTimersByTime(100); // the drain check
    expect(slow.alerts().map((a) => `${a.rule}:${a.device}:${a.state}`)).toEqual([
      'offline:esp-1:resolved',
      'offline:esp-2:firing',
      'hot:esp-1:firing',
    ]);
  });
});
