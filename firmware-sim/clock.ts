/**
 * Time for the simulator, injected everywhere (devices, links, scenarios, the fleet), so tests can
 * run a device for simulated hours in milliseconds and get the same frames on every run.
 */

/** An opaque timer handle. */
export type TimerHandle = object;

export interface Clock {
  /** Host time in Unix milliseconds; may be fractional (sub-millisecond latency measurements). */
  now(): number;
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The real clock. `now()` is `performance.timeOrigin + performance.now()`: Unix ms with sub-ms
 * resolution that never steps backwards while the process runs (unlike `Date.now()` under NTP slew).
 * Timers are unref'd so a forgotten device never keeps the process alive.
 */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout(fn, delayMs) {
    const t = setTimeout(fn, Math.max(0, delayMs));
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

interface FakeTimer {
  at: number;
  order: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A manual clock for deterministic tests: nothing happens until `advance()` / `runUntil()`, which
 * fire due timers in (due time, creation order) and set `now()` to each timer's due time first.
 * Timers are kept in a binary heap, so a fleet of thousands of fake devices stays cheap.
 */
export class FakeClock implements Clock {
  private current: number;
  private heap: FakeTimer[] = [];
  private order = 0;

  constructor(startMs = Date.UTC(2025, 0, 15, 6, 0, 0)) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    const timer: FakeTimer = { at: this.current + Math.max(0, delayMs), order: this.order++, fn, cancelled: false };
    this.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as FakeTimer).cancelled = true;
  }

  /** Number of timers still scheduled (cancelled ones excluded). */
  get pending(): number {
    let n = 0;
    for (const t of this.heap) if (!t.cancelled) n++;
    return n;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    this.runUntil(this.current + ms);
  }

  /** Fires timers due at or before `targetMs`, then sets the time to `targetMs`. */
  runUntil(targetMs: number): void {
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > targetMs) break;
      this.pop();
      if (top.cancelled) continue;
      this.current = Math.max(this.current, top.at);
      top.fn();
    }
    this.current = Math.max(this.current, targetMs);
  }

  private less(x: FakeTimer, y: FakeTimer): boolean {
    return x.at < y.at || (x.at === y.at && x.order < y.order);
  }

  private push(t: FakeTimer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as FakeTimer;
      if (!this.less(t, parent)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = t;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop();
    if (!last || h.length === 0) return;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(h[r] as FakeTimer, h[l] as FakeTimer) ? r : l;
      const child = h[c] as FakeTimer;
      if (!this.less(child, last)) break;
      h[i] = child;
      i = c;
    }
    h[i] = last;
  }
}
