/**
 * An in-process ClusterStore for unit tests of the session side (server/cluster/sessions.ts), at the
 * module boundary: claims with epochs from a counter and notifications to every listener (as the
 * PostgreSQL NOTIFY does, including this instance's own), boot offsets first writer wins, and the
 * write-behind's batches recorded. Calls can be held (answered when the test says) or made to fail.
 * The real store is tested against a real PostgreSQL (test/integration/cluster-*.test.ts).
 */

import type {
  ClusterStore,
  JoinRequest,
  JoinResult,
  SessionClaim,
  SharedBoot,
  SharedDeviceState,
} from '../../server/cluster/store/types.ts';
import type { ChannelDescriptor } from '../../server/codec/index.ts';
import type { DeviceRegistry } from '../../server/registry/registry.ts';

type Op =
  | 'claimSession'
  | 'releaseSession'
  | 'sessionHolder'
  | 'loadDeviceState'
  | 'claimBootOffset'
  | 'joinSessions'
  | 'saveDeviceStates';

export class FakeClusterStore implements ClusterStore {
  readonly registry = {} as DeviceRegistry;
  epoch = 0;
  readonly holders = new Map<string, SessionClaim>();
  readonly states = new Map<string, SharedDeviceState>();
  readonly offsets = new Map<string, number>();
  readonly saved: SharedDeviceState[][] = [];
  readonly released: SessionClaim[] = [];
  readonly descriptorSets: { deviceId: string; hash: number }[] = [];
  database: 'connected' | 'unreachable' = 'connected';
  /** Ops whose calls wait until `answer(op)` (in call order). */
  readonly held = new Set<Op>();
  /** Ops that reject. */
  readonly failing = new Set<Op>();
  private readonly waiting = new Map<Op, (() => void)[]>();
  private readonly claimed = new Set<(c: SessionClaim) => void>();
  private readonly resync = new Set<() => void>();

  constructor(readonly instanceId = 'a') {}

  private async gate(op: Op): Promise<void> {
    if (this.held.has(op)) {
      await new Promise<void>((resolve) => {
        const q = this.waiting.get(op) ?? [];
        q.push(resolve);
        this.waiting.set(op, q);
      });
    }
    if (this.failing.has(op)) throw new Error(`${op} failed (test)`);
  }

  /** Lets every held call of `op` go on, and stops holding it. */
  answer(op: Op): void {
    this.held.delete(op);
    const q = this.waiting.get(op) ?? [];
    this.waiting.delete(op);
    for (const go of q) go();
  }

  /** Calls of `op` waiting. */
  pending(op: Op): number {
    return this.waiting.get(op)?.length ?? 0;
  }

  /** A claim made by another instance: the row changes and every listener hears it. */
  claimElsewhere(deviceId: string, instanceId = 'b'): SessionClaim {
    const c = { deviceId, instanceId, epoch: ++this.epoch };
    this.holders.set(deviceId, c);
    for (const l of this.claimed) l(c);
    return c;
  }

  /** Notifies a claim as it is (e.g. an old one arriving late). */
  notify(c: SessionClaim): void {
    for (const l of this.claimed) l(c);
  }

  fireResync(): void {
    for (const l of this.resync) l();
  }

  async claimSession(deviceId: string): Promise<SessionClaim> {
    const c = { deviceId, instanceId: this.instanceId, epoch: ++this.epoch };
    this.holders.set(deviceId, c);
    // NOTIFY is delivered at commit, before the caller has its answer.
    for (const l of this.claimed) l(c);
    await this.gate('claimSession');
    return c;
  }
  /** Batches of `joinSessions`, as called. */
  readonly joinBatches: JoinRequest[][] = [];
  async joinSessions(requests: readonly JoinRequest[]): Promise<JoinResult[]> {
    this.joinBatches.push([...requests]);
    // As one statement: every claim of the batch committed (and notified) at once, then the answer.
    const claims = requests.map((r) => {
      const c = { deviceId: r.deviceId, instanceId: this.instanceId, epoch: ++this.epoch };
      this.holders.set(r.deviceId, c);
      return c;
    });
    for (const c of claims) for (const l of this.claimed) l(c);
    await this.gate('joinSessions');
    return requests.map((r, i) => {
      const s = this.states.get(r.deviceId);
      const k = `${r.deviceId}/${r.bootId}`;
      if (!this.offsets.has(k)) this.offsets.set(k, r.offsetMs);
      return {
        claim: claims[i] as SessionClaim,
        state: s ? structuredClone(s) : null,
        bootOffsetMs: this.offsets.get(k) as number,
      };
    });
  }
  async releaseSession(claim: SessionClaim): Promise<void> {
    await this.gate('releaseSession');
    this.released.push(claim);
    if (this.holders.get(claim.deviceId)?.epoch === claim.epoch) this.holders.delete(claim.deviceId);
  }
  async releaseInstanceClaims(): Promise<number> {
    let n = 0;
    for (const [id, c] of this.holders) {
      if (c.instanceId === this.instanceId) {
        this.holders.delete(id);
        n++;
      }
    }
    return n;
  }
  async sessionHolder(deviceId: string): Promise<SessionClaim | null> {
    await this.gate('sessionHolder');
    return this.holders.get(deviceId) ?? null;
  }
  onSessionClaimed(listener: (claim: SessionClaim) => void): () => void {
    this.claimed.add(listener);
    return () => this.claimed.delete(listener);
  }
  onResync(listener: () => void): () => void {
    this.resync.add(listener);
    return () => this.resync.delete(listener);
  }
  async loadDeviceState(deviceId: string): Promise<SharedDeviceState | null> {
    await this.gate('loadDeviceState');
    const s = this.states.get(deviceId);
    return s ? structuredClone(s) : null;
  }
  async claimBootOffset(deviceId: string, bootId: number, offsetMs: number): Promise<number> {
    await this.gate('claimBootOffset');
    const k = `${deviceId}/${bootId}`;
    const have = this.offsets.get(k);
    if (have !== undefined) return have;
    this.offsets.set(k, offsetMs);
    return offsetMs;
  }
  async saveDeviceStates(states: readonly SharedDeviceState[]): Promise<void> {
    await this.gate('saveDeviceStates');
    this.saved.push(structuredClone([...states]));
  }
  async putDescriptors(deviceId: string, hash: number, _channels: ChannelDescriptor[]): Promise<void> {
    this.descriptorSets.push({ deviceId, hash });
  }
  status() {
    return { database: this.database, lastError: this.database === 'connected' ? null : 'down (test)' };
  }
  closed = false;
  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A shared boot with defaults. */
export function sharedBoot(b: Partial<SharedBoot> & { bootId: number }): SharedBoot {
  return { highestSeq: 0, timeOffsetMs: null, clockCorrectionMs: null, firstSeenMs: 0, ...b };
}
