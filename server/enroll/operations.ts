/**
 * The operator's decisions on enrollment requests [PROTO-8.3.2], [PROTO-8.3.3]: approve, reject, forget,
 * and the list. Shared by the CLI (`hub devices pending|approve|reject|forget`, with or without a
 * running hub), the admin API and the dashboard. They only change the enrollment store: a running hub
 * notices the change (its own at once, another process's within 250 ms) and hands the token to a
 * connected board, or tells it it was rejected.
 */
import { isDeviceId } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import type { EnrollEntry, EnrollSnapshot, EnrollStore, Rejection } from './store.ts';

export interface OperatorDeps {
  store: EnrollStore;
  /** Whether the registry already holds a device with this id. */
  deviceExists: (deviceId: string) => boolean;
  now?: () => number;
}

/** An enrollment request as the CLI, the API and the page show it. Times are ISO-8601 UTC. */
export interface EnrollView {
  hardwareId: string;
  state: 'pending' | 'approved' | 'delivered';
  model: string;
  firmwareVersion: string;
  remote: string | null;
  requestedAt: string;
  lastSeenAt: string;
  /** The id it gets (approved, delivered) or had before (a pending re-enrollment). */
  deviceId: string | null;
  approvedBy: 'operator' | 'fleet-secret' | null;
  approvedAt: string | null;
  /** The token was handed over but the board has not confirmed yet. */
  handedOver: boolean;
  confirmedAt: string | null;
  /** First 8 hex digits of SHA-256(enrollKey): tells two boards claiming one hardware id apart. */
  keyFingerprint: string;
}

export interface RejectionView {
  hardwareId: string;
  rejectedAt: string;
  keyFingerprint: string;
}

export function enrollView(e: EnrollEntry): EnrollView {
  return {
    hardwareId: e.hardwareId,
    state: e.state,
    model: e.model,
    firmwareVersion: e.firmwareVersion,
    remote: e.remote,
    requestedAt: iso(e.requestedAtMs),
    lastSeenAt: iso(e.lastSeenAtMs),
    deviceId: e.deviceId ?? e.previousDeviceId,
    approvedBy: e.approvedBy,
    approvedAt: e.approvedAtMs === null ? null : iso(e.approvedAtMs),
    handedOver: e.handedOverAtMs !== null && e.state === 'approved',
    confirmedAt: e.confirmedAtMs === null ? null : iso(e.confirmedAtMs),
    keyFingerprint: e.keySha256.slice(0, 8),
  };
}

export function rejectionView(r: Rejection): RejectionView {
  return { hardwareId: r.hardwareId, rejectedAt: iso(r.rejectedAtMs), keyFingerprint: r.keySha256.slice(0, 8) };
}

/** Requests waiting for a decision or for their board to collect the token, oldest first, and rejections. */
export function listEnrollments(s: EnrollSnapshot): { requests: EnrollView[]; rejections: RejectionView[] } {
  const requests = [...s.entries.values()]
    .filter((e) => e.state !== 'delivered')
    .sort((a, b) => a.requestedAtMs - b.requestedAtMs || (a.hardwareId < b.hardwareId ? -1 : 1))
    .map(enrollView);
  return { requests, rejections: s.rejections.map(rejectionView) };
}

/**
 * Approves the pending request of `hardwareId` as device `deviceId` (default: the id delivered to it
 * before, else the hardware id). NOT_FOUND without a pending request; DEVICE_EXISTS when that id
 * belongs to another device or another enrollment. Approving an already approved request again with
 * the same id is a no-op.
 */
export async function approveEnrollment(
  deps: OperatorDeps,
  hardwareId: string,
  requestedId?: string,
): Promise<EnrollView> {
  const now = deps.now ?? Date.now;
  checkHardwareId(hardwareId);
  if (requestedId !== undefined && !isDeviceId(requestedId)) {
    throw new HubError('BAD_REQUEST', `device id ${JSON.stringify(requestedId.slice(0, 80))} is invalid [PROTO-2.8]`);
  }
  const entry = await deps.store.mutate((s) => {
    const e = s.entries.get(hardwareId);
    if (!e || e.state === 'delivered') {
      throw new HubError('NOT_FOUND', `no enrollment request from ${hardwareId} is waiting (see: devices pending)`);
    }
    const deviceId = requestedId ?? e.previousDeviceId ?? e.deviceId ?? hardwareId;
    if (e.state === 'approved') {
      if (e.deviceId === deviceId) return e;
      throw new HubError('BAD_REQUEST', `${hardwareId} is already approved as ${e.deviceId}; reject it first`);
    }
    for (const other of s.entries.values()) {
      if (other.hardwareId !== hardwareId && other.state !== 'pending' && other.deviceId === deviceId) {
        throw new HubError('DEVICE_EXISTS', `device id ${deviceId} is already granted to board ${other.hardwareId}`);
      }
    }
    if (deps.deviceExists(deviceId) && deviceId !== e.previousDeviceId) {
      throw new HubError(
        'DEVICE_EXISTS',
        `a device ${deviceId} is already registered; approve with --id <another id>, or revoke that device first`,
      );
    }
    e.state = 'approved';
    e.deviceId = deviceId;
    e.approvedAtMs = now();
    e.approvedBy = 'operator';
    e.handedOverAtMs = null;
    return e;
  });
  return enrollView(entry);
}

/**
 * Rejects the request of `hardwareId` (pending, or approved but not yet confirmed): the entry goes, its
 * hardware id + key are remembered as rejected. NOT_FOUND when nothing is waiting.
 */
export async function rejectEnrollment(deps: OperatorDeps, hardwareId: string): Promise<RejectionView> {
  const now = deps.now ?? Date.now;
  checkHardwareId(hardwareId);
  const rejection = await deps.store.mutate((s) => {
    const e = s.entries.get(hardwareId);
    if (!e || e.state === 'delivered') {
      throw new HubError(
        'NOT_FOUND',
        e
          ? `${hardwareId} already enrolled as ${e.deviceId}: revoke the device instead (devices revoke ${e.deviceId})`
          : `no enrollment request from ${hardwareId} is waiting`,
      );
    }
    s.entries.delete(hardwareId);
    const r: Rejection = { hardwareId, keySha256: e.keySha256, rejectedAtMs: now() };
    s.rejections.push(r);
    return r;
  });
  return rejectionView(rejection);
}

/**
 * Forgets everything about `hardwareId`: its request (any state) and its rejections, so its next request
 * starts afresh. NOT_FOUND when there is nothing to forget.
 */
export async function forgetEnrollment(
  deps: OperatorDeps,
  hardwareId: string,
): Promise<{ hardwareId: string; request: boolean; rejections: number }> {
  checkHardwareId(hardwareId);
  return deps.store.mutate((s) => {
    const request = s.entries.delete(hardwareId);
    const before = s.rejections.length;
    const kept = s.rejections.filter((r) => r.hardwareId !== hardwareId);
    const rejections = before - kept.length;
    if (!request && rejections === 0) throw new HubError('NOT_FOUND', `nothing is known about ${hardwareId}`);
    s.rejections.splice(0, s.rejections.length, ...kept);
    return { hardwareId, request, rejections };
  });
}

function checkHardwareId(hardwareId: string): void {
  if (typeof hardwareId !== 'string' || !isDeviceId(hardwareId)) {
    throw new HubError('BAD_REQUEST', 'a hardware id is 1-64 characters of A-Z a-z 0-9 . _ -');
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
