/**
 * Handshake helpers shared by every WebSocket endpoint (device and live): refusing an upgrade with a
 * proper HTTP response before any WebSocket exists, a token-bucket rate limit, and header parsing.
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode } from '../errors.ts';
import type { Metrics } from '../metrics/index.ts';

/**
 * Answers an upgrade request with the catalogue's HTTP status for `code`, `Connection: close` and a
 * short coded body (`CODE: summary`), counts it in `handshakesRejected{endpoint,code}`, then closes
 * the socket. Nothing of the request reaches the pipeline.
 */
export function refuseUpgrade(
  socket: Duplex,
  code: ErrorCode,
  endpoint: string,
  metrics: Metrics,
  extraHeaders: Record<string, string> = {},
): void {
  metrics.handshakesRejected.inc({ endpoint, code });
  const status = ERRORS[code].http ?? 400;
  const body = `${code}: ${ERRORS[code].summary}\n`;
  const headers: Record<string, string> = {
    Connection: 'close',
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    ...extraHeaders,
  };
  if (status === 401 && !headers['WWW-Authenticate']) headers['WWW-Authenticate'] = 'Bearer';
  if ((status === 429 || status === 503) && !headers['Retry-After']) headers['Retry-After'] = '1';
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n');
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${head}\r\n\r\n${body}`);
}

/**
 * What the log says about a refused upgrade: code, HTTP status, the catalogue's reason, the peer's
 * address (and `X-Forwarded-For` when a proxy set it) and the path WITHOUT its query string. Never a
 * header that may carry a secret (`Authorization`, `Cookie`) and never the query (it may hold a token).
 */
export function refusalLogFields(
  req: IncomingMessage,
  code: ErrorCode,
  endpoint: string,
): { endpoint: string; code: ErrorCode; status: number; reason: string; remote: string; path: string } & {
  forwardedFor?: string;
} {
  const fields = {
    endpoint,
    code,
    status: ERRORS[code].http ?? 400,
    reason: ERRORS[code].summary,
    remote: req.socket.remoteAddress ?? 'unknown',
    path: requestPath(req.url).slice(0, 200),
  };
  const xff = req.headers['x-forwarded-for'];
  return typeof xff === 'string' ? { ...fields, forwardedFor: xff.slice(0, 200) } : fields;
}

/** Token bucket: `ratePerSec` tokens per second, burst of `burst` (default one second's worth). */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly ratePerSec: number,
    private readonly now: () => number,
    private readonly burst: number = ratePerSec,
  ) {
    this.tokens = burst;
    this.last = now();
  }
  /** Takes one token; false when none is left. */
  take(): boolean {
    const t = this.now();
    const elapsed = t - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
      this.last = t;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** The subprotocols a client offered in `Sec-WebSocket-Protocol` (comma-separated, trimmed). */
export function offeredSubprotocols(header: string | string[] | undefined): Set<string> {
  const raw = Array.isArray(header) ? header.join(',') : (header ?? '');
  const out = new Set<string>();
  for (const p of raw.split(',')) {
    const t = p.trim();
    if (t) out.add(t);
  }
  return out;
}

/** The token of an `Authorization: Bearer <token>` header, or null [PROTO-1.2]. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? (m[1] as string) : null;
}

/** The path of a request URL without query string. */
export function requestPath(url: string | undefined): string {
  if (!url) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
