/**
 * A fleet of simulated boards: builds the devices with their scenario, staggers their boots, and
 * sums their counters for the status line and the final summary.
 */
import { FileBoardStore } from './board-store.ts';
import { type Clock, systemClock } from './clock.ts';
import { type DeviceOptions, SimDevice } from './device.ts';
import { type Connector, wsConnector } from './link.ts';
import type { SampleRecorder } from './recorder.ts';
import { Rng } from './rng.ts';
import { createScenario, type Scenario, type ScenarioName, type ScenarioParams } from './scenarios.ts';
import { type DeviceStats, LatencyHistogram, sumStats } from './stats.ts';

export interface FleetOptions {
  /** Hub device endpoint, e.g. ws://localhost:8080/v1/device. */
  url: string;
  /** Number of boards (default 1). */
  devices?: number;
  /** Device ids are `${idPrefix}${n}` with n zero-padded to 4 digits, from `firstIndex` (default `sim-`, 1). */
  idPrefix?: string;
  firstIndex?: number;
  /** Device id → token. Every board needs one (given here, or kept in its state under `stateDir`). */
  tokens: ReadonlyMap<string, string>;
  /**
   * Keep each board's flash and NVS (outbox, boot counter, token, command memory) in
   * `<stateDir>/<deviceId>/`, so it survives the process (see board-store.ts). Default: in memory.
   */
  stateDir?: string;
  /** Default 1. The same seed (with the same clock) gives the same frames. */
  seed?: number;
  scenario?: ScenarioName | Scenario;
  scenarioParams?: Partial<ScenarioParams>;
  /** TELEMETRY frames per second per board (default 1). */
  rate?: number;
  /** Sample ticks per frame (default 4); the sample interval is 1000 / (rate × ticksPerFrame) ms. */
  ticksPerFrame?: number;
  /** Boots are spread evenly over this many ms (default 2.5 ms per board, at most 60 s). */
  startSpreadMs?: number;
  clock?: Clock;
  connector?: Connector;
  recorder?: SampleRecorder;
  /** Share of boards (0..1, picked by the seed) whose health check fails after an OTA update: they roll back. */
  otaFailHealth?: number;
  /** Passed to every device (outbox size, backoff, window…). */
  device?: Partial<Omit<DeviceOptions, 'id' | 'token' | 'url' | 'seed' | 'index'>>;
}

/** Zero-padded device id, e.g. `sim-0007`. */
export function deviceId(prefix: string, n: number): string {
  return `${prefix}${String(n).padStart(4, '0')}`;
}

/** Device ids a fleet of `count` boards uses. */
export function fleetDeviceIds(count: number, prefix = 'sim-', firstIndex = 1): string[] {
  return Array.from({ length: count }, (_, i) => deviceId(prefix, firstIndex + i));
}

/** A moment's view of the fleet, for the status line. */
export interface FleetSnapshot {
  atMs: number;
  devices: number;
  connected: number;
  framesSent: number;
  framesAcked: number;
  outboxDepth: number;
  reconnects: number;
  framesDropped: number;
}

export interface FleetSummary {
  scenario: string;
  seed: number;
  devices: number;
  ratePerDevice: number;
  durationMs: number;
  totals: Record<string, number>;
  ackLatencyMs: { count: number; p50: number | null; p99: number | null; max: number | null };
  errorsByCode: Record<string, number>;
  closesByCode: Record<string, number>;
  refusalsByStatus: Record<string, number>;
  malformedByOutcome: Record<string, number>;
  /** Frames still in outboxes at the end (not acknowledged). */
  outboxDepth: number;
  perDevice: {
    id: string;
    /** The board's state when the summary was taken (`stopped` after a run, `unpowered`…). */
    state: string;
    bootId: number;
    framesSent: number;
    framesAcked: number;
    framesReplayed: number;
    framesDropped: number;
    reconnects: number;
    readingsAcked: number;
    outboxDepth: number;
  }[];
}

export class Fleet {
  readonly devices: SimDevice[] = [];
  readonly clock: Clock;
  readonly scenario: Scenario;
  readonly seed: number;
  readonly rate: number;
  /** One histogram for the whole fleet: memory does not grow with the number of boards. */
  readonly latency = new LatencyHistogram();
  private readonly detach: (() => void)[] = [];
  private readonly options: FleetOptions;
  private startedAt = 0;
  private stoppedAt = 0;
  private started = false;

  constructor(options: FleetOptions) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.seed = options.seed ?? 1;
    this.rate = options.rate ?? 1;
    const count = options.devices ?? 1;
    const ticksPerFrame = options.ticksPerFrame ?? options.device?.ticksPerFrame ?? 4;
    if (!(this.rate > 0)) throw new RangeError('rate must be > 0');
    const sampleIntervalMs = 1000 / (this.rate * ticksPerFrame);
    this.scenario =
      typeof options.scenario === 'object'
        ? options.scenario
        : createScenario(options.scenario ?? 'steady', options.scenarioParams);
    const connector = options.connector ?? wsConnector();
    const root = new Rng(this.seed);
    const ids = fleetDeviceIds(count, options.idPrefix ?? 'sim-', options.firstIndex ?? 1);
    const missing = ids.filter((id) => !options.tokens.has(id));
    if (missing.length > 0) {
      throw new Error(
        `no token for ${missing.length} device(s) (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''})`,
      );
    }
    for (let i = 0; i < count; i++) {
      const id = ids[i] as string;
      const index = (options.firstIndex ?? 1) + i;
      const extra = this.scenario.configure?.(index, root.fork('scenario-config', index), {
        clock: this.clock,
        connector,
      });
      this.devices.push(
        new SimDevice({
          sampleIntervalMs,
          ticksPerFrame,
          ...options.device,
          ...extra,
          id,
          index,
          token: options.tokens.get(id) as string,
          url: options.url,
          seed: this.seed,
          clock: this.clock,
          ...(options.stateDir ? { store: new FileBoardStore(options.stateDir, id) } : {}),
          ...(options.otaFailHealth
            ? { otaFailHealth: root.fork('ota-health', index).chance(options.otaFailHealth) }
            : {}),
          connector: extra?.connector ?? connector,
          latency: this.latency,
          ...(options.recorder ? { recorder: options.recorder } : {}),
        }),
      );
    }
  }

  /** Boots every board (spread over `startSpreadMs`) and attaches the scenario. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.startedAt = this.clock.now();
    const n = this.devices.length;
    const spread = this.options.startSpreadMs ?? Math.min(60_000, n * 2.5);
    const root = new Rng(this.seed);
    this.devices.forEach((d, i) => {
      const go = () => {
        if (this.stoppedAt) return;
        d.start();
        const stop = this.scenario.attach?.(d, {
          clock: this.clock,
          rng: root.fork('scenario', d.index),
          fleetSize: n,
        });
        if (stop) this.detach.push(stop);
      };
      const at = n > 1 ? (spread * i) / n : 0;
      if (at === 0) go();
      else this.clock.setTimeout(go, at);
    });
  }

  /**
   * Stops the scenario, then every board; with `drainMs` each board first waits (up to that long)
   * for the hub to acknowledge its whole outbox.
   */
  async stop(options: { drainMs?: number } = {}): Promise<FleetSummary> {
    if (!this.stoppedAt) {
      this.stoppedAt = this.clock.now();
      for (const stop of this.detach.splice(0)) stop();
      await Promise.all(this.devices.map((d) => d.stop(options)));
      this.stoppedAt = this.clock.now();
    }
    return this.summary();
  }

  totals(): DeviceStats {
    return sumStats(this.devices.map((d) => d.stats));
  }

  snapshot(): FleetSnapshot {
    let connected = 0;
    let framesSent = 0;
    let framesAcked = 0;
    let outboxDepth = 0;
    let reconnects = 0;
    let framesDropped = 0;
    for (const d of this.devices) {
      if (d.state === 'online') connected++;
      framesSent += d.stats.framesSent;
      framesAcked += d.stats.framesAcked;
      outboxDepth += d.outboxDepth;
      reconnects += d.stats.reconnects;
      framesDropped += d.stats.framesDropped;
    }
    return {
      atMs: this.clock.now(),
      devices: this.devices.length,
      connected,
      framesSent,
      framesAcked,
      outboxDepth,
      reconnects,
      framesDropped,
    };
  }

  summary(): FleetSummary {
    const t = this.totals();
    const totals: Record<string, number> = {};
    for (const [k, v] of Object.entries(t)) if (typeof v === 'number') totals[k] = v;
    const end = this.stoppedAt || this.clock.now();
    const round = (v: number | null) => (v === null ? null : Math.round(v * 1000) / 1000);
    return {
      scenario: this.scenario.name,
      seed: this.seed,
      devices: this.devices.length,
      ratePerDevice: this.rate,
      durationMs: this.startedAt ? Math.round(end - this.startedAt) : 0,
      totals,
      ackLatencyMs: {
        count: this.latency.count,
        p50: round(this.latency.quantile(0.5)),
        p99: round(this.latency.quantile(0.99)),
        max: this.latency.count ? round(this.latency.maxMs) : null,
      },
      errorsByCode: t.errorsByCode,
      closesByCode: t.closesByCode,
      refusalsByStatus: t.refusalsByStatus,
      malformedByOutcome: t.malformedByOutcome,
      outboxDepth: this.devices.reduce((n, d) => n + d.outboxDepth, 0),
      perDevice: this.devices.map((d) => ({
        id: d.id,
        state: d.state,
        bootId: d.bootId,
        framesSent: d.stats.framesSent,
        framesAcked: d.stats.framesAcked,
        framesReplayed: d.stats.framesReplayed,
        framesDropped: d.stats.framesDropped,
        reconnects: d.stats.reconnects,
        readingsAcked: d.stats.readingsAcked,
        outboxDepth: d.outboxDepth,
      })),
    };
  }
}
