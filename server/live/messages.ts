/**
 * The live API's message catalogue (JSON text messages over `/v1/live`), documented in
 * docs/live-api.md. Inbound messages are parsed here by hand: they are tiny, the shapes are few, and
 * every rejection names its field.
 */
import type { AlertEvent } from '../alerts/types.ts';
import { isChannelKey, isDeviceId } from '../codec/index.ts';
import type { CommandUpdate, PresenceState } from '../events.ts';
import type { DeviceView, Sample } from './state.ts';

/** Version of the live message catalogue, sent in `hello`. */
export const LIVE_API_VERSION = 1;
/** Inbound messages larger than this close the socket with 1009 (`ws` `maxPayload`). */
export const MAX_INBOUND_BYTES = 4096;
/** Channels one subscription may name. */
export const MAX_CHANNELS_PER_SUBSCRIPTION = 64;
/** Subscription ids: short client-chosen tokens echoed back. */
const SUB_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** `latest`: at most one sample per (device, channel) per tick. `all`: every sample. */
export type SubscriptionMode = 'latest' | 'all';

export interface Subscription {
  /** Client-chosen id, unique per connection. */
  sub: string;
  /** Null for the whole fleet. */
  device: string | null;
  /** Null for every channel of the device (or of the fleet). */
  channels: ReadonlySet<string> | null;
  mode: SubscriptionMode;
}

export type ClientMessage =
  | { type: 'subscribe'; subscription: Subscription }
  | { type: 'unsubscribe'; sub: string }
  | { type: 'ping'; id: string | null };

export type ParseResult = { ok: true; message: ClientMessage } | { ok: false; message: string; sub: string | null };

/** Parses one inbound text message. Never throws. */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail('message is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('message is not a JSON object');
  const m = value as Record<string, unknown>;
  const sub = typeof m.sub === 'string' && SUB_ID.test(m.sub) ? m.sub : null;
  switch (m.type) {
    case 'subscribe': {
      if (sub === null) return fail('sub: 1-64 characters of A-Z a-z 0-9 . _ : -', null);
      let device: string | null = null;
      if (m.device !== undefined && m.device !== null) {
        if (typeof m.device !== 'string' || !isDeviceId(m.device)) return fail('device: not a device id', sub);
        device = m.device;
      }
      let channels: Set<string> | null = null;
      if (m.channels !== undefined && m.channels !== null) {
        if (!Array.isArray(m.channels) || m.channels.length === 0 || m.channels.length > MAX_CHANNELS_PER_SUBSCRIPTION)
          return fail(`channels: an array of 1-${MAX_CHANNELS_PER_SUBSCRIPTION} channel keys`, sub);
        channels = new Set();
        for (const c of m.channels) {
          if (typeof c !== 'string' || !isChannelKey(c)) return fail('channels: not a channel key', sub);
          channels.add(c);
        }
      }
      let mode: SubscriptionMode = device === null ? 'latest' : 'all';
      if (m.mode !== undefined) {
        if (m.mode !== 'latest' && m.mode !== 'all') return fail('mode: "latest" or "all"', sub);
        mode = m.mode;
      }
      return { ok: true, message: { type: 'subscribe', subscription: { sub, device, channels, mode } } };
    }
    case 'unsubscribe':
      if (sub === null) return fail('sub: 1-64 characters of A-Z a-z 0-9 . _ : -', null);
      return { ok: true, message: { type: 'unsubscribe', sub } };
    case 'ping': {
      const id = typeof m.id === 'string' && m.id.length <= 64 ? m.id : null;
      return { ok: true, message: { type: 'ping', id } };
    }
    default:
      return fail('type: one of "subscribe", "unsubscribe", "ping"', sub);
  }
}

function fail(message: string, sub: string | null = null): ParseResult {
  return { ok: false, message, sub };
}

// ───────────────────────────── outbound ─────────────────────────────
// Shapes of what the hub sends; docs/live-api.md §3 shows an example of each.

export interface HelloMessage {
  type: 'hello';
  version: number;
  serverTimeMs: number;
  tickMs: number;
  role: 'viewer' | 'operator';
  limits: { maxSubscriptions: number; maxInboundBytes: number; maxChannelsPerSubscription: number };
}

export interface SnapshotMessage {
  type: 'snapshot';
  sub: string;
  /** The tick the snapshot reflects; deltas that follow come from later ticks. */
  tick: number;
  devices: DeviceView[];
}

/** Per tick: device id → channel key → samples `[timeMs, value]`, oldest first. */
export type DataUpdates = Record<string, Record<string, Sample[]>>;

export interface DataMessage {
  type: 'data';
  tick: number;
  updates: DataUpdates;
}

export interface SkippedMessage {
  type: 'skipped';
  /** The client fell behind from this tick on ... */
  fromTick: number;
  /** ... up to and including this one; the `data` that follows holds the latest values only. */
  toTick: number;
  /** Samples not delivered (folded into later values). */
  samples: number;
}

export interface PresenceMessage {
  type: 'presence';
  device: string;
  state: PresenceState;
  reason: string;
  sinceMs: number;
  lastSeenMs: number | null;
  firmwareVersion: string | null;
  bootId: number | null;
}

export interface ChannelsMessage {
  type: 'channels';
  device: string;
  channels: { key: string; unit: string; periodMs: number }[];
}

export interface CommandMessage extends Omit<CommandUpdate, 'deviceId'> {
  type: 'command';
  device: string;
}

/**
 * An alert fired or resolved (server/alerts/, docs/alerts.md): sent to every client that has a
 * subscription, whatever devices it covers; a client behind gets the latest state of each alert.
 */
export interface AlertMessage extends AlertEvent {
  type: 'alert';
}

export interface ErrorReply {
  type: 'error';
  code: 'BAD_REQUEST' | 'NOT_FOUND';
  message: string;
  sub: string | null;
}

export type ServerMessage =
  | HelloMessage
  | SnapshotMessage
  | DataMessage
  | SkippedMessage
  | PresenceMessage
  | ChannelsMessage
  | CommandMessage
  | AlertMessage
  | ErrorReply
  | { type: 'subscribed'; sub: string }
  | { type: 'unsubscribed'; sub: string }
  | { type: 'pong'; id: string | null; serverTimeMs: number };

/**
 * Serializes once into the bytes every recipient gets ("broadcast once"): a Buffer sent as a text
 * frame is written as-is by `ws`, with no per-recipient re-encoding.
 */
export function encode(message: ServerMessage): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}
