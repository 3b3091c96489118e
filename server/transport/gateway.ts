/**
 * The hub's one HTTP(S) server and its WebSocket upgrade routing.
 *
 * Device upgrades (`/v1/device` [PROTO-1.1]) are checked in the `upgrade` handler BEFORE
 * `handleUpgrade`, cheapest check first: shutting down (503), handshake rate (429, token bucket),
 * capacity (503), subprotocol `esp32hub.v1` (400), `Authorization: Bearer` token (401) [PROTO-1.2].
 * A refused request gets a coded HTTP response and never reaches a session or the pipeline; it is
 * counted and logged (code, reason, address, path; never the token), rate-limited per code and address.
 * Other paths are handed to handlers registered with `registerUpgrade` (e.g. the live endpoint).
 * The device `WebSocketServer` runs with `noServer`, `maxPayload` from config (≤ 16 KiB), no
 * permessage-deflate, and no client tracking (sessions are tracked by the hub).
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import { SUBPROTOCOL } from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import type { ErrorCode } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { createLogLimiter } from '../log/rate-limit.ts';
import type { Metrics } from '../metrics/index.ts';
import {
  bearerToken,
  offeredSubprotocols,
  refusalLogFields,
  refuseUpgrade,
  requestPath,
  TokenBucket,
} from './handshake.ts';
import type { DeviceLink, LinkHandlers } from './link.ts';
import { encodeAck, encodeWsAck } from './outbound.ts';

export const DEVICE_PATH = '/v1/device';

/** Handles an upgrade request for a registered path; it owns `socket` from then on. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** Maps a device token to its device id, or null when unknown/revoked [PROTO-1.2]. */
export type Authenticate = (token: string) => string | null | Promise<string | null>;

/** What the gateway needs from a device connection once upgraded. */
export interface DeviceConnection {
  /** Heartbeat sweep step [PROTO-1.5]. */
  heartbeat(): void;
  /** Drops the connection at once (used by `close()` for whatever is still open). */
  terminate(): void;
}

export interface GatewayOptions {
  config: Readonly<HubConfig>;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  authenticate: Authenticate;
  /** Creates the session for an authenticated, upgraded device socket (wrapped as a {@link DeviceLink}). */
  onDeviceSocket: (link: DeviceLink, deviceId: string, req: IncomingMessage) => DeviceConnection;
  /** Plain HTTP requests (health, metrics, REST API, web page). */
  onRequest: (req: IncomingMessage, res: ServerResponse) => void;
}

export interface Gateway {
  /** Routes WebSocket upgrades for `path` (exact match, query ignored) to `handler`. */
  registerUpgrade(path: string, handler: UpgradeHandler): void;
  listen(): Promise<{ port: number }>;
  /** Refuses new device handshakes (503) and stops the listener accepting connections. */
  stopAccepting(): void;
  /** Closes the listener and every remaining connection. */
  close(): Promise<void>;
  /** Device sockets open or being upgraded. */
  deviceConnections(): number;
  listening(): boolean;
}

export function createGateway(opts: GatewayOptions): Gateway {
  const { config, metrics, logger } = opts;
  const tls = config.server.tls;
  const server = tls
    ? createHttpsServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) })
    : createHttpServer();
  // Slow-loris bounds for plain requests; upgraded sockets are governed by the heartbeat instead.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.devices.maxPayloadBytes,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

  const routes = new Map<string, UpgradeHandler>();
  const bucket = new TokenBucket(config.devices.handshakesPerSec, opts.now);
  const connections = new Set<DeviceConnection>();
  let deviceSockets = 0;
  let accepting = true;
  let isListening = false;
  let serverClosed: Promise<void> | null = null;
  const closeServer = (): Promise<void> => {
    serverClosed ??= isListening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    return serverClosed;
  };

  // Refusals are logged at info/warn, the first per (endpoint, code, address) at once and the rest as a
  // summary every 10 s, so a flood of bad handshakes cannot flood the log (server/log/rate-limit.ts).
  const refusals = createLogLimiter({ logger });
  const refuse = (req: IncomingMessage, socket: Duplex, code: ErrorCode, endpoint: string): void => {
    const fields = refusalLogFields(req, code, endpoint);
    refusals.hit('handshake', `${endpoint}|${code}|${fields.remote}`, {
      level: code === 'SHUTTING_DOWN' || code === 'NOT_FOUND' ? 'info' : 'warn',
      msg: `handshake refused: ${code}`,
      fields,
    });
    refuseUpgrade(socket, code, endpoint, metrics);
  };

  const sweep = setInterval(() => {
    for (const c of connections) c.heartbeat();
  }, config.devices.heartbeatIntervalSec * 1000);
  sweep.unref();

  server.on('request', opts.onRequest);
  server.on('clientError', (err, socket) => {
    logger.debug({ err }, 'HTTP client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (err) => logger.debug({ err }, 'upgrade socket error'));
    const path = requestPath(req.url);
    if (path === DEVICE_PATH) {
      void deviceUpgrade(req, socket, head);
      return;
    }
    const handler = routes.get(path);
    if (handler) handler(req, socket, head);
    else refuse(req, socket, 'NOT_FOUND', 'unknown');
  });

  async function deviceUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const endpoint = 'device';
    if (!accepting) return refuse(req, socket, 'SHUTTING_DOWN', endpoint);
    if (!bucket.take()) return refuse(req, socket, 'RATE_LIMITED', endpoint);
    if (deviceSockets >= config.devices.maxConnections) return refuse(req, socket, 'AT_CAPACITY', endpoint);
    if (!offeredSubprotocols(req.headers['sec-websocket-protocol']).has(SUBPROTOCOL)) {
      return refuse(req, socket, 'BAD_SUBPROTOCOL', endpoint);
    }
    const token = bearerToken(req.headers.authorization);
    let deviceId: string | null = null;
    if (token !== null) {
      try {
        deviceId = await opts.authenticate(token);
      } catch (err) {
        logger.error({ err }, 'device authentication failed internally');
        return refuse(req, socket, 'INTERNAL', endpoint);
      }
    }
    if (deviceId === null) return refuse(req, socket, 'UNAUTHORIZED', endpoint);
    if (socket.destroyed) return;
    if (!accepting) return refuse(req, socket, 'SHUTTING_DOWN', endpoint);
    // Counted from here until the TCP socket closes, whether or not ws completes the handshake.
    deviceSockets++;
    socket.once('close', () => {
      deviceSockets--;
    });
    const id = deviceId;
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = opts.onDeviceSocket(new WebSocketLink(ws, req.socket.remoteAddress), id, req);
      connections.add(conn);
      ws.once('close', () => connections.delete(conn));
    });
  }

  return {
    registerUpgrade(path, handler) {
      if (path === DEVICE_PATH) throw new Error(`${DEVICE_PATH} is the device endpoint`);
      routes.set(path, handler);
    },
    listen() {
      return new Promise((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen(config.server.port, config.server.host, () => {
          server.off('error', onError);
          isListening = true;
          resolve({ port: (server.address() as AddressInfo).port });
        });
      });
    },
    stopAccepting() {
      accepting = false;
      void closeServer();
    },
    async close() {
      accepting = false;
      clearInterval(sweep);
      const closing = closeServer();
      server.closeAllConnections();
      for (const c of connections) c.terminate();
      await closing;
      isListening = false;
      wss.close();
      refusals.close();
    },
    deviceConnections: () => deviceSockets,
    listening: () => isListening,
  };
}

/** The ws (8.x) internals the ACK fast path reads: the socket, and the sender's state (0: idle). */
interface WsInternals {
  _socket?: Socket;
  _sender?: { _state?: number };
}

/** A device WebSocket as a {@link DeviceLink} for the session state machine. */
export class WebSocketLink implements DeviceLink {
  readonly transport = 'websocket' as const;

  constructor(
    private readonly ws: WebSocket,
    readonly remoteAddress: string | undefined,
  ) {}

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  attach(h: LinkHandlers): void {
    this.ws.on('message', (data, isBinary) => h.message(data as Buffer, isBinary));
    this.ws.on('pong', () => h.pong());
    // Socket errors end in 'close' (1006); the session counts the disconnect there.
    this.ws.on('error', () => undefined);
    this.ws.on('close', (code) => h.closed(code));
  }

  isOpen(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  send(frame: Uint8Array): void {
    this.ws.send(frame);
  }

  /**
   * The ACK as one pre-framed buffer written straight to the socket: one `write` instead of ws's
   * header buffer, options object and corked two-chunk `writev` (with 1,000 devices an ACK goes out
   * for almost every frame). Safe because ws's sender writes synchronously while it is idle, which
   * it always is here (no permessage-deflate, no Blobs): a direct write cannot overtake a queued frame.
   * Anything else (another ws version, a busy sender) takes the ordinary path.
   */
  sendAck(bootId: number, seq: number): void {
    const w = this.ws as unknown as WsInternals;
    const socket = w._socket;
    if (socket !== undefined && w._sender?._state === 0 && this.ws.readyState === this.ws.OPEN) {
      socket.write(encodeWsAck(bootId, seq));
    } else this.ws.send(encodeAck(bootId, seq));
  }

  close(code: number, reason: string, finalFrame?: Uint8Array): void {
    if (finalFrame) this.ws.send(finalFrame);
    this.ws.close(code, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }

  ping(): void {
    this.ws.ping();
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }
}
