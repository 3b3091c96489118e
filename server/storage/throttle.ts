/**
 * Rate-limits a summary log line: `poke()` after each event; `emit` runs at once the first time, then
 * at most once per `intervalMs` (a timer runs it when the interval ends), and once more at `close()`.
 * `emit` says what gathered since its last run, and does nothing when nothing did.
 */
export interface Throttle {
  poke(): void;
  close(): void;
}

export function throttle(emit: () => void, intervalMs: number, now: () => number = Date.now): Throttle {
  let lastAtMs = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | null = null;
  const run = () => {
    lastAtMs = now();
    emit();
  };
  return {
    poke() {
      const waitMs = lastAtMs + intervalMs - now();
      if (waitMs <= 0) run();
      else if (!timer) {
        timer = setTimeout(() => {
          timer = null;
          run();
        }, waitMs);
        timer.unref();
      }
    },
    close() {
      if (timer) clearTimeout(timer);
      timer = null;
      emit();
    },
  };
}
