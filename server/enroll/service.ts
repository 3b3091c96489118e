/**
 * The hub's enrollment decisions [PROTO-8.3]: what an ENROLL request becomes (pending, auto-approved by
 * the fleet secret, refused), the token hand-over to a connected board (token generated at that moment
 * through the registry, only its hash stored; a re-hand-over rotates), the CONFIRM, and reconciling the
 * connected boards with every change of the enrollment store — the hub's own or the CLI's.
 *
 * Logs name the hardware id, device id, model, firmware version and peer address; never the token, the
 * fleet secret or the enroll key (only a fingerprint of its hash).
 */
import { createHash } from 'node:crypto';
import { type Enroll, EnrollStatus, type EnrollStatusId } from '../codec/index.ts';
import type { HubConfig } from '../config/index.ts';
import type { ErrorCode } from '../errors.ts';
import { secretsEqual } from '../http/auth.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import type { DeviceRegistry } from '../registry/index.ts';
import { type EnrollEntry, type EnrollSnapshot, type EnrollStore, isRejected, pendingCount } from './store.ts';

/** What the service needs from one board's enrollment socket. */
export interface EnrollConn {
  readonly remote: string | null;
  sendStatus(status: EnrollStatusId, deviceId: string, token: string, message: string): void;
  /** Sends ERROR `code` (FATAL unless `fatal` is false) and closes with the code's close code. */
  refuse(code: ErrorCode, message: string, fatal?: boolean): void;
  close(code: number, reason: string): void;
  isOpen(): boolean;
}

interface Board {
  conn: EnrollConn;
  hardwareId: string;
  keySha256: string;
  /** waiting: pending; handing: token being issued; handed: sent, awaiting CONFIRM; done: closed or refused. */
  phase: 'waiting' | 'handing' | 'handed' | 'done';
}

export interface EnrollServiceOptions {
  config: Readonly<HubConfig['enroll']>;
  store: EnrollStore;
  registry: Pick<DeviceRegistry, 'add' | 'rotate' | 'get'>;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
}

export interface EnrollService {
  /** Handles a board's ENROLL; resolves once it is answered (pending, approved, refused). */
  request(conn: EnrollConn, req: Enroll): Promise<void>;
  /** ENROLL_CONFIRM from `conn`; false when it was not expected (the caller refuses UNEXPECTED_MESSAGE). */
  confirm(conn: EnrollConn): Promise<boolean>;
  disconnected(conn: EnrollConn): void;
  /** Boards connected and waiting (pending or mid hand-over). */
  connected(): number;
  start(): Promise<void>;
  stop(): void;
}

export function keyHash(enrollKey: Uint8Array): string {
  return createHash('sha256').update(enrollKey).digest('hex');
}

export function createEnrollService(o: EnrollServiceOptions): EnrollService {
  const { config, store, registry, metrics, now } = o;
  const logger = o.logger.child({ component: 'enroll' });
  const boards = new Map<string, Board>(); // by hardware id
  const byConn = new Map<EnrollConn, Board>();
  let unsubscribe: (() => void) | null = null;
  let gaugeTimer: NodeJS.Timeout | null = null;

  const refused = (reason: ErrorCode): void => {
    metrics.enrollRefused.inc({ reason });
  };

  const refuse = (b: Board, code: ErrorCode, message: string, fatal = true): void => {
    b.phase = 'done';
    refused(code);
    b.conn.refuse(code, message, fatal);
  };

  const rejectBoard = (b: Board): void => {
    b.phase = 'done';
    b.conn.sendStatus(EnrollStatus.REJECTED, '', '', 'rejected by an operator');
    refused('ENROLL_REJECTED');
    b.conn.refuse('ENROLL_REJECTED', 'this board was rejected by an operator');
  };

  async function handOver(b: Board, e: EnrollEntry): Promise<void> {
    b.phase = 'handing';
    const deviceId = e.deviceId as string;
    let token: string;
    try {
      const existing = registry.get(deviceId);
      token = existing ? (await registry.rotate(deviceId)).token : (await registry.add(deviceId)).token;
      const rotation = e.handOvers > 0 || existing !== undefined;
      await store.mutate((s) => {
        const x = s.entries.get(b.hardwareId);
        if (x && x.keySha256 === b.keySha256 && x.state === 'approved') {
          x.handedOverAtMs = now();
          x.handOvers += 1;
        }
      });
      if (!b.conn.isOpen()) {
        // The token went nowhere; the board's next request rotates it again [PROTO-8.3.5].
        b.phase = 'done';
        logger.info(
          { hardwareId: b.hardwareId, deviceId },
          'enrollment hand-over: board gone before the token was sent',
        );
        return;
      }
      b.conn.sendStatus(EnrollStatus.APPROVED, deviceId, token, 'approved');
      b.phase = 'handed';
      metrics.enrollRequests.inc({ outcome: 'handed_over' });
      logger.info(
        { hardwareId: b.hardwareId, deviceId, rotation, remote: b.conn.remote },
        'enrollment token handed over (waiting for the board to confirm)',
      );
    } catch (err) {
      logger.error({ err, hardwareId: b.hardwareId, deviceId }, 'enrollment hand-over failed');
      refuse(b, 'INTERNAL', 'the hub could not issue the token; retry later');
    }
  }

  /** Brings one connected board in line with the store's current state. */
  function reconcile(b: Board, s: EnrollSnapshot): void {
    if (b.phase !== 'waiting') return;
    if (isRejected(s, b.hardwareId, b.keySha256)) {
      rejectBoard(b);
      return;
    }
    const e = s.entries.get(b.hardwareId);
    if (!e || e.state === 'delivered') {
      b.phase = 'done';
      b.conn.close(1000, e ? 'already enrolled' : 'the request is no longer pending; enroll again');
      return;
    }
    if (e.keySha256 !== b.keySha256) {
      if (e.state === 'pending') {
        b.phase = 'done';
        b.conn.close(4001, 'a newer request for this hardware id replaced this one');
      } else refuse(b, 'ENROLL_KEY_MISMATCH', 'this hardware id was approved for another enroll key');
      return;
    }
    if (e.state === 'approved') void handOver(b, e);
  }

  function onChange(before: EnrollSnapshot, after: EnrollSnapshot): void {
    metrics.enrollPending.set(pendingCount(after));
    for (const e of after.entries.values()) {
      const old = before.entries.get(e.hardwareId);
      if (e.state === 'approved' && (old?.state !== 'approved' || old.keySha256 !== e.keySha256)) {
        const outcome = e.approvedBy === 'fleet-secret' ? 'auto_approved' : 'approved';
        metrics.enrollRequests.inc({ outcome });
        logger.info(
          { hardwareId: e.hardwareId, deviceId: e.deviceId, by: e.approvedBy },
          outcome === 'auto_approved'
            ? 'enrollment auto-approved (fleet secret)'
            : 'enrollment approved by an operator',
        );
      }
    }
    const known = new Set(before.rejections.map((r) => `${r.hardwareId}|${r.keySha256}|${r.rejectedAtMs}`));
    for (const r of after.rejections) {
      if (known.has(`${r.hardwareId}|${r.keySha256}|${r.rejectedAtMs}`)) continue;
      metrics.enrollRequests.inc({ outcome: 'rejected' });
      logger.info({ hardwareId: r.hardwareId }, 'enrollment rejected by an operator');
    }
    for (const b of boards.values()) reconcile(b, after);
  }

  type Decision = 'pending' | 'approved' | 'rejected' | 'key_mismatch' | 'full';

  return {
    async request(conn, req) {
      const hardwareId = req.hardwareId;
      const keySha256 = keyHash(req.enrollKey);
      const b: Board = { conn, hardwareId, keySha256, phase: 'waiting' };
      byConn.set(conn, b);
      const fields = {
        hardwareId,
        model: req.model,
        firmwareVersion: req.firmwareVersion,
        remote: conn.remote,
        key: keySha256.slice(0, 8),
      };
      // A secret sent to a hub that has none configured is ignored: the request waits for an operator.
      const secretGiven = req.fleetSecret !== '' && config.fleetSecret !== null;
      const secretOk = secretGiven && secretsEqual(req.fleetSecret, config.fleetSecret as string);
      if ((secretGiven && !secretOk) || (config.mode === 'secret' && !secretOk)) {
        logger.warn(
          { ...fields, secretGiven },
          secretGiven ? 'enrollment refused: wrong fleet secret' : 'enrollment refused: the fleet secret is required',
        );
        refuse(
          b,
          'ENROLL_SECRET_INVALID',
          secretGiven ? 'the fleet secret does not match' : 'a fleet secret is required',
        );
        return;
      }
      const t = now();
      let replacedKey = false;
      let autoBlocked = false;
      const decision = await store.mutate((s): Decision => {
        if (isRejected(s, hardwareId, keySha256)) return 'rejected';
        const e = s.entries.get(hardwareId);
        const canAuto = (id: string, previous: string | null): boolean => {
          if (!secretOk) return false;
          const taken =
            previous !== null ||
            registry.get(id) !== undefined ||
            [...s.entries.values()].some((x) => x.hardwareId !== hardwareId && x.deviceId === id);
          if (taken) autoBlocked = true;
          return !taken;
        };
        if (e && e.state !== 'delivered') {
          if (e.keySha256 === keySha256) {
            e.lastSeenAtMs = t;
            e.remote = conn.remote;
            e.model = req.model;
            e.firmwareVersion = req.firmwareVersion;
            if (e.state === 'approved') return 'approved';
            if (!canAuto(hardwareId, e.previousDeviceId)) return 'pending';
            approveBySecret(e, t);
            return 'approved';
          }
          if (e.state === 'approved') return 'key_mismatch';
          replacedKey = true;
        }
        const previousDeviceId = e?.state === 'delivered' ? e.deviceId : (e?.previousDeviceId ?? null);
        if (!replacedKey && pendingCount(s) >= config.maxPending && !canAuto(hardwareId, previousDeviceId)) {
          return 'full';
        }
        const entry: EnrollEntry = {
          hardwareId,
          keySha256,
          state: 'pending',
          model: req.model,
          firmwareVersion: req.firmwareVersion,
          remote: conn.remote,
          requestedAtMs: t,
          lastSeenAtMs: t,
          deviceId: null,
          previousDeviceId,
          approvedAtMs: null,
          approvedBy: null,
          handedOverAtMs: null,
          handOvers: 0,
          confirmedAtMs: null,
        };
        if (canAuto(hardwareId, previousDeviceId)) approveBySecret(entry, t);
        s.entries.set(hardwareId, entry);
        return entry.state === 'approved' ? 'approved' : 'pending';
      });
      if (replacedKey) logger.warn(fields, 'enrollment request replaced a pending one with another enroll key');
      if (autoBlocked) {
        logger.warn(
          fields,
          'fleet secret correct, but this device id is taken or was enrolled before: an operator decides',
        );
      }
      if (!conn.isOpen()) {
        b.phase = 'done';
        byConn.delete(conn);
        return;
      }
      switch (decision) {
        case 'rejected':
          logger.info(fields, 'enrollment request from a rejected board');
          return rejectBoard(b);
        case 'key_mismatch':
          logger.warn(fields, 'enrollment refused: the hardware id was approved for another enroll key');
          return refuse(b, 'ENROLL_KEY_MISMATCH', 'this hardware id was approved for another enroll key');
        case 'full':
          logger.warn({ ...fields, maxPending: config.maxPending }, 'enrollment refused: the pending list is full');
          return refuse(b, 'ENROLL_PENDING_FULL', 'the pending list is full; retry later', false);
        default:
          break;
      }
      const older = boards.get(hardwareId);
      if (older && older.conn !== conn) {
        older.phase = 'done';
        older.conn.close(4001, 'a newer request for this hardware id replaced this one');
      }
      boards.set(hardwareId, b);
      if (decision === 'pending') {
        metrics.enrollRequests.inc({ outcome: 'pending' });
        logger.info(fields, 'enrollment request pending (approve: npm run hub -- devices approve <hardwareId>)');
        conn.sendStatus(EnrollStatus.PENDING, '', '', 'waiting for an operator to approve this board');
      }
      // An approval may have landed while we decided; pending boards get their token as soon as one does.
      reconcile(b, store.snapshot());
    },

    async confirm(conn) {
      const b = byConn.get(conn);
      if (b?.phase !== 'handed') return false;
      b.phase = 'done';
      const deviceId = await store.mutate((s) => {
        const e = s.entries.get(b.hardwareId);
        if (!e || e.keySha256 !== b.keySha256 || e.state !== 'approved') return null;
        e.state = 'delivered';
        e.confirmedAtMs = now();
        return e.deviceId;
      });
      metrics.enrollRequests.inc({ outcome: 'confirmed' });
      logger.info({ hardwareId: b.hardwareId, deviceId }, 'enrollment confirmed: the board stored its token');
      conn.close(1000, 'enrolled');
      return true;
    },

    disconnected(conn) {
      const b = byConn.get(conn);
      byConn.delete(conn);
      if (b && boards.get(b.hardwareId) === b) boards.delete(b.hardwareId);
      if (b && b.phase === 'handed') {
        logger.info(
          { hardwareId: b.hardwareId },
          'enrollment: the board left before confirming; its next request gets a new token',
        );
      }
      if (b) b.phase = 'done';
    },

    connected: () => boards.size,

    async start() {
      await store.refresh();
      metrics.enrollPending.set(pendingCount(store.snapshot()));
      unsubscribe = store.onChange(onChange);
      // Requests expire without any write; keep the gauge honest between changes.
      gaugeTimer = setInterval(() => metrics.enrollPending.set(pendingCount(store.snapshot())), 30_000);
      gaugeTimer.unref();
    },

    stop() {
      unsubscribe?.();
      if (gaugeTimer) clearInterval(gaugeTimer);
      for (const b of boards.values()) b.phase = 'done';
      boards.clear();
      byConn.clear();
    },
  };
}

function approveBySecret(e: EnrollEntry, t: number): void {
  e.state = 'approved';
  e.deviceId = e.hardwareId;
  e.approvedAtMs = t;
  e.approvedBy = 'fleet-secret';
  e.handedOverAtMs = null;
}
