/**
 * The `/v1/live` WebSocket endpoint: every check runs in the `upgrade` handler before
 * `handleUpgrade`, so a refused browser gets a plain HTTP error and never a WebSocket (nor a byte of
 * live data). Order: shutting down (503) → Origin allowlist (403) → credentials (401/403) → handshake
 * rate (429) → capacity (503).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { ERRORS, type ErrorCode } from '../errors.ts';
import type { DashboardAuth } from '../http/dashboard-auth.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { LiveFanout } from './fanout.ts';
import { MAX_INBOUND_BYTES } from './messages.ts';

export interface LiveEndpointOptions {
  fanout: LiveFanout;
  auth: DashboardAuth;
  metrics: Pick<Metrics, 'handshakesRejected' | 'liveEvictions'>;
  logger: Logger;
  maxClients: number;
  /** Live handshakes accepted per second (token bucket, burst 2×). */
  handshakesPerSec?: number;
  /** Ping period; a client that has not answered the previous ping is cut (ms). */
  heartbeatMs?: number;
}

export interface LiveEndpoint {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  start(): void;
  /**
   * Refuses new handshakes and waits for the open sockets to close (the fan-out sends them 1001);
   * those still open after `graceMs` are cut.
   */
  stop(graceMs?: number): Promise<void>;
}

const REASON_PHRASES: Record<number, string> = {
  401: 'Unauthorized',
  403: 'Forbidden',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

export function createLiveEndpoint(options: LiveEndpointOptions): LiveEndpoint {
  const { fanout, auth, metrics, logger } = options;
  const rate = options.handshakesPerSec ?? 50;
  const heartbeatMs = options.heartbeatMs ?? 30_000;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_INBOUND_BYTES,
    // Browsers would negotiate it; the messages are small and sent once to many clients, and a
    // compressor per client would cost memory and defeat "build once".
    perMessageDeflate: false,
    clientTracking: false,
  });
  const alive = new Map<import('ws').WebSocket, boolean>();
  let tokens = rate * 2;
  let tokensAtMs = Date.now();
  let stopped = true;
  let heartbeat: NodeJS.Timeout | null = null;

  const reject = (socket: Duplex, code: ErrorCode, message: string, extra: Record<string, string> = {}): void => {
    metrics.handshakesRejected.inc({ endpoint: 'live', code });
    const status = ERRORS[code].http ?? 400;
    const body = JSON.stringify({ error: { code, message } });
    const headers = {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      'Cache-Control': 'no-store',
      Connection: 'close',
      ...extra,
    };
    const head = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\r\n');
    if (socket.writable)
      socket.end(`HTTP/1.1 ${status} ${REASON_PHRASES[status] ?? 'Error'}\r\n${head}\r\n\r\n${body}`);
  };

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (err) => logger.debug({ err }, 'live handshake socket error'));
    if (stopped) {
      reject(socket, 'SHUTTING_DOWN', 'the hub is shutting down');
      return;
    }
    if (!auth.origins.originAllowed(req.headers.origin, req.headers.host)) {
      logger.info({ origin: req.headers.origin, host: req.headers.host }, 'live handshake from a forbidden origin');
      reject(socket, 'FORBIDDEN_ORIGIN', 'origin not allowed');
      return;
    }
    const access = auth.check(req);
    if (!access.ok) {
      reject(socket, access.code, access.message);
      return;
    }
    const now = Date.now();
    tokens = Math.min(rate * 2, tokens + ((now - tokensAtMs) * rate) / 1000);
    tokensAtMs = now;
    if (tokens < 1) {
      reject(socket, 'RATE_LIMITED', 'too many live handshakes', { 'Retry-After': '1' });
      return;
    }
    if (fanout.clientCount >= options.maxClients) {
      reject(socket, 'AT_CAPACITY', `live client limit (${options.maxClients}) reached`, { 'Retry-After': '5' });
      return;
    }
    tokens -= 1;
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (stopped) {
        ws.close(1001, 'hub shutting down');
        return;
      }
      const client = fanout.addClient(ws, access.principal.role);
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      ws.on('message', (data, isBinary) => {
        if (isBinary) {
          fanout.evict(client, 'policy', 1003, 'text messages only');
          return;
        }
        fanout.receive(client, (data as Buffer).toString('utf8'));
      });
      ws.on('error', (err) => {
        // ws reports an oversized message (> maxPayload) here and closes with 1009.
        const code = (err as { code?: string }).code;
        if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') fanout.evict(client, 'too_big', 1009, 'message too big');
        else logger.debug({ err, client: client.id }, 'live socket error');
      });
      ws.on('close', () => {
        alive.delete(ws);
        fanout.removeClient(client);
      });
    });
  };

  return {
    handleUpgrade,
    start() {
      stopped = false;
      heartbeat = setInterval(() => {
        for (const [ws, ok] of alive) {
          if (!ok) {
            metrics.liveEvictions.inc({ reason: 'heartbeat' });
            alive.delete(ws);
            ws.terminate();
            continue;
          }
          alive.set(ws, false);
          ws.ping();
        }
      }, heartbeatMs);
      heartbeat.unref();
    },
    async stop(graceMs = 1000) {
      stopped = true;
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = null;
      wss.close();
      if (alive.size === 0) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          clearInterval(check);
          for (const ws of alive.keys()) ws.terminate();
          resolve();
        }, graceMs);
        const check = setInterval(() => {
          if (alive.size > 0) return;
          clearTimeout(timer);
          clearInterval(check);
          resolve();
        }, 10);
        timer.unref();
        check.unref();
      });
      alive.clear();
    },
  };
}
