// Real DeviceSessions over links and an ingest the test drives: the ingest accepts every frame and
// completes it (durable) only when the test commits it, as the local log does once its group is
// flushed. Used by the in-flight bound and ACK pacing tests.
import { encodeFrame, type Hello, newTelemetryScan } from '../../server/codec/index.ts';
import { configFrom } from '../../server/config/index.ts';
import { HubEventBus } from '../../server/events.ts';
import { createLogger } from '../../server/log/index.ts';
import type { Metrics } from '../../server/metrics/index.ts';
import { createCommandTracker } from '../../server/pipeline/commands.ts';
import type { Ingest, TelemetryDone } from '../../server/pipeline/ingest.ts';
import {
  createSessionTable,
  DeviceSession,
  newSessionCounts,
  type SessionContext,
} from '../../server/transport/device-session.ts';
import type { InflightBudget } from '../../server/transport/inflight-budget.ts';
import type { DeviceLink, LinkHandlers } from '../../server/transport/link.ts';

/** A link that records pause/resume, what was sent and whether it was closed. */
export class TestLink implements DeviceLink {
  readonly transport = 'websocket' as const;
  readonly remoteAddress = '127.0.0.1';
  readonly bufferedAmount = 0;
  handlers: LinkHandlers | null = null;
  paused = false;
  pauses = 0;
  open = true;
  sent: Uint8Array[] = [];
  constructor(
    readonly name: string,
    private readonly order: string[],
  ) {}
  attach(h: LinkHandlers): void {
    this.handlers = h;
  }
  isOpen(): boolean {
    return this.open;
  }
  send(frame: Uint8Array): void {
    this.sent.push(frame);
  }
  close(): void {
    this.order.push(`close ${this.name}`);
    this.open = false;
  }
  terminate(): void {}
  ping(): void {}
  pause(): void {
    this.paused = true;
    this.pauses++;
    this.order.push(`pause ${this.name}`);
  }
  resume(): void {
    this.paused = false;
    this.order.push(`resume ${this.name}`);
  }
  deliver(frame: Uint8Array): void {
    this.handlers?.message(Buffer.from(frame), true);
  }
}

export const FRAME_BYTES = 200;

/** A TELEMETRY-typed frame of FRAME_BYTES (the held ingest reads only its type byte and seq). */
export function telemetry(seq: number): Uint8Array {
  const f = new Uint8Array(FRAME_BYTES);
  f[3] = 0x04; // MessageType.TELEMETRY: takes the session's fast path
  new DataView(f.buffer).setUint32(12, seq, true);
  return f;
}

/**
 * A hub of real sessions whose frames stay in flight until `commit(n)` makes the `n` oldest durable.
 * `order` records every link's pause, resume and close, in order.
 */
export function sessionHub(opts: { metrics: Metrics; budget?: InflightBudget; now?: () => number }) {
  const pending: TelemetryDone[] = [];
  const order: string[] = [];
  const scan = newTelemetryScan();
  const ingest: Ingest = {
    hello: () => ({ lastAck: null, descriptorsKnown: true }),
    descriptors: () => undefined,
    scan: (_id, frame) => {
      scan.bootId = 1;
      scan.seq = new DataView(frame.buffer, frame.byteOffset).getUint32(12, true);
      return scan;
    },
    store: (_id, _frame, _scan, _at, done) => {
      pending.push(done);
    },
    release: () => undefined,
    currentChannels: () => undefined,
    activeDevices: () => 0,
    flushCounts: () => undefined,
  };
  const bus = new HubEventBus();
  const now = opts.now ?? Date.now;
  const ctx: SessionContext = {
    counts: newSessionCounts(opts.budget),
    ingest,
    sessions: createSessionTable(),
    commands: createCommandTracker({ metrics: opts.metrics, bus, now }),
    config: configFrom({}),
    metrics: opts.metrics,
    bus,
    logger: createLogger('silent'),
    now,
  };
  const connect = (name: string): { link: TestLink; session: DeviceSession } => {
    const link = new TestLink(name, order);
    const session = new DeviceSession(link, name, ctx);
    const hello: Hello = {
      type: 'hello',
      timeSynced: true,
      deviceId: name,
      firmwareVersion: 'test',
      maxProtocolVersion: 1,
      bootId: 1,
      resetReason: 1,
      uptimeMs: 1000,
      descriptorHash: 1,
      bufferedFrames: 0,
      droppedFrames: 0,
    };
    link.deliver(encodeFrame(hello));
    return { link, session };
  };
  /** Completes the `n` oldest frames in flight (durable). */
  const commit = (n = pending.length): void => {
    for (const done of pending.splice(0, n)) done(null, 'stored', 0);
  };
  return { ctx, connect, commit, pending, order };
}
