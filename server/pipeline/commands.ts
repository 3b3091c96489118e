/**
 * Downlink commands [PROTO-3.6, PROTO-3.7]: id allocation, JSON args → typed COMMAND args, and a bounded
 * tracking table (sent → accepted → done | failed | timeout). The table holds at most `maxTracked`
 * commands; when full the oldest entry is dropped (finished ones first) and counted as
 * `commands{outcome="evicted"}`.
 */
import { randomInt } from 'node:crypto';
import { type CommandArg, isChannelKey, isCommandName, ValueType } from '../codec/index.ts';
import { HubError } from '../errors.ts';
import type { CommandUpdate, HubEventBus } from '../events.ts';
import type { Metrics } from '../metrics/index.ts';

export type CommandState = CommandUpdate['state'];

export interface CommandRecord {
  deviceId: string;
  commandId: number;
  name: string;
  args: CommandArg[];
  state: CommandState;
  /** COMMAND_RESULT status [PROTO-3.7] once done. */
  status?: number;
  message?: string;
  createdAtMs: number;
  updatedAtMs: number;
}

export interface CommandTrackerOptions {
  metrics: Metrics;
  bus: HubEventBus;
  now: () => number;
  /** Time from sending to RESULT before the command is marked `timeout`. Default 30 s. */
  timeoutMs?: number;
  /** Table capacity. Default 1000. */
  maxTracked?: number;
}

export interface CommandTracker {
  /** Allocates an id and records a command as sent (call after the frame went out). */
  track(deviceId: string, name: string, args: CommandArg[]): CommandRecord;
  /** A new id, never 0, unique per hub process (random start so ids do not repeat across restarts). */
  nextId(): number;
  record(deviceId: string, commandId: number, name: string, args: CommandArg[]): CommandRecord;
  /** Returns false when the id is unknown (COMMAND_UNKNOWN). */
  accepted(deviceId: string, commandId: number): boolean;
  result(deviceId: string, commandId: number, status: number, message: string): boolean;
  get(deviceId: string, commandId: number): CommandRecord | undefined;
  size(): number;
  close(): void;
}

const STATUS_NAMES: Record<number, string> = { 0: 'ok', 1: 'failed', 2: 'unsupported', 3: 'bad_arguments', 4: 'busy' };

export function createCommandTracker(opts: CommandTrackerOptions): CommandTracker {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxTracked = opts.maxTracked ?? 1000;
  const table = new Map<string, CommandRecord>();
  const timers = new Map<string, NodeJS.Timeout>();
  let counter = randomInt(1, 0x7fffffff);
  const key = (deviceId: string, id: number) => `${deviceId}\u0000${id}`;

  function update(rec: CommandRecord, state: CommandState, extra: { status?: number; message?: string } = {}): void {
    rec.state = state;
    rec.updatedAtMs = opts.now();
    if (extra.status !== undefined) rec.status = extra.status;
    if (extra.message !== undefined) rec.message = extra.message;
    const u: CommandUpdate = {
      deviceId: rec.deviceId,
      commandId: rec.commandId,
      name: rec.name,
      state,
      atMs: rec.updatedAtMs,
    };
    if (rec.status !== undefined) u.status = rec.status;
    if (rec.message !== undefined) u.message = rec.message;
    opts.bus.emit('command:update', u);
  }

  function finish(k: string): void {
    const t = timers.get(k);
    if (t) clearTimeout(t);
    timers.delete(k);
  }

  function evictOne(): void {
    let victim: string | undefined;
    for (const [k, rec] of table) {
      if (rec.state === 'done' || rec.state === 'timeout' || rec.state === 'failed') {
        victim = k;
        break;
      }
    }
    victim ??= table.keys().next().value;
    if (victim === undefined) return;
    finish(victim);
    table.delete(victim);
    opts.metrics.commands.inc({ outcome: 'evicted' });
  }

  const tracker: CommandTracker = {
    nextId() {
      counter = counter >= 0xffffffff ? 1 : counter + 1;
      return counter;
    },
    track(deviceId, name, args) {
      return tracker.record(deviceId, tracker.nextId(), name, args);
    },
    record(deviceId, commandId, name, args) {
      while (table.size >= maxTracked) evictOne();
      const at = opts.now();
      const rec: CommandRecord = {
        deviceId,
        commandId,
        name,
        args,
        state: 'sent',
        createdAtMs: at,
        updatedAtMs: at,
      };
      const k = key(deviceId, commandId);
      table.set(k, rec);
      const timer = setTimeout(() => {
        timers.delete(k);
        if (rec.state === 'sent' || rec.state === 'accepted') {
          update(rec, 'timeout');
          opts.metrics.commands.inc({ outcome: 'timeout' });
        }
      }, timeoutMs);
      timer.unref();
      timers.set(k, timer);
      opts.metrics.commands.inc({ outcome: 'sent' });
      update(rec, 'sent');
      return rec;
    },
    accepted(deviceId, commandId) {
      const rec = table.get(key(deviceId, commandId));
      if (!rec) return false;
      if (rec.state === 'sent') {
        update(rec, 'accepted');
        opts.metrics.commands.inc({ outcome: 'accepted' });
      }
      return true;
    },
    result(deviceId, commandId, status, message) {
      const k = key(deviceId, commandId);
      const rec = table.get(k);
      if (!rec) return false;
      if (rec.state === 'sent' || rec.state === 'accepted') {
        finish(k);
        update(rec, status === 0 ? 'done' : 'failed', { status, message });
        opts.metrics.commands.inc({ outcome: STATUS_NAMES[status] ?? 'failed' });
      }
      return true;
    },
    get(deviceId, commandId) {
      return table.get(key(deviceId, commandId));
    },
    size() {
      return table.size;
    },
    close() {
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
    },
  };
  return tracker;
}

/** Typed arguments of the minimum command set [PROTO-3.6]; other commands get inferred types. */
const KNOWN_ARG_TYPES: Record<string, Record<string, CommandArg['valueType']>> = {
  set_sample_interval: { interval_ms: ValueType.U32 },
  identify: { duration_ms: ValueType.U32 },
  reboot: {},
  send_descriptors: {},
};

/**
 * JSON `{ name, args }` → name + typed args. Numbers become u32 (non-negative integers), i32 (negative
 * integers) or f32; booleans bool; strings type 9. Throws BAD_REQUEST with a reason.
 */
export function parseCommandRequest(body: unknown): { name: string; args: CommandArg[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HubError('BAD_REQUEST', 'body must be a JSON object { name, args }');
  }
  const { name, args } = body as { name?: unknown; args?: unknown };
  if (typeof name !== 'string' || !isCommandName(name)) {
    throw new HubError('BAD_REQUEST', 'name must be 1-32 characters of a-z 0-9 _');
  }
  const out: CommandArg[] = [];
  if (args !== undefined && args !== null) {
    if (typeof args !== 'object' || Array.isArray(args)) throw new HubError('BAD_REQUEST', 'args must be an object');
    const entries = Object.entries(args as Record<string, unknown>);
    if (entries.length > 16) throw new HubError('BAD_REQUEST', 'at most 16 args');
    const known = KNOWN_ARG_TYPES[name];
    for (const [k, v] of entries) {
      if (!isChannelKey(k)) throw new HubError('BAD_REQUEST', `arg ${k}: keys are a-z 0-9 _ starting with a letter`);
      const declared = known?.[k];
      if (known && declared === undefined) throw new HubError('BAD_REQUEST', `${name} takes no argument ${k}`);
      out.push(typedArg(k, v, declared));
    }
  }
  if (name === 'set_sample_interval') {
    const v = out.find((a) => a.key === 'interval_ms')?.value;
    if (typeof v !== 'number' || v < 100 || v > 3_600_000) {
      throw new HubError('BAD_REQUEST', 'set_sample_interval needs interval_ms in 100..3600000');
    }
  }
  return { name, args: out };
}

function typedArg(key: string, v: unknown, declared: CommandArg['valueType'] | undefined): CommandArg {
  if (declared === ValueType.U32) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new HubError('BAD_REQUEST', `arg ${key} must be an integer 0..4294967295`);
    }
    return { key, valueType: ValueType.U32, value: v };
  }
  if (typeof v === 'boolean') return { key, valueType: ValueType.BOOL, value: v };
  if (typeof v === 'string') return { key, valueType: ValueType.STRING, value: v };
  if (typeof v === 'number' && Number.isFinite(v)) {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return { key, valueType: ValueType.U32, value: v };
    if (Number.isInteger(v) && v < 0 && v >= -0x80000000) return { key, valueType: ValueType.I32, value: v };
    return { key, valueType: ValueType.F32, value: v };
  }
  throw new HubError('BAD_REQUEST', `arg ${key} must be a number, boolean or string`);
}
