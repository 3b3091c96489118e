/**
 * The device's connection to the hub, behind a small interface so the same device code runs over a
 * real WebSocket (`wsConnector`), over an in-memory loopback in deterministic tests, or through a
 * throttled wrapper (`slowLink`) for the slow-link scenario.
 */
import WebSocket from 'ws';
import { SUBPROTOCOL } from '../server/codec/index.ts';
import type { Clock, TimerHandle } from './clock.ts';

export interface LinkCloseInfo {
  /** WebSocket close code (1006 for an abnormal end, also when the connection never opened). */
  code: number;
  reason: string;
  /** Whether the WebSocket handshake had completed. */
  opened: boolean;
  /** HTTP status when the hub refused the handshake (401, 400, 429, 503…). */
  httpStatus?: number;
  /** System error code when the connection failed (ECONNREFUSED, ETIMEDOUT…). */
  error?: string;
}

export interface LinkHandlers {
  open(): void;
  message(data: Uint8Array, isBinary: boolean): void;
  pong(): void;
  /** Called exactly once per link, whether or not it opened. */
  close(info: LinkCloseInfo): void;
}

export interface Link {
  /** Queues a message; `done` runs once it is written (or failed). */
  send(data: Uint8Array | string, done?: (err?: Error) => void): void;
  /** Bytes queued but not yet written to the socket: the device's backpressure signal. */
  readonly bufferedAmount: number;
  ping(): void;
  close(code?: number, reason?: string): void;
  /** Drops the connection at once (a board losing power or its TCP stack resetting). */
  terminate(): void;
  /**
   * The network silently stops carrying this connection, both ways, as when Wi-Fi fades: sends go
   * nowhere, nothing (messages, pongs) arrives, and neither end is told. The device learns from its
   * heartbeat; the hub from its own, or from the connection that replaces this one. `close` and
   * `terminate` still end the link locally and report the close.
   */
  blackhole(): void;
}

export interface ConnectRequest {
  url: string;
  deviceId: string;
  token: string;
}

export type Connector = (request: ConnectRequest, handlers: LinkHandlers) => Link;

export interface WsConnectorOptions {
  /** Opening-handshake timeout (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Largest message accepted from the hub (default 16 KiB, as the hub's own limit [PROTO-1.4]). */
  maxPayloadBytes?: number;
  /** Extra TLS options for wss:// (a private CA, or `rejectUnauthorized: false` for a self-signed test hub). */
  tls?: { ca?: string | Buffer; rejectUnauthorized?: boolean };
}

/**
 * Real WebSocket links with the `ws` package: subprotocol `esp32hub.v1` [PROTO-1.1], the token in the
 * `Authorization` header [PROTO-1.2] (never in the URL), permessage-deflate off (small binary frames
 * gain nothing and cost a board RAM).
 */
export function wsConnector(options: WsConnectorOptions = {}): Connector {
  return (request, handlers) => {
    const ws = new WebSocket(request.url, SUBPROTOCOL, {
      headers: { Authorization: `Bearer ${request.token}` },
      perMessageDeflate: false,
      maxPayload: options.maxPayloadBytes ?? 16 * 1024,
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
      ...(options.tls ?? {}),
    });
    let opened = false;
    let httpStatus: number | undefined;
    let error: string | undefined;
    let silenced = false;
    let closed = false;
    ws.on('open', () => {
      opened = true;
      if (!silenced) handlers.open();
      else ws.pause();
    });
    ws.on('unexpected-response', (_req, res) => {
      httpStatus = res.statusCode;
      res.resume();
      ws.terminate();
    });
    ws.on('message', (data, isBinary) => {
      if (silenced) return;
      const bytes = Array.isArray(data)
        ? Buffer.concat(data)
        : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : (data as Buffer);
      handlers.message(bytes, isBinary);
    });
    ws.on('pong', () => {
      if (!silenced) handlers.pong();
    });
    // Always listen: an unhandled 'error' would crash the process. The close that follows reports it.
    ws.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? 'ERROR';
    });
    ws.on('close', (code, reason) => {
      if (closed) return;
      closed = true;
      const info: LinkCloseInfo = { code, reason: reason.toString('utf8'), opened };
      if (httpStatus !== undefined) info.httpStatus = httpStatus;
      if (error !== undefined && httpStatus === undefined) info.error = error;
      handlers.close(info);
    });
    return {
      send(data, done) {
        if (silenced) {
          done?.(); // into the void: as far as the board can tell, it went out
          return;
        }
        if (ws.readyState !== WebSocket.OPEN) {
          done?.(new Error('not open'));
          return;
        }
        ws.send(data, { binary: typeof data !== 'string' }, done);
      },
      get bufferedAmount() {
        return ws.bufferedAmount;
      },
      ping() {
        if (!silenced && ws.readyState === WebSocket.OPEN) ws.ping();
      },
      close(code = 1000, reason = '') {
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
      },
      terminate() {
        ws.terminate();
      },
      blackhole() {
        silenced = true;
        // Stop reading: the hub's pings go unanswered, so its heartbeat sees a dead peer [PROTO-1.5].
        if (ws.readyState === WebSocket.OPEN) ws.pause();
      },
    };
  };
}

export interface SlowLinkOptions {
  /** One-way latency added to every message, both directions (ms). */
  latencyMs: number;
  /** Uplink bandwidth in bytes per second (frames are serialised one after another). */
  uplinkBytesPerSec: number;
  /**
   * Bytes the throttled uplink may hold; a send beyond it closes the link (a stalled TCP connection
   * giving up). Devices check `bufferedAmount` first, so this only trips on a misbehaving sender.
   */
  maxQueuedBytes?: number;
}

/** Counters of every slow link built by one `slowLink` wrapper. */
export interface SlowLinkStats {
  overflows: number;
}

/**
 * Wraps a connector with a slow, high-latency link (a board at the edge of Wi-Fi range or behind a
 * congested uplink): sends are serialised at `uplinkBytesPerSec` and arrive `latencyMs` later;
 * received messages are delayed by `latencyMs`. `bufferedAmount` includes the throttled bytes, so the
 * device's backpressure sees the slow link.
 */
export function slowLink(
  inner: Connector,
  clock: Clock,
  options: SlowLinkOptions,
  stats: SlowLinkStats = { overflows: 0 },
): Connector {
  const maxQueued = options.maxQueuedBytes ?? 256 * 1024;
  return (request, handlers) => {
    let queued = 0;
    let wireFreeAt = 0;
    let dead = false;
    const timers = new Set<TimerHandle>();
    const later = (delayMs: number, fn: () => void) => {
      const t = clock.setTimeout(() => {
        timers.delete(t);
        fn();
      }, delayMs);
      timers.add(t);
    };
    const link = inner(request, {
      open: () => later(options.latencyMs, () => !dead && handlers.open()),
      message: (data, isBinary) => later(options.latencyMs, () => !dead && handlers.message(data, isBinary)),
      pong: () => later(options.latencyMs, () => !dead && handlers.pong()),
      close: (info) => {
        later(options.latencyMs, () => {
          if (dead) return;
          dead = true;
          for (const t of timers) clock.clearTimeout(t);
          timers.clear();
          handlers.close(info);
        });
      },
    });
    return {
      send(data, done) {
        const size = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
        if (queued + size > maxQueued) {
          stats.overflows++;
          link.terminate();
          done?.(new Error('slow link overflow'));
          return;
        }
        queued += size;
        const now = clock.now();
        wireFreeAt = Math.max(wireFreeAt, now) + (size * 1000) / options.uplinkBytesPerSec;
        later(wireFreeAt - now + options.latencyMs, () => {
          queued -= size;
          link.send(data, done);
        });
      },
      get bufferedAmount() {
        return queued + link.bufferedAmount;
      },
      ping: () => later(options.latencyMs, () => link.ping()),
      close: (code, reason) => link.close(code, reason),
      terminate: () => link.terminate(),
      blackhole() {
        for (const t of timers) clock.clearTimeout(t);
        timers.clear();
        queued = 0;
        link.blackhole();
      },
    };
  };
}
