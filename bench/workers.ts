/** Helpers for benchmarks that run their parts (hub, load, clients) as child processes. */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
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

/**
 * A process's parent, CPU (utime + stime, all threads; stime alone) and its reaped children's CPU (cutime + cstime)
 * from /proc/<pid>/stat; null when gone.
 */
export function procStat(
  pid: number,
): { ppid: number; cpuSeconds: number; systemSeconds: number; reapedSeconds: number } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = 100; // USER_HZ on Linux
  return {
    ppid: Number(f[1]),
    cpuSeconds: (Number(f[11]) + Number(f[12])) / ticks,
    systemSeconds: Number(f[12]) / ticks,
    reapedSeconds: (Number(f[13]) + Number(f[14])) / ticks,
  };
}

/** The processes whose command line contains `text`, and their children (nginx's workers, say). */
export function processTree(text: string): number[] {
  const matched = new Set<number>();
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)) matched.add(pid);
    } catch {
      continue; // ended meanwhile
    }
    const st = procStat(pid);
    if (st) parents.set(pid, st.ppid);
  }
  for (const [pid, ppid] of parents) if (matched.has(ppid)) matched.add(pid);
  return [...matched];
}

/** The machine's busy and total CPU time since boot (s, all cores) from /proc/stat; steal counts as busy. */
function machineCpu(): { busy: number; total: number } {
  const f = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy: busy / 100, total: (busy + idle + iowait) / 100 };
}

/**
 * Share of all cores busy (%) from which a benchmark's figures measure the machine more than the part
 * under test: with two cores 85 % busy, a process that becomes runnable finds both taken most of the
 * time (about 3 times in 4 for random arrivals) and waits.
 */
export const SATURATED_PERCENT = 85;

/** Where the machine's CPU went over an interval: how busy all its cores were, and each named part's share. */
export interface CpuShare {
  /** Busy time of all cores over the interval (%, 100 = every core busy all the time). */
  machinePercent: number;
  cores: number;
  /** Length of the interval (s). */
  wallSeconds: number;
  /** Each part's CPU over the interval, % of one core (all its threads). */
  parts: Record<string, number>;
  /** Each part's CPU time over the interval (s). */
  seconds: Record<string, number>;
}

/**
 * Measures, from now until `stop()`, the machine's CPU use and that of each named part (a set of
 * processes). The benchmarks' load generators share this machine with the hub: a row measured while
 * the cores were all busy reports the machine as much as the hub, and this says so.
 */
export function cpuMeter(parts: Record<string, number[]>): { stop(): CpuShare } {
  const partSeconds = () =>
    Object.fromEntries(
      Object.entries(parts).map(([name, pids]) => [
        name,
        pids.reduce((sum, pid) => sum + (procStat(pid)?.cpuSeconds ?? 0), 0),
      ]),
    );
  const machine0 = machineCpu();
  const parts0 = partSeconds();
  return {
    stop() {
      const machine1 = machineCpu();
      const parts1 = partSeconds();
      const total = machine1.total - machine0.total;
      const cores = cpus().length;
      const wall = total / cores;
      const seconds = Object.fromEntries(Object.keys(parts).map((n) => [n, (parts1[n] ?? 0) - (parts0[n] ?? 0)]));
      return {
        machinePercent: total > 0 ? (100 * (machine1.busy - machine0.busy)) / total : 0,
        cores,
        wallSeconds: wall,
        parts: Object.fromEntries(Object.entries(seconds).map(([n, s]) => [n, wall > 0 ? (100 * s) / wall : 0])),
        seconds,
      };
    },
  };
}

/** "machine 97 % of 2 cores busy: hub 85 %, devices 55 % of a core" for a row's note. */
export function describeCpuShare(share: CpuShare): string {
  const parts = Object.entries(share.parts)
    .map(([n, p]) => `${n} ${p.toFixed(0)} %`)
    .join(', ');
  return `machine ${share.machinePercent.toFixed(0)} % of ${share.cores} cores busy; ${parts} of a core`;
}
