/**
 * Scenarios: how a simulated fleet misbehaves. Each one adjusts device options before the boards
 * start (`configure`) and/or drives events on a running board (`attach`), using the board's clock and
 * a random stream forked from its seed, so a scenario run is as reproducible as a steady one.
 */
import { ResetReason } from '../server/codec/index.ts';
import type { Clock, TimerHandle } from './clock.ts';
import { type DeviceOptions, MALFORMED_KINDS, type MalformedKind, type SimDevice } from './device.ts';
import { type Connector, slowLink } from './link.ts';
import type { Rng } from './rng.ts';

export const SCENARIO_NAMES = [
  'steady',
  'burst',
  'flaky-wifi',
  'clock-skew',
  'slow-link',
  'malformed',
  'reboot-storm',
  'power-cut',
] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export interface ScenarioContext {
  clock: Clock;
  /** This device's scenario stream. */
  rng: Rng;
  fleetSize: number;
}

export interface Scenario {
  name: ScenarioName;
  summary: string;
  /** Per-device option changes, applied before the device is built. */
  configure?(index: number, rng: Rng, base: { clock: Clock; connector: Connector }): Partial<DeviceOptions>;
  /** Starts the scenario's events on a device; returns a function that stops them. */
  attach?(device: SimDevice, ctx: ScenarioContext): () => void;
}

/** Tunables; the defaults suit demos, tests shorten them. */
export interface ScenarioParams {
  /** flaky-wifi: mean connected time between drops (ms, exponential). */
  flakyMeanUpMs: number;
  /** flaky-wifi: outage length range (ms). */
  flakyOutageMs: [number, number];
  /** flaky-wifi: share of drops that leave the hub's socket half-open (caught by its heartbeat). */
  flakySilentShare: number;
  /** burst: fleet-wide burst period and length (ms), sample-rate multiplier. */
  burstEveryMs: number;
  burstLengthMs: number;
  burstFactor: number;
  /** reboot-storm: mean time between crashes per board (ms, exponential). */
  rebootMeanMs: number;
  /** power-cut: mean time between power cuts per board (ms, exponential), and how long power stays off (ms range). */
  powerCutMeanMs: number;
  powerOffMs: [number, number];
  /** malformed: delay after each WELCOME before the broken frame (ms range). */
  malformedDelayMs: [number, number];
  /** malformed: kinds to cycle through (default: all). */
  malformedKinds: MalformedKind[];
  /** slow-link: one-way latency range (ms) and uplink bandwidth range (bytes/s). */
  slowLatencyMs: [number, number];
  slowBytesPerSec: [number, number];
}

export const DEFAULT_SCENARIO_PARAMS: ScenarioParams = {
  flakyMeanUpMs: 20_000,
  flakyOutageMs: [500, 8000],
  flakySilentShare: 0.3,
  burstEveryMs: 30_000,
  burstLengthMs: 5000,
  burstFactor: 10,
  rebootMeanMs: 20_000,
  powerCutMeanMs: 20_000,
  powerOffMs: [200, 2000],
  malformedDelayMs: [1000, 4000],
  malformedKinds: Object.keys(MALFORMED_KINDS) as MalformedKind[],
  slowLatencyMs: [150, 800],
  slowBytesPerSec: [1500, 8000],
};

/** Runs `fn` after `delay()` ms, again and again, until the returned function is called. */
function every(clock: Clock, delay: () => number, fn: () => void): () => void {
  let timer: TimerHandle | null = null;
  let stopped = false;
  const arm = () => {
    timer = clock.setTimeout(() => {
      if (stopped) return;
      fn();
      arm();
    }, delay());
  };
  arm();
  return () => {
    stopped = true;
    if (timer) clock.clearTimeout(timer);
  };
}

export function createScenario(name: ScenarioName, overrides: Partial<ScenarioParams> = {}): Scenario {
  const p: ScenarioParams = { ...DEFAULT_SCENARIO_PARAMS, ...overrides };
  switch (name) {
    case 'steady':
      return { name, summary: 'every board samples and sends at the configured rate over a good link' };

    case 'burst':
      return {
        name,
        summary: `fleet-wide bursts: every ${p.burstEveryMs / 1000} s all boards sample ${p.burstFactor}× faster for ${p.burstLengthMs / 1000} s (frames up to 1 KiB)`,
        attach(device, { clock }) {
          let normal: { interval: number; ticks: number } | null = null;
          let endTimer: TimerHandle | null = null;
          // Aligned to the period on the host clock, so the whole fleet bursts together.
          const untilNext = () => p.burstEveryMs - (clock.now() % p.burstEveryMs);
          const stop = every(clock, untilNext, () => {
            if (normal) return;
            normal = { interval: device.currentSampleIntervalMs, ticks: device.currentTicksPerFrame };
            device.setSampling(Math.max(10, normal.interval / p.burstFactor), normal.ticks * p.burstFactor);
            endTimer = clock.setTimeout(() => {
              endTimer = null;
              if (normal) device.setSampling(normal.interval, normal.ticks);
              normal = null;
            }, p.burstLengthMs);
          });
          return () => {
            stop();
            if (endTimer) clock.clearTimeout(endTimer);
            if (normal) device.setSampling(normal.interval, normal.ticks);
          };
        },
      };

    case 'flaky-wifi':
      return {
        name,
        summary: `random Wi-Fi drops (mean every ${p.flakyMeanUpMs / 1000} s, ${p.flakyOutageMs[0] / 1000}–${p.flakyOutageMs[1] / 1000} s outages, ${Math.round(p.flakySilentShare * 100)} % half-open)`,
        attach(device, { clock, rng }) {
          return every(
            clock,
            () => rng.exponential(p.flakyMeanUpMs),
            () => {
              const outage = rng.uniform(p.flakyOutageMs[0], p.flakyOutageMs[1]);
              const silent = rng.chance(p.flakySilentShare);
              if (device.state === 'online' || device.state === 'handshake') device.dropWifi(outage, silent);
            },
          );
        },
      };

    case 'clock-skew':
      return {
        name,
        summary:
          'wrong clocks: a third boot with an RTC minutes to hours ahead, a third with one hours behind, a third drift after syncing',
        configure(index, rng) {
          switch (index % 3) {
            case 0:
              return { clockFault: { rtcOffsetMs: rng.uniform(10 * 60_000, 3 * 3_600_000), syncFromWelcome: false } };
            case 1:
              return { clockFault: { rtcOffsetMs: -rng.uniform(3_600_000, 48 * 3_600_000), syncFromWelcome: false } };
            default:
              return { clockFault: { driftPpm: (rng.chance(0.5) ? 1 : -1) * rng.uniform(500, 20_000) } };
          }
        },
      };

    case 'slow-link':
      return {
        name,
        summary: `slow, high-latency uplinks (${p.slowLatencyMs[0]}–${p.slowLatencyMs[1]} ms, ${p.slowBytesPerSec[0] / 1000}–${p.slowBytesPerSec[1] / 1000} kB/s) with a small send window`,
        configure(_index, rng, base) {
          return {
            connector: slowLink(base.connector, base.clock, {
              latencyMs: rng.uniform(p.slowLatencyMs[0], p.slowLatencyMs[1]),
              uplinkBytesPerSec: rng.uniform(p.slowBytesPerSec[0], p.slowBytesPerSec[1]),
            }),
            maxInFlight: 4,
            highWaterBytes: 4096,
          };
        },
      };

    case 'malformed':
      return {
        name,
        summary: `after each WELCOME, good frames then one broken frame (${p.malformedKinds.join(', ')}); the hub must reject it with a coded error and close, the board reconnects and replays`,
        attach(device, { clock, rng }) {
          let k = device.index; // each board starts elsewhere in the cycle, so a fleet covers every kind
          let timer: TimerHandle | null = null;
          const onOnline = () => {
            if (timer) clock.clearTimeout(timer);
            timer = clock.setTimeout(
              () => {
                timer = null;
                const kind = p.malformedKinds[k % p.malformedKinds.length] as MalformedKind;
                if (device.sendMalformed(kind)) k++;
              },
              rng.uniform(p.malformedDelayMs[0], p.malformedDelayMs[1]),
            );
          };
          device.on('online', onOnline);
          return () => {
            device.off('online', onOnline);
            if (timer) clock.clearTimeout(timer);
          };
        },
      };

    case 'reboot-storm':
      return {
        name,
        summary: `boards crash and restart (panic, watchdog, brownout) about every ${p.rebootMeanMs / 1000} s, losing unsealed samples but keeping their outbox`,
        attach(device, { clock, rng }) {
          const reasons = [ResetReason.PANIC, ResetReason.WATCHDOG, ResetReason.BROWNOUT];
          return every(
            clock,
            () => rng.exponential(p.rebootMeanMs),
            () => device.reboot(rng.pick(reasons), false),
          );
        },
      };

    case 'power-cut':
      return {
        name,
        summary: `boards lose power about every ${p.powerCutMeanMs / 1000} s for ${p.powerOffMs[0] / 1000}–${p.powerOffMs[1] / 1000} s: RAM (unsealed samples, clock, connection) is lost, the outbox, boot counter and token come back from flash (--state-dir)`,
        attach(device, { clock, rng }) {
          return every(
            clock,
            () => rng.exponential(p.powerCutMeanMs),
            () => device.powerCut(rng.uniform(p.powerOffMs[0], p.powerOffMs[1])),
          );
        },
      };
  }
}

export function isScenarioName(s: string): s is ScenarioName {
  return (SCENARIO_NAMES as readonly string[]).includes(s);
}
