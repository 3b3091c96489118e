/**
 * One write request per call through `@influxdata/influxdb-client`'s transport (its Node HTTP
 * transport: auth header, timeouts, `HttpError` with InfluxDB's body and headers), to the same
 * `/api/v2/write` endpoint and with the same request its WriteApi sends, but without the WriteApi:
 *
 * - none of the client's buffering or retrying: the hub's local log is the durable buffer and the
 *   forwarder decides what a failure means (docs/storage.md, "Failure policy"); a WriteApi with
 *   `maxRetries: 0` would do that too, but
 * - the WriteApi counts every record's UTF-8 bytes in JavaScript, character by character, as it
 *   buffers it (for `maxBatchBytes`), which cost about 6 % of the hub's CPU at the forwarding rate,
 *   and its one buffer allows one request at a time. Here a body is sent as it is (the forwarder's
 *   comes already encoded, `EncodedLines`), and up to `slots` requests may be in flight.
 */
import { type Logger as ClientLogger, HttpError, InfluxDB, setLogger } from '@influxdata/influxdb-client';
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

/** Lines already encoded as one request body: UTF-8, `\n` between lines (line-protocol.ts, `LineBuffer`). */
export interface EncodedLines {
  /** The body; the writer copies it before `write` returns its promise. */
  bytes(): Uint8Array;
  /** Lines in the body. */
  readonly lines: number;
  /** The body as one string per line. */
  toLines(): string[];
}

/** The lines of one request: one line per string, or already encoded. */
export type Lines = readonly string[] | EncodedLines;

export function isEncoded(lines: Lines): lines is EncodedLines {
  return 'toLines' in lines;
}

export function lineCount(lines: Lines): number {
  return isEncoded(lines) ? lines.lines : lines.length;
}

export interface LineWriter {
  /** Sends `lines` as one request; never throws, never retries. Up to `slots` calls may be in flight at once. */
  write(lines: Lines): Promise<WriteOutcome>;
  /** Refuses further writes; an in-flight request finishes on its own and its result is ignored. */
  close(): void;
}

/**
 * Request bodies are never gzipped. The usual target is a co-located InfluxDB (compose stack), where
 * compressing costs the hub's CPU and decompressing the engine's, for no gain on loopback. (All of
 * InfluxDB 1.8+, 2.x and 3.x accept gzip; a remote target would justify a threshold here.)
 */
export const GZIP_THRESHOLD_BYTES = Number.MAX_SAFE_INTEGER;

/** Up to `slots` writes in flight at once; a call beyond that is a bug in the caller and throws. */
export function createLineWriter(config: InfluxConfig, slots = 1): LineWriter {
  const client = new InfluxDB({ url: config.url, token: config.token, timeout: config.timeoutMs });
  const path =
    `/api/v2/write?org=${encodeURIComponent(config.org)}&bucket=${encodeURIComponent(config.bucket)}` +
    `&precision=${PRECISION}`;
  const sendOptions = {
    method: 'POST',
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    gzipThreshold: GZIP_THRESHOLD_BYTES,
  };
  const maxInFlight = Math.max(1, slots);
  let inFlight = 0;
  let closed = false;

  function post(body: string | Uint8Array): Promise<WriteOutcome> {
    return new Promise<WriteOutcome>((resolve) => {
      let status: number | undefined;
      // The Node transport makes the request body with `Buffer.from(body, 'utf-8')`, which copies
      // bytes as they are: an encoded body goes out without a string in between, and the caller may
      // reuse its buffer once the promise settles (the integration tests write both through it).
      client.transport.send(path, body as string, sendOptions, {
        responseStarted(_headers, statusCode) {
          status = statusCode;
        },
        error(err) {
          // As the WriteApi does: an Enterprise cluster's "hinted handoff queue not empty" is a success.
          if (err instanceof HttpError && /hinted handoff queue not empty/.test(err.json?.error ?? '')) {
            resolve({ ok: true });
          } else resolve(toOutcome(err));
        },
        complete() {
          // As the WriteApi does: 204 (or 201) is the only success; another 2xx is an error.
          if (status === undefined || status === 204 || status === 201) resolve({ ok: true });
          else resolve({ ok: false, status, reason: `204 expected, got ${status}`, retryAfterMs: null });
        },
      });
    });
  }

  return {
    async write(lines) {
      if (closed) return { ok: false, status: 'network', reason: 'writer closed', retryAfterMs: null };
      if (inFlight >= maxInFlight) throw new Error(`LineWriter.write called with ${inFlight} writes in flight`);
      inFlight++;
      try {
        return await post(isEncoded(lines) ? lines.bytes() : lines.join('\n'));
      } finally {
        inFlight--;
      }
    },
    close() {
      closed = true;
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
