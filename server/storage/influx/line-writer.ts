/**
 * One write request per call through `@influxdata/influxdb-client`'s WriteApi, with every bit of the
 * client's own buffering and retrying switched off: the hub's local log is the durable buffer and
 * the forwarder decides what a failure means (docs/storage.md, "Failure policy").
 *
 * - `maxRetries: 0`: a failed batch is never put into the client's in-memory retry buffer (32 k
 *   lines, gives up after 3 min, drops 400/413/422); `flush()` rejects with the error instead.
 * - `batchSize` above any batch we hand over and `flushInterval: 0`: the client never sends on its
 *   own, so each `flush()` is exactly one request carrying exactly the lines we wrote.
 * - `maxBatchBytes` unlimited for the same reason (the default 50 MB would split a batch silently).
 */
import {
  type Logger as ClientLogger,
  HttpError,
  InfluxDB,
  setLogger,
  type WriteApi,
} from '@influxdata/influxdb-client';
import type { InfluxConfig } from '../../config/index.ts';
import type { Logger } from '../../log/index.ts';
import { PRECISION } from './line-protocol.ts';

/** The result of one write request. `status` is the HTTP status, or 'network' when none arrived. */
export type WriteOutcome =
  | { ok: true }
  | {
      ok: false;
      status: number | 'network';
      /** Response body (InfluxDB's error text), or the network error's message. */
      reason: string;
      /** Parsed Retry-After in ms, when the response carried one. */
      retryAfterMs: number | null;
    };

export interface LineWriter {
  /**
   * Sends `lines` as one request (elements may hold several `\n`-joined lines); never throws, never
   * retries. Up to `slots` calls may be in flight at once.
   */
  write(lines: readonly string[]): Promise<WriteOutcome>;
  /** Drops the client; an in-flight request finishes on its own and its result is ignored. */
  close(): void;
}

/**
 * Request bodies are never gzipped. The usual target is a co-located InfluxDB (compose stack), where
 * compressing costs the hub's CPU and decompressing the engine's, for no gain on loopback. (All of
 * InfluxDB 1.8+, 2.x and 3.x accept gzip; a remote target would justify a threshold here.)
 */
export const GZIP_THRESHOLD_BYTES = Number.MAX_SAFE_INTEGER;

/**
 * `slots` WriteApis, one per request that may be in flight: a WriteApi's buffer holds the lines of
 * one `flush()`, so two concurrent writes must never share one (their lines would mix). The
 * forwarder never has more than `slots` writes pending; a call beyond that is a bug and throws.
 */
export function createLineWriter(config: InfluxConfig, maxLinesPerWrite: number, slots = 1): LineWriter {
  const client = new InfluxDB({ url: config.url, token: config.token, timeout: config.timeoutMs });
  const writeOptions = {
    batchSize: maxLinesPerWrite + 1,
    flushInterval: 0,
    maxRetries: 0,
    maxBufferLines: 0,
    maxBatchBytes: Number.MAX_SAFE_INTEGER,
    gzipThreshold: GZIP_THRESHOLD_BYTES,
  };
  let free: WriteApi[] = Array.from({ length: Math.max(1, slots) }, () =>
    client.getWriteApi(config.org, config.bucket, PRECISION, writeOptions),
  );
  const all = [...free];
  let closed = false;
  return {
    async write(lines) {
      if (closed) return { ok: false, status: 'network', reason: 'writer closed', retryAfterMs: null };
      const api = free.pop();
      if (!api) throw new Error(`LineWriter.write called with ${all.length} writes already in flight`);
      try {
        api.writeRecords(lines as string[]);
        await api.flush();
        return { ok: true };
      } catch (err) {
        return toOutcome(err);
      } finally {
        if (!closed) free.push(api);
      }
    },
    close() {
      closed = true;
      for (const api of all) void api.dispose();
      free = [];
    },
  };
}

function toOutcome(err: unknown): WriteOutcome {
  if (err instanceof HttpError) {
    const header = err.headers?.['retry-after'];
    return {
      ok: false,
      status: err.statusCode,
      reason: err.body || err.message,
      retryAfterMs: parseRetryAfter(Array.isArray(header) ? header[0] : header),
    };
  }
  return { ok: false, status: 'network', reason: (err as Error)?.message ?? String(err), retryAfterMs: null };
}

/** Retry-After is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3); null when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, nowMs: number = Date.now()): number | null {
  if (value === undefined) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/**
 * Routes the client's logger into ours. The client logs every failed write; the forwarder logs the
 * same failures with their consequence (retry in N ms, dead-lettered…), so the client's copies go to
 * debug. The client never logs the token. `setLogger` is process-wide: the last hub created wins.
 */
export function routeClientLogger(logger: Logger): ClientLogger {
  const child = logger.child({ component: 'influxdb-client' });
  return setLogger({
    error: (message, err) => child.debug({ err: describe(err) }, message),
    warn: (message, err) => child.debug({ err: describe(err) }, message),
  });
}

function describe(err: unknown): unknown {
  if (err instanceof HttpError) return { status: err.statusCode, body: err.body };
  return err;
}
