/**
 * Counters and an ack-latency histogram for simulated devices. Plain number fields (no maps on the
 * hot path); the fleet sums them for the status line and the summary.
 */

/**
 * Log-bucketed latency histogram: fixed memory (≈ 2 KB) whatever the run length, ±2.5 % resolution
 * from 10 µs to 20 minutes, mergeable across devices.
 */
export class LatencyHistogram {
  private static readonly MIN_MS = 0.01;
  private static readonly GROWTH = 1.05;
  private static readonly BUCKETS = 480;
  private readonly counts = new Uint32Array(LatencyHistogram.BUCKETS);
  count = 0;
  maxMs = 0;

  record(ms: number): void {
    const v = Math.max(ms, LatencyHistogram.MIN_MS);
    let i = Math.floor(Math.log(v / LatencyHistogram.MIN_MS) / Math.log(LatencyHistogram.GROWTH));
    if (i >= LatencyHistogram.BUCKETS) i = LatencyHistogram.BUCKETS - 1;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.count++;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < LatencyHistogram.BUCKETS; i++) {
      this.counts[i] = (this.counts[i] as number) + (other.counts[i] as number);
    }
    this.count += other.count;
    this.maxMs = Math.max(this.maxMs, other.maxMs);
  }

  /** The q-quantile (0..1) in ms (bucket midpoint), or null when empty. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < LatencyHistogram.BUCKETS; i++) {
      seen += this.counts[i] as number;
      if (seen >= rank) {
        const lo = LatencyHistogram.MIN_MS * LatencyHistogram.GROWTH ** i;
        return Math.min(this.maxMs, lo * Math.sqrt(LatencyHistogram.GROWTH));
      }
    }
    return this.maxMs;
  }
}

/** Cumulative counters of one device (or, summed, of a fleet). */
export class DeviceStats {
  /** TELEMETRY frames sealed into the outbox. */
  framesGenerated = 0;
  /** Samples in those frames (missing ones included) and readings (non-missing samples). */
  samplesGenerated = 0;
  readingsGenerated = 0;
  /** TELEMETRY sends, replays included. */
  framesSent = 0;
  bytesSent = 0;
  /** Sends of a frame that had been sent before (after reconnect, UNKNOWN_DESCRIPTORS, STORAGE_FULL). */
  framesReplayed = 0;
  /** Frames freed by an ACK (or by WELCOME's last ack), with their samples and readings. */
  framesAcked = 0;
  samplesAcked = 0;
  readingsAcked = 0;
  /** Frames the outbox dropped when full (drop-oldest); `…Unsent` of them had never been sent. */
  framesDropped = 0;
  framesDroppedUnsent = 0;
  samplesDropped = 0;
  readingsDropped = 0;
  /** Samples (and readings) taken but lost in RAM by a crash or power cut before their frame was sealed. */
  samplesLostOnCrash = 0;
  readingsLostOnCrash = 0;
  /** Power cuts (RAM lost, the store kept) and frames reloaded from the store at power-on. */
  powerCuts = 0;
  framesRestored = 0;
  /** WELCOMEs that named a seq of the current boot id this boot never sent: the id had been used before. */
  bootIdReused = 0;
  /** Deep sleep: flushes that emptied the outbox, flushes that did not (no hub, time up), ms awake. */
  flushes = 0;
  flushesIncomplete = 0;
  awakeMs = 0;
  /** Connection attempts; `reconnects` excludes each boot's first attempt. */
  connectAttempts = 0;
  reconnects = 0;
  /** Sessions that reached WELCOME. */
  sessions = 0;
  /** Handshakes the hub refused over HTTP (401, 400, 429, 503…). */
  handshakeRefusals = 0;
  /** Connections that never opened (refused, unreachable, timed out). */
  connectFailures = 0;
  heartbeatTimeouts = 0;
  /** Times sending paused because the socket held more than `highWaterBytes` (backpressure). */
  sendStalls = 0;
  ackTimeouts = 0;
  /** Disconnects the scenario caused on purpose (Wi-Fi drops). */
  wifiDrops = 0;
  reboots = 0;
  commandsReceived = 0;
  commandsDuplicate = 0;
  descriptorsSent = 0;
  /** ERROR frames received, by symbolic code (wire code when unknown). */
  errorsByCode: Record<string, number> = {};
  /** Close codes seen on the device's connections. */
  closesByCode: Record<string, number> = {};
  /** HTTP statuses of refused handshakes. */
  refusalsByStatus: Record<string, number> = {};
  /** Malformed frames sent on purpose, and what the hub answered: `kind→CODE/close` (e.g. `bad_crc→BAD_CRC/1007`). */
  malformedByOutcome: Record<string, number> = {};
  malformedSent = 0;
  malformedRejected = 0;
  /** Malformed frames the hub did not reject (a hub bug): the device gave up waiting for the close. */
  malformedUnanswered = 0;
  /** WELCOME last-ack older than frames the device had already seen acked (the hub lost data). */
  ackRegressions = 0;
  /** ACKs naming a frame the device never sent on the connection (ignored). */
  acksUnknown = 0;
  readonly latency: LatencyHistogram;

  constructor(latency: LatencyHistogram = new LatencyHistogram()) {
    this.latency = latency;
  }
}

/** Adds `n` to a counter in a by-code record. */
export function bump(record: Record<string, number>, key: string | number, n = 1): void {
  const k = String(key);
  record[k] = (record[k] ?? 0) + n;
}

type NumericKeys<T> = { [K in keyof T]: T[K] extends number ? K : never }[keyof T];
export type CounterName = NumericKeys<DeviceStats>;

/** Sums devices' counters (latency merged into a new histogram). */
export function sumStats(all: Iterable<DeviceStats>): DeviceStats {
  const total = new DeviceStats();
  const seenHistograms = new Set<LatencyHistogram>();
  for (const s of all) {
    for (const key of Object.keys(total) as (keyof DeviceStats)[]) {
      const v = s[key];
      const t = total as unknown as Record<string, number>;
      if (typeof v === 'number') t[key] = (t[key] ?? 0) + v;
      else if (v && typeof v === 'object' && !(v instanceof LatencyHistogram)) {
        for (const [k, n] of Object.entries(v as Record<string, number>))
          bump(total[key] as Record<string, number>, k, n);
      }
    }
    // Devices of a fleet may share one histogram; merge each histogram once.
    if (!seenHistograms.has(s.latency)) {
      seenHistograms.add(s.latency);
      total.latency.merge(s.latency);
    }
  }
  return total;
}
