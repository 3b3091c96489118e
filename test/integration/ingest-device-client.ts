/**
 * A minimal protocol-v1 device for the ingest tests: a real `ws` client speaking the codec, with a
 * queue of received frames to await on. No mocks: it talks to a real hub over a real socket.
 */
import { WebSocket } from 'ws';
import {
  type ChannelDescriptor,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type Message,
  SUBPROTOCOL,
  type Telemetry,
  ValueType,
} from '../../server/codec/index.ts';
import { configFrom, type EnvName } from '../../server/config/index.ts';
import { buildHub, type Hub, type HubDeps } from '../../server/hub.ts';
import { createLogger } from '../../server/log/index.ts';
import { type DeviceRegistry, openDeviceRegistry } from '../../server/registry/index.ts';
import { type TempDir, tempDir } from '../harness/index.ts';

export const TEST_CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 1000 },
  { index: 1, key: 'humidity', unit: '%', valueType: ValueType.U16, scaleExp: -1, periodMs: 1000 },
  { index: 2, key: 'door', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
  { index: 3, key: 'voltage', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
];
export const TEST_HASH = descriptorHash(TEST_CHANNELS);

export interface ConnectOptions {
  token?: string | null;
  /** false: do not answer pings (a dead peer, for heartbeat tests). */
  autoPong?: boolean;
  protocols?: string[];
  headers?: Record<string, string>;
}

/** Result of a refused handshake: the HTTP status and body the hub answered. */
export interface Refusal {
  status: number;
  body: string;
  /** The Retry-After header (seconds), when the hub sent one. */
  retryAfter: string | null;
}

export class TestDevice {
  /** Frames received and not yet taken by `next`/`waitFor`. */
  readonly received: Message[] = [];
  /** Every frame received, in order (never consumed). */
  readonly history: Message[] = [];
  private waiters: { pred: (m: Message) => boolean; resolve: (m: Message) => void; reject: (e: Error) => void }[] = [];
  closeCode: number | null = null;
  closeReason = '';
  private closedWaiters: ((code: number) => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const m = decodeFrame(new Uint8Array(data));
      this.received.push(m);
      this.history.push(m);
      for (const w of [...this.waiters]) {
        if (w.pred(m)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      for (const w of this.waiters) w.reject(new Error(`socket closed (${code} ${this.closeReason})`));
      this.waiters = [];
      for (const c of this.closedWaiters) c(code);
    });
    ws.on('error', () => undefined);
  }

  static connect(url: string, opts: ConnectOptions = {}): Promise<TestDevice> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
      const ws = new WebSocket(url, opts.protocols ?? [SUBPROTOCOL], {
        headers,
        perMessageDeflate: false,
        autoPong: opts.autoPong ?? true,
      });
      ws.once('open', () => resolve(new TestDevice(ws)));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () =>
          reject(
            Object.assign(new Error(`refused ${res.statusCode}`), {
              status: res.statusCode,
              body,
              retryAfter: res.headers['retry-after'] ?? null,
            }),
          ),
        );
      });
      ws.once('error', reject);
    });
  }

  /** Expects the handshake to be refused; resolves with the status and body. */
  static async refused(url: string, opts: ConnectOptions = {}): Promise<Refusal> {
    try {
      const d = await TestDevice.connect(url, opts);
      d.ws.terminate();
    } catch (err) {
      const e = err as { status?: number; body?: string; retryAfter?: string | null };
      if (e.status !== undefined) return { status: e.status, body: e.body ?? '', retryAfter: e.retryAfter ?? null };
      throw err;
    }
    throw new Error('handshake was accepted');
  }

  send(m: Message): void {
    this.ws.send(encodeFrame(m));
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  next<T extends Message['type']>(type: T, timeoutMs = 10_000): Promise<Extract<Message, { type: T }>> {
    return this.waitFor((m): m is Extract<Message, { type: T }> => m.type === type, timeoutMs) as Promise<
      Extract<Message, { type: T }>
    >;
  }

  waitFor(pred: (m: Message) => boolean, timeoutMs = 10_000): Promise<Message> {
    const seen = this.received.find(pred);
    if (seen) {
      this.received.splice(this.received.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for a frame')), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          this.received.splice(this.received.indexOf(m), 1);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** Waits for an ACK covering (bootId, seq). */
  ackOf(bootId: number, seq: number, timeoutMs = 10_000): Promise<Message> {
    return this.waitFor((m) => m.type === 'ack' && m.bootId === bootId && m.seq >= seq, timeoutMs);
  }

  closed(): Promise<number> {
    if (this.closeCode !== null) return Promise.resolve(this.closeCode);
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  close(): Promise<number> {
    const p = this.closed();
    this.ws.close(1000);
    return p;
  }

  /** HELLO → WELCOME. */
  async hello(deviceId: string, bootId: number, opts: { uptimeMs?: number; timeSynced?: boolean; hash?: number } = {}) {
    this.send({
      type: 'hello',
      timeSynced: opts.timeSynced ?? true,
      deviceId,
      firmwareVersion: 'test-1.0.0',
      maxProtocolVersion: 1,
      bootId,
      resetReason: 1,
      uptimeMs: opts.uptimeMs ?? 1000,
      descriptorHash: opts.hash ?? TEST_HASH,
      bufferedFrames: 0,
      droppedFrames: 0,
    });
    return this.next('welcome');
  }
}

/**
 * A TELEMETRY frame with `n` samples per channel: temperature raw 2000+i (scale −2), humidity 500+i
 * (scale −1), door i%2, voltage 3.3 (f32); samples 1 s apart from `baseTime`.
 */
export function telemetry(
  bootId: number,
  seq: number,
  baseTime: number,
  n = 3,
  opts: { unsynced?: boolean; hash?: number } = {},
): Telemetry {
  const deltas = Array.from({ length: n }, (_, i) => i * 1000);
  return {
    type: 'telemetry',
    unsynced: opts.unsynced ?? false,
    bootId,
    seq,
    descriptorHash: opts.hash ?? TEST_HASH,
    baseTime,
    blocks: [
      { channel: 0, valueType: ValueType.I16, deltasMs: deltas, values: deltas.map((_, i) => 2000 + seq * 10 + i) },
      { channel: 1, valueType: ValueType.U16, deltasMs: deltas, values: deltas.map((_, i) => 500 + i) },
      { channel: 2, valueType: ValueType.BOOL, deltasMs: deltas, values: deltas.map((_, i) => i % 2 === 1) },
      { channel: 3, valueType: ValueType.F32, deltasMs: deltas, values: deltas.map(() => 3.25) },
    ],
  };
}

/** The readings `telemetry(bootId, seq, baseTime, n)` should produce (time, channel, value). */
export function expectedReadings(seq: number, baseTime: number, n = 3) {
  const out: { timeMs: number; channel: string; value: number | boolean }[] = [];
  for (let i = 0; i < n; i++) {
    const t = baseTime + i * 1000;
    out.push({ timeMs: t, channel: 'temperature', value: (2000 + seq * 10 + i) / 100 });
    out.push({ timeMs: t, channel: 'humidity', value: (500 + i) / 10 });
    out.push({ timeMs: t, channel: 'door', value: i % 2 === 1 });
    out.push({ timeMs: t, channel: 'voltage', value: 3.25 });
  }
  return out;
}

/** A hub on a loopback port with a temp data dir and the real device registry. */
export interface TestHub {
  hub: Hub;
  port: number;
  url: string;
  http: string;
  dir: TempDir;
  registry: DeviceRegistry;
  /** Registers a device and returns its token. */
  addDevice(id: string): Promise<string>;
  metricValue(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

export async function startTestHub(
  overrides: Partial<Record<EnvName, string>> = {},
  deps: HubDeps = {},
  dir?: TempDir,
): Promise<TestHub> {
  const d = dir ?? (await tempDir('ingest'));
  const config = configFrom({
    HUB_HOST: '127.0.0.1',
    HUB_PORT: '0',
    HUB_DATA_DIR: d.path,
    HUB_LOG_LEVEL: process.env.TEST_HUB_LOG_LEVEL ?? 'silent',
    ...overrides,
  });
  const logger = createLogger(config.log.level);
  const registry = openDeviceRegistry({ dataDir: d.path, logger, watchIntervalMs: 0 });
  const hub = buildHub(config, { logger, registry, ...deps });
  const { port } = await hub.start();
  return {
    hub,
    port,
    url: `ws://127.0.0.1:${port}/v1/device`,
    http: `http://127.0.0.1:${port}`,
    dir: d,
    registry,
    async addDevice(id) {
      return (await registry.add(id)).token;
    },
    async metricValue(name, labels = {}) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      const text = await res.text();
      return metricFromText(text, name, labels);
    },
    async stop() {
      await hub.stop();
      await registry.close();
    },
  };
}

/** Sums the samples of `name` in Prometheus text whose labels include `labels`. */
export function metricFromText(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[pair[1] as string] = pair[2] as string;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[4]);
  }
  return sum;
}
