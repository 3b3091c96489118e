/**
 * The fleet view's model (no DOM): every device with its presence, last values and a one-minute trail
 * per channel, fed by `GET /api/devices` and the live fleet subscription; and the filter/sort the
 * view shows. Each change bumps the device's `version`, so the view redraws only what changed.
 */
import type { ChannelsMessage, PresenceMessage } from '../live/messages.ts';
import type { DeviceView, Sample } from '../live/state.ts';
import { defaultLabel } from './format.ts';

/** Trail points kept per channel (one per second: a minute of sparkline). */
const TRAIL_POINTS = 60;
const TRAIL_STEP_MS = 1000;

export interface FleetChannel {
  key: string;
  unit: string;
  last: Sample | null;
  /** Latest value of each second, oldest first, at most a minute. */
  trail: Sample[];
}

export interface FleetDevice {
  id: string;
  state: DeviceView['state'];
  reason: string;
  sinceMs: number;
  lastSeenMs: number | null;
  firmwareVersion: string | null;
  bootId: number | null;
  channels: Map<string, FleetChannel>;
  /** Bumped on every change. */
  version: number;
  /** The channel list changed (a card rebuilds its rows). */
  channelsChanged: boolean;
}

/** What the page knows of a device before the hub said anything: offline, never seen. */
export function unseen(): Pick<
  DeviceView,
  'state' | 'reason' | 'sinceMs' | 'lastSeenMs' | 'firmwareVersion' | 'bootId'
> {
  return { state: 'offline', reason: 'never_seen', sinceMs: 0, lastSeenMs: null, firmwareVersion: null, bootId: null };
}

export interface FleetQuery {
  /** Case-insensitive substring of the id, a channel key or a channel's label. */
  search: string;
  status: 'all' | 'online' | 'stale' | 'offline';
  /** `name`, `lastSeen` (newest first) or `channel:<key>` (largest value first; devices without it last). */
  sort: string;
}

export class FleetModel {
  readonly devices = new Map<string, FleetDevice>();
  /** A device was added since the last `select`. */
  added = false;
  /** Something a dynamic sort looks at changed since the last `select`. */
  changedSinceSort = false;
  readonly #keys = new Set<string>();
  #keyList: string[] = [];

  device(id: string): FleetDevice {
    let d = this.devices.get(id);
    if (!d) {
      d = {
        id,
        ...unseen(),
        channels: new Map(),
        version: 0,
        channelsChanged: true,
      };
      this.devices.set(id, d);
      this.added = true;
    }
    return d;
  }

  #channel(d: FleetDevice, key: string, unit: string): FleetChannel {
    let ch = d.channels.get(key);
    if (!ch) {
      ch = { key, unit, last: null, trail: [] };
      d.channels.set(key, ch);
      d.channelsChanged = true;
      if (!this.#keys.has(key)) {
        this.#keys.add(key);
        this.#keyList = [...this.#keys];
      }
    } else if (unit && !ch.unit) ch.unit = unit;
    return ch;
  }

  /** A device from the REST answer or a snapshot; keeps the newest presence. */
  apply(v: DeviceView, withTrail: boolean): void {
    const d = this.device(v.id);
    if (v.sinceMs >= d.sinceMs) {
      d.state = v.state;
      d.reason = v.reason;
      d.sinceMs = v.sinceMs;
      d.firmwareVersion = v.firmwareVersion;
      d.bootId = v.bootId;
    }
    if (v.lastSeenMs !== null && (d.lastSeenMs === null || v.lastSeenMs > d.lastSeenMs)) d.lastSeenMs = v.lastSeenMs;
    for (const c of v.channels) {
      const ch = this.#channel(d, c.key, c.unit);
      if (withTrail && c.trail) for (const s of c.trail) addTrail(ch.trail, s);
      if (c.last && (!ch.last || c.last[0] >= ch.last[0])) {
        ch.last = c.last;
        addTrail(ch.trail, c.last);
      }
    }
    d.version++;
    this.changedSinceSort = true;
  }

  /** A live `data` message's updates: device → channel → samples. */
  data(updates: Record<string, Record<string, Sample[]>>, nowMs: number): void {
    for (const id in updates) {
      const d = this.device(id);
      const channels = updates[id] as Record<string, Sample[]>;
      for (const key in channels) {
        const samples = channels[key] as Sample[];
        const ch = this.#channel(d, key, '');
        for (const s of samples) {
          if (!ch.last || s[0] >= ch.last[0]) ch.last = s;
          addTrail(ch.trail, s);
        }
      }
      d.lastSeenMs = nowMs;
      d.version++;
    }
    this.changedSinceSort = true;
  }

  presence(m: PresenceMessage): void {
    const d = this.device(m.device);
    d.state = m.state;
    d.reason = m.reason;
    d.sinceMs = m.sinceMs;
    if (m.lastSeenMs !== null) d.lastSeenMs = m.lastSeenMs;
    d.firmwareVersion = m.firmwareVersion;
    d.bootId = m.bootId;
    d.version++;
    this.changedSinceSort = true;
  }

  channels(id: string, metas: ChannelsMessage['channels']): void {
    const d = this.device(id);
    for (const c of metas) this.#channel(d, c.key, c.unit).unit = c.unit;
    d.version++;
  }

  /** Every channel key seen, in order of first appearance (the boards' descriptor order). */
  channelKeys(): string[] {
    return this.#keyList;
  }

  counts(): { online: number; stale: number; offline: number } {
    const c = { online: 0, stale: 0, offline: 0 };
    for (const d of this.devices.values()) c[d.state]++;
    return c;
  }

  /** The devices the query shows, in its order. */
  select(q: FleetQuery, labels: Record<string, Record<string, string>> = {}): FleetDevice[] {
    const needle = q.search.trim().toLowerCase();
    const out: FleetDevice[] = [];
    for (const d of this.devices.values()) {
      if (q.status !== 'all' && d.state !== q.status) continue;
      if (needle && !matches(d, needle, labels[d.id])) continue;
      out.push(d);
    }
    const byName = (a: FleetDevice, b: FleetDevice) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    if (q.sort === 'lastSeen') {
      out.sort((a, b) => (b.lastSeenMs ?? -1) - (a.lastSeenMs ?? -1) || byName(a, b));
    } else if (q.sort.startsWith('channel:')) {
      const key = q.sort.slice('channel:'.length);
      const value = (d: FleetDevice): number => {
        const v = d.channels.get(key)?.last?.[1];
        return typeof v === 'number' ? v : typeof v === 'boolean' ? Number(v) : Number.NEGATIVE_INFINITY;
      };
      out.sort((a, b) => value(b) - value(a) || byName(a, b));
    } else out.sort(byName);
    return out;
  }
}

function matches(d: FleetDevice, needle: string, labels: Record<string, string> | undefined): boolean {
  if (d.id.toLowerCase().includes(needle)) return true;
  for (const key of d.channels.keys()) {
    if (key.includes(needle)) return true;
    if ((labels?.[key] ?? defaultLabel(key)).toLowerCase().includes(needle)) return true;
  }
  return false;
}

/** Keeps the latest value of each second, in time order, at most a minute. */
function addTrail(trail: Sample[], s: Sample): void {
  const last = trail[trail.length - 1];
  const step = Math.floor(s[0] / TRAIL_STEP_MS);
  if (last && Math.floor(last[0] / TRAIL_STEP_MS) === step) {
    if (s[0] >= last[0]) trail[trail.length - 1] = s;
    return;
  }
  if (last && s[0] < last[0]) return; // older than the trail's end: the sparkline shows recent data only
  trail.push(s);
  if (trail.length > TRAIL_POINTS) trail.shift();
}
