/** Helpers for benchmarks that run their parts (hub, load, clients) as child processes. */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { encodeFrame } from '../server/codec/index.ts';

/**
 * The next IPC message of `type` from `child`. Rejects when the child exits first or nothing comes
 * within `timeoutMs`, so a crashed worker fails the benchmark instead of hanging it.
 */
export function nextMessage<M extends { type: string }>(
  child: ChildProcess,
  type: M['type'],
  timeoutMs = 120_000,
): Promise<M> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => finish(new Error(`no '${type}' message from worker within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (m: M) => {
      if (m.type === type) finish(null, m);
    };
    const onExit = (code: number | null) => finish(new Error(`worker exited (${code}) before '${type}'`));
    function finish(err: Error | null, m?: M) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m as M);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** A bench device's HELLO [PROTO-3.1]: synced clock, firmware "bench", nothing buffered or dropped. */
export function benchHello(deviceId: string, bootId: number, descriptorHash: number, uptimeMs: number): Uint8Array {
  return encodeFrame({
    type: 'hello',
    timeSynced: true,
    deviceId,
    firmwareVersion: 'bench',
    maxProtocolVersion: 1,
    bootId,
    resetReason: 1,
    uptimeMs,
    descriptorHash,
    bufferedFrames: 0,
    droppedFrames: 0,
  });
}

/** Resolves once `url` answers 2xx; throws after 60 s. */
export async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (
      await fetch(url).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await sleep(100);
  }
  throw new Error(`${url} never became ready`);
}

/** A free TCP port on loopback (the OS picks it; closed again before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The sum of every sample of `metric` in a Prometheus text exposition (those whose labels contain `labels`). */
export function metricValue(text: string, metric: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const m = /^(\w+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== metric) continue;
    if (labels && !(m[2] ?? '').includes(labels)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Paced load: calls `sendOne` so that `rate` calls per second are due from the start, in 10 ms ticks
 * (each tick sends what is due), for `seconds`. Resolves with the calls made and the time it took.
 */
export function paced(rate: number, seconds: number, sendOne: () => void): Promise<{ sent: number; seconds: number }> {
  let sent = 0;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const tick = () => {
      const elapsed = (performance.now() - t0) / 1000;
      const due = Math.floor(rate * Math.min(elapsed, seconds)) - sent;
      for (let i = 0; i < due; i++) {
        sendOne();
        sent++;
      }
      if (elapsed >= seconds) resolve({ sent, seconds: (performance.now() - t0) / 1000 });
      else setTimeout(tick, 10);
    };
    tick();
  });
}

export interface MemoryPeak {
  rss: number;
  anon: number;
}

/** Samples a process's VmRSS and RssAnon every 50 ms; `take` returns the peaks since the last call. */
export function sampleMemory(pid: number): { take(): MemoryPeak; stop(): void } {
  let peak: MemoryPeak = { rss: 0, anon: 0 };
  const read = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
      peak = { rss: Math.max(peak.rss, kb('VmRSS')), anon: Math.max(peak.anon, kb('RssAnon')) };
    } catch {
      // The process ended.
    }
  };
  const timer = setInterval(read, 50);
  return {
    take() {
      read();
      const p = peak;
      peak = { rss: 0, anon: 0 };
      return p;
    },
    stop() {
      clearInterval(timer);
    },
  };
}
