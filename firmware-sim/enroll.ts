/**
 * A simulated board's self-enrollment [PROTO-8]: it starts with no token, connects to `/v1/enroll`
 * (subprotocol `esp32hub.enroll.v1`), sends ENROLL with its hardware id and its enroll key (16 random
 * bytes made once, kept in `<stateDir>/<id>/enroll-key` when a state dir is given), waits while
 * pending, and on approval stores the device token in its NVS (`<stateDir>/<id>/nvs.json`), sends
 * ENROLL_CONFIRM and is done. On rejection it stops for good; a dropped socket or a full pending list
 * is retried with backoff [PROTO-5.6]; a wrong fleet secret, a key mismatch or a refused handshake
 * (400/403/404) ends it.
 *
 * ```ts
 * const r = await enrollBoard({ url: 'ws://hub:8080/v1/enroll', hardwareId: 'sim-0001', stateDir });
 * if (r.outcome === 'approved') new Fleet({ tokens: new Map([[r.deviceId, r.token]]), stateDir, ... });
 * ```
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { decodeEnrollFrame, ENROLL_SUBPROTOCOL, EnrollStatus, encodeEnrollFrame } from '../server/codec/index.ts';
import { errorCodeFromWire } from '../server/errors.ts';
import { FileBoardStore } from './board-store.ts';

export type EnrollOutcome =
  | { outcome: 'approved'; hardwareId: string; deviceId: string; token: string }
  | { outcome: 'rejected' | 'refused' | 'aborted'; hardwareId: string; reason: string };

export interface EnrollBoardOptions {
  /** The hub's enrollment endpoint, e.g. ws://localhost:8080/v1/enroll. */
  url: string;
  hardwareId: string;
  /** Keeps the enroll key and, once approved, the token (default: in memory, this run only). */
  stateDir?: string | null;
  /** The board's enroll key; default: from the state dir, else made now. */
  enrollKey?: Uint8Array;
  fleetSecret?: string;
  model?: string;
  firmwareVersion?: string;
  /** Reconnect backoff, ms (default 1000 doubling to 60,000, ±20 % jitter). */
  backoff?: { minMs: number; maxMs: number };
  /** Ends the attempt (outcome `aborted`). */
  signal?: AbortSignal;
  /** Status updates: `pending` each time the hub says so, `retry` before a reconnect. */
  onStatus?: (status: 'pending' | 'retry', detail: string) => void;
  /** Sends ENROLL_CONFIRM after storing the token (default true; false simulates a board that lost power first). */
  confirm?: boolean;
  tls?: { rejectUnauthorized?: boolean };
}

/** The enrollment endpoint next to a device endpoint URL: `ws://h:p/v1/device` → `ws://h:p/v1/enroll`. */
export function enrollUrlFor(deviceUrl: string): string {
  const u = new URL(deviceUrl);
  u.pathname = u.pathname.replace(/\/v1\/device\/?$/, '').replace(/\/$/, '') + '/v1/enroll';
  return u.toString();
}

/** The board's enroll key: kept in `<stateDir>/<id>/enroll-key` (hex, mode 0600) when a state dir is given. */
export function enrollKeyFor(stateDir: string | null | undefined, hardwareId: string): Uint8Array {
  if (!stateDir) return new Uint8Array(randomBytes(16));
  const dir = join(stateDir, hardwareId);
  const path = join(dir, 'enroll-key');
  if (existsSync(path)) {
    const hex = readFileSync(path, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(hex)) return new Uint8Array(Buffer.from(hex, 'hex'));
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = new Uint8Array(randomBytes(16));
  writeFileSync(path, `${Buffer.from(key).toString('hex')}\n`, { mode: 0o600 });
  return key;
}

/** Writes the token into the board's NVS in the state dir (what `--state-dir` runs read back). */
function storeToken(stateDir: string, deviceId: string, token: string): void {
  const store = new FileBoardStore(stateDir, deviceId);
  try {
    const nvs = store.readNvs();
    store.writeNvs({ ...nvs, token });
  } finally {
    store.close();
  }
}

/** Runs one board's enrollment to its end. Never throws; the outcome says what happened. */
export function enrollBoard(o: EnrollBoardOptions): Promise<EnrollOutcome> {
  const hardwareId = o.hardwareId;
  const key = o.enrollKey ?? enrollKeyFor(o.stateDir, hardwareId);
  const minMs = o.backoff?.minMs ?? 1000;
  const maxMs = o.backoff?.maxMs ?? 60_000;
  let delayMs = minMs;
  return new Promise((resolve) => {
    let done = false;
    let ws: WebSocket | null = null;
    let retryTimer: NodeJS.Timeout | null = null;
    const finish = (r: EnrollOutcome) => {
      if (done) return;
      done = true;
      if (retryTimer) clearTimeout(retryTimer);
      o.signal?.removeEventListener('abort', onAbort);
      if (ws && ws.readyState !== WebSocket.CLOSED) ws.terminate();
      resolve(r);
    };
    const onAbort = () => finish({ outcome: 'aborted', hardwareId, reason: 'aborted' });
    if (o.signal?.aborted) return onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });

    const retry = (why: string) => {
      if (done) return;
      const jitter = 1 + (Math.random() * 0.4 - 0.2);
      const wait = Math.round(delayMs * jitter);
      delayMs = Math.min(maxMs, delayMs * 2);
      o.onStatus?.('retry', `${why}; retrying in ${wait} ms`);
      retryTimer = setTimeout(connect, wait);
    };

    function connect(): void {
      if (done) return;
      let outcome: EnrollOutcome | null = null;
      let failure: string | null = null;
      let httpStatus: number | undefined;
      const sock = new WebSocket(o.url, ENROLL_SUBPROTOCOL, {
        perMessageDeflate: false,
        maxPayload: 4096,
        handshakeTimeout: 10_000,
        ...(o.tls ?? {}),
      });
      ws = sock;
      sock.on('unexpected-response', (_req, res) => {
        httpStatus = res.statusCode;
        res.resume();
        sock.terminate();
      });
      sock.on('open', () => {
        sock.send(
          encodeEnrollFrame({
            type: 'enroll',
            hardwareId,
            enrollKey: key,
            fleetSecret: o.fleetSecret ?? '',
            model: o.model ?? 'esp32-sim',
            firmwareVersion: o.firmwareVersion ?? 'sim',
          }),
        );
      });
      sock.on('message', (data) => {
        let m: ReturnType<typeof decodeEnrollFrame>;
        try {
          m = decodeEnrollFrame(data as Buffer);
        } catch (err) {
          failure = `bad frame from the hub: ${(err as Error).message}`;
          sock.terminate();
          return;
        }
        if (m.type === 'enroll_status') {
          if (m.status === EnrollStatus.PENDING) {
            delayMs = minMs; // the hub heard us: a later drop starts the backoff afresh
            o.onStatus?.('pending', m.message);
          } else if (m.status === EnrollStatus.APPROVED) {
            // Store first, then confirm: a board that loses power in between asks again and gets a new token.
            if (o.stateDir) storeToken(o.stateDir, m.deviceId, m.token);
            outcome = { outcome: 'approved', hardwareId, deviceId: m.deviceId, token: m.token };
            if (o.confirm === false) sock.terminate();
            else sock.send(encodeEnrollFrame({ type: 'enroll_confirm' }));
          } else {
            outcome = { outcome: 'rejected', hardwareId, reason: m.message };
          }
        } else if (m.type === 'error') {
          const code = errorCodeFromWire(m.code) ?? String(m.code);
          if (code === 'ENROLL_REJECTED') outcome ??= { outcome: 'rejected', hardwareId, reason: m.message };
          else if (code === 'ENROLL_SECRET_INVALID' || code === 'ENROLL_KEY_MISMATCH') {
            outcome ??= { outcome: 'refused', hardwareId, reason: `${code}: ${m.message}` };
          } else failure = `${code}: ${m.message}`;
        }
      });
      sock.on('error', (err: NodeJS.ErrnoException) => {
        failure ??= err.code ?? err.message;
      });
      sock.on('close', (code) => {
        if (ws === sock) ws = null;
        if (done) return;
        if (outcome) return finish(outcome);
        if (httpStatus === 400 || httpStatus === 403 || httpStatus === 404) {
          return finish({
            outcome: 'refused',
            hardwareId,
            reason: `the hub refused the handshake (HTTP ${httpStatus})`,
          });
        }
        retry(httpStatus !== undefined ? `HTTP ${httpStatus}` : (failure ?? `closed ${code}`));
      });
    }
    connect();
  });
}
