/**
 * The `/v1/enroll` WebSocket endpoint [PROTO-8.1]. The upgrade is checked before any WebSocket exists,
 * cheapest first: shutting down (503), an `Origin` header (403: browsers never enroll), the handshake
 * rate per remote address (429, a token bucket per address), open enrollment sockets (503), the
 * subprotocol `esp32hub.enroll.v1` (400). Refusals are answered with the catalogue's HTTP status, counted
 * in `hub_handshakes_rejected_total{endpoint="enroll"}` and `hub_enroll_refused_total{reason}`, and
 * logged rate-limited (address and path only; the query string is never logged).
 *
 * An accepted socket (maxPayload 1 KiB, no permessage-deflate) must send ENROLL within the hello timeout
 * (else ERROR HELLO_TIMEOUT, close 1002); then ENROLL_CONFIRM after the token hand-over. Anything else is
 * UNEXPECTED_MESSAGE (close 1002); a malformed frame gets its codec error and close code. The hub pings
 * every heartbeat interval and drops a socket that did not answer the previous ping.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import { decodeEnrollFrame, ENROLL_SUBPROTOCOL, type EnrollMessage, encodeEnrollFrame } from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import { ERRORS, type ErrorCode, HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';
import { createLogLimiter } from '../log/rate-limit.ts';
import type { Metrics } from '../metrics/index.ts';
import { offeredSubprotocols, refusalLogFields, refuseUpgrade, TokenBucket } from '../transport/handshake.ts';
import type { EnrollConn, EnrollService } from './service.ts';

/** Largest enrollment message accepted [PROTO-8.1.2]. */
export const ENROLL_MAX_PAYLOAD_BYTES = 1024;
/** Remote addresses whose handshake buckets are kept; beyond it idle ones are dropped. */
const MAX_TRACKED_ADDRESSES = 10_000;

export interface EnrollEndpointOptions {
  config: Readonly<HubConfig>;
  service: EnrollService;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
}

export interface EnrollEndpoint {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Open enrollment sockets. */
  connections(): number;
  /** Refuses new upgrades and closes every enrollment socket with 1001. */
  stop(): void;
}

export function createEnrollEndpoint(o: EnrollEndpointOptions): EnrollEndpoint {
  const { config, service, metrics, now } = o;
  const logger = o.logger.child({ component: 'enroll' });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: ENROLL_MAX_PAYLOAD_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(ENROLL_SUBPROTOCOL) ? ENROLL_SUBPROTOCOL : false),
  });
  const perMin = config.enroll.handshakesPerMinPerIp;
  const buckets = new Map<string, { bucket: TokenBucket; lastMs: number }>();
  const sockets = new Set<WebSocket>();
  const alive = new WeakMap<WebSocket, boolean>();
  let open = 0;
  let accepting = true;
  const refusals = createLogLimiter({ logger });

  const refuse = (req: IncomingMessage, socket: Duplex, code: ErrorCode): void => {
    const fields = refusalLogFields(req, code, 'enroll');
    refusals.hit('handshake', `enroll|${code}|${fields.remote}`, {
      level: code === 'SHUTTING_DOWN' ? 'info' : 'warn',
      msg: `enrollment handshake refused: ${code}`,
      fields,
    });
    metrics.enrollRefused.inc({ reason: code });
    refuseUpgrade(socket, code, 'enroll', metrics);
  };

  const takeToken = (remote: string): boolean => {
    const t = now();
    let entry = buckets.get(remote);
    if (!entry) {
      if (buckets.size >= MAX_TRACKED_ADDRESSES) {
        // A full bucket refills in a minute: entries idle that long hold no state worth keeping.
        for (const [k, v] of buckets) if (t - v.lastMs > 60_000) buckets.delete(k);
        if (buckets.size >= MAX_TRACKED_ADDRESSES) buckets.delete(buckets.keys().next().value as string);
      }
      entry = { bucket: new TokenBucket(perMin / 60, now, perMin), lastMs: t };
      buckets.set(remote, entry);
    }
    entry.lastMs = t;
    return entry.bucket.take();
  };

  const sweep = setInterval(() => {
    for (const ws of sockets) {
      if (alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, config.devices.heartbeatIntervalSec * 1000);
  sweep.unref();

  function accept(ws: WebSocket, remote: string | null): void {
    sockets.add(ws);
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    let gotEnroll = false;
    const send = (m: EnrollMessage): void => {
      if (ws.readyState === ws.OPEN) ws.send(encodeEnrollFrame(m));
    };
    const conn: EnrollConn = {
      remote,
      sendStatus(status, deviceId, token, message) {
        send({ type: 'enroll_status', status, deviceId, token, message });
      },
      refuse(code, message, fatal = true) {
        send({ type: 'error', fatal, code: ERRORS[code].wire, message: message.slice(0, 200) });
        ws.close(ERRORS[code].close ?? 1008, code);
      },
      close(code, reason) {
        if (ws.readyState === ws.OPEN) ws.close(code, reason.slice(0, 120));
      },
      isOpen: () => ws.readyState === ws.OPEN,
    };
    const helloTimer = setTimeout(() => {
      if (!gotEnroll) protocolError('HELLO_TIMEOUT', 'no ENROLL within the timeout');
    }, config.devices.helloTimeoutMs);
    helloTimer.unref();

    const protocolError = (code: ErrorCode, message: string): void => {
      metrics.enrollRefused.inc({ reason: code });
      logger.info({ code, remote }, `enrollment connection ended: ${code}`);
      conn.refuse(code, message);
    };

    ws.on('message', (data, isBinary) => {
      if (!isBinary) return protocolError('TEXT_FRAME', 'send binary frames');
      let m: EnrollMessage;
      try {
        m = decodeEnrollFrame(data as Buffer);
      } catch (err) {
        const code = err instanceof HubError ? err.code : 'INTERNAL';
        return protocolError(code, err instanceof Error ? err.message : 'bad frame');
      }
      if (m.type === 'enroll' && !gotEnroll) {
        gotEnroll = true;
        clearTimeout(helloTimer);
        service.request(conn, m).catch((err: unknown) => {
          logger.error({ err, hardwareId: m.hardwareId }, 'enrollment request failed internally');
          conn.refuse('INTERNAL', 'the hub failed; retry later');
        });
        return;
      }
      if (m.type === 'enroll_confirm') {
        service.confirm(conn).then(
          (ok) => {
            if (!ok) protocolError('UNEXPECTED_MESSAGE', 'ENROLL_CONFIRM before a token was handed over');
          },
          (err: unknown) => {
            logger.error({ err }, 'enrollment confirm failed internally');
            conn.refuse('INTERNAL', 'the hub failed; retry later');
          },
        );
        return;
      }
      if (m.type === 'error') {
        logger.info({ code: m.code, remote }, 'the board sent an ERROR on /v1/enroll');
        if (m.fatal) ws.close(1000);
        return;
      }
      protocolError('UNEXPECTED_MESSAGE', `${m.type} is not expected now`);
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      clearTimeout(helloTimer);
      sockets.delete(ws);
      service.disconnected(conn);
    });
  }

  return {
    handleUpgrade(req, socket, head) {
      socket.on('error', (err) => logger.debug({ err }, 'enrollment upgrade socket error'));
      if (!accepting) return refuse(req, socket, 'SHUTTING_DOWN');
      if (req.headers.origin !== undefined) return refuse(req, socket, 'FORBIDDEN_ORIGIN');
      const remote = req.socket.remoteAddress ?? 'unknown';
      if (!takeToken(remote)) return refuse(req, socket, 'RATE_LIMITED');
      if (open >= config.enroll.maxConnections) return refuse(req, socket, 'AT_CAPACITY');
      if (!offeredSubprotocols(req.headers['sec-websocket-protocol']).has(ENROLL_SUBPROTOCOL)) {
        return refuse(req, socket, 'BAD_SUBPROTOCOL');
      }
      open++;
      metrics.enrollConnections.set(open);
      socket.once('close', () => {
        open--;
        metrics.enrollConnections.set(open);
      });
      wss.handleUpgrade(req, socket, head, (ws) => accept(ws, req.socket.remoteAddress ?? null));
    },
    connections: () => open,
    stop() {
      accepting = false;
      clearInterval(sweep);
      for (const ws of sockets) {
        if (ws.readyState === ws.OPEN) {
          ws.send(
            encodeEnrollFrame({
              type: 'error',
              fatal: true,
              code: ERRORS.SHUTTING_DOWN.wire,
              message: 'shutting down',
            }),
          );
          ws.close(1001, 'SHUTTING_DOWN');
        } else ws.terminate();
      }
      wss.close();
      refusals.close();
    },
  };
}
