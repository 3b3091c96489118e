/**
 * Test helpers for the InfluxDB forwarder: TELEMETRY frames built with the real codec, an in-memory
 * `LogReader`, and a fake InfluxDB write endpoint (a real HTTP server on a loopback port that the
 * real `@influxdata/influxdb-client` talks to, answering what each test scripts). The fakes stand at
 * module boundaries only; integration tests use the real local log and the real InfluxDB.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import {
  type ChannelDescriptor,
  descriptorHash,
  encodeFrame,
  type SampleValue,
  ValueType,
} from '../../server/codec/index.ts';
import type { InfluxConfig } from '../../server/config/index.ts';
import type { LogEntry, LogReader, StoredEntry } from '../../server/storage/types.ts';

export const CHANNELS: ChannelDescriptor[] = [
  { index: 0, key: 'temp', unit: '°C', valueType: ValueType.I16, scaleExp: -2, periodMs: 1000 },
  { index: 1, key: 'humidity', unit: '%', valueType: ValueType.U8, scaleExp: 0, periodMs: 1000 },
  { index: 2, key: 'relay', unit: '', valueType: ValueType.BOOL, scaleExp: 0, periodMs: 0 },
  { index: 3, key: 'vbat', unit: 'V', valueType: ValueType.F32, scaleExp: 0, periodMs: 1000 },
];
export const HASH = descriptorHash(CHANNELS);

/** One TELEMETRY frame with `samples` readings per channel listed, 1 ms apart. */
export function telemetryFrame(opts: {
  bootId?: number;
  seq: number;
  baseTime: number;
  samples?: number;
  channels?: number[];
  value?: (channel: number, i: number) => SampleValue;
  unsynced?: boolean;
  hash?: number;
}): Uint8Array {
  const samples = opts.samples ?? 2;
  const value =
    opts.value ??
    ((ch: number, i: number): SampleValue =>
      ch === 0 ? (opts.seq * 10 + i) % 30_000 : ch === 1 ? (opts.seq + i) % 256 : ch === 2 ? i % 2 === 0 : 3.25 + i);
  return encodeFrame({
    type: 'telemetry',
    unsynced: opts.unsynced ?? false,
    bootId: opts.bootId ?? 7,
    seq: opts.seq,
    descriptorHash: opts.hash ?? HASH,
    baseTime: opts.baseTime,
    blocks: (opts.channels ?? [0, 1, 2, 3]).map((ch) => ({
      channel: ch,
      valueType: (CHANNELS[ch] as ChannelDescriptor).valueType,
      deltasMs: Array.from({ length: samples }, (_, i) => i),
      values: Array.from({ length: samples }, (_, i) => value(ch, i)),
    })),
  });
}

/** An in-memory LogReader: offsets 1, 2, 3…, commits recorded. */
export class MemoryLog implements LogReader {
  entries: StoredEntry[] = [];
  forwarded = 0;
  commits: number[] = [];
  descriptors = new Map<string, ChannelDescriptor[]>();
  private listeners = new Set<() => void>();

  constructor(devices: string[] = ['dev-1']) {
    for (const d of devices) this.descriptors.set(`${d}/${HASH}`, CHANNELS);
  }

  append(entry: LogEntry): number {
    const offset = this.entries.length + 1;
    this.entries.push({ ...entry, offset });
    for (const l of this.listeners) l();
    return offset;
  }

  appendFrame(deviceId: string, frame: Uint8Array, extra: Partial<LogEntry> = {}): number {
    return this.append({ deviceId, bootId: 7, seq: 0, receivedAtMs: Date.now(), timeOffsetMs: 0, frame, ...extra });
  }

  readAfter(afterOffset: number, max: number): StoredEntry[] {
    return this.entries.slice(afterOffset, afterOffset + max);
  }
  forwardedOffset(): number {
    return this.forwarded;
  }
  async commitForwarded(offset: number): Promise<void> {
    if (offset < this.forwarded) throw new Error(`cursor moved backwards: ${offset} < ${this.forwarded}`);
    this.forwarded = offset;
    this.commits.push(offset);
  }
  headOffset(): number {
    return this.entries.length;
  }
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  lookupDescriptors = (deviceId: string, hash: number): ChannelDescriptor[] | undefined =>
    this.descriptors.get(`${deviceId}/${hash}`);
}

export interface WriteRequest {
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  lines: string[];
}

export type Reply = { status: number; body?: string; headers?: Record<string, string> } | 'destroy';

/**
 * A fake `/api/v2/write`: `reply` decides each answer (default 204). Lines of 2xx answers are
 * "stored" in `stored` (a Set: rewriting a line is idempotent, as in InfluxDB).
 */
export class FakeInflux {
  requests: WriteRequest[] = [];
  stored = new Set<string>();
  storedCount = 0;
  reply: (req: WriteRequest) => Reply | Promise<Reply> = () => ({ status: 204 });
  private server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        const url = new URL(req.url ?? '/', 'http://x');
        const request: WriteRequest = {
          path: url.pathname,
          query: url.searchParams,
          headers: req.headers,
          lines: body.toString('utf8').split('\n').filter(Boolean),
        };
        this.requests.push(request);
        Promise.resolve(this.reply(request)).then(
          (r) => {
            if (r === 'destroy') {
              req.socket.destroy();
              return;
            }
            if (r.status >= 200 && r.status < 300) {
              for (const l of request.lines) this.stored.add(l);
              this.storedCount += request.lines.length;
            }
            res.writeHead(r.status, { 'content-type': 'application/json', ...r.headers });
            res.end(r.body ?? '');
          },
          (err: unknown) => {
            res.writeHead(500);
            res.end(String(err));
          },
        );
      });
    });
  }

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function influxConfig(url: string, overrides: Partial<InfluxConfig> = {}): InfluxConfig {
  return {
    url,
    token: 'test-token-0123456789abcdef0123456789abcdef',
    org: 'hub-org',
    bucket: 'telemetry',
    batchLines: 5000,
    flushIntervalMs: 10,
    timeoutMs: 5000,
    maxRetryDelayMs: 30_000,
    statsIntervalMs: 0,
    ...overrides,
  };
}

/** Resolves when `check` is true, polling; fails after `timeoutMs` (a bound on a hang, not a timed assertion). */
export async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}
