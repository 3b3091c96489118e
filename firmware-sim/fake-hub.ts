/**
 * A small hub double for the simulator's own tests and for trying the simulator without a hub: it
 * speaks protocol v1 with the real codec and the hub's real telemetry→readings mapping, keeps its
 * state in memory, and is reachable either through an in-memory loopback (deterministic with a
 * `FakeClock`) or a real `ws` server. It is not the hub: no durability, no limits beyond the basics.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import {
  type ChannelDescriptor,
  type CommandArg,
  decodeFrame,
  descriptorHash,
  encodeFrame,
  type FrameRef,
  type Message,
  SUBPROTOCOL,
} from '../server/codec/index.ts';
import { ERRORS, type ErrorCode, HubError } from '../server/errors.ts';
import { telemetryToReadings } from '../server/pipeline/readings.ts';
import type { Reading } from '../server/storage/types.ts';
import { type Clock, systemClock, type TimerHandle } from './clock.ts';
import type { Connector, Link, LinkHandlers } from './link.ts';

export interface FakeHubOptions {
  clock?: Clock;
  heartbeatIntervalSec?: number;
  /** WELCOME sampleIntervalMs (default 0: device default). */
  sampleIntervalMs?: number;
  /** Device id → token; when set, other tokens are refused (401). */
  tokens?: Map<string, string>;
  /** Delay between storing a frame and its ACK (a commit), ms; errors go out at once. Default 0. */
  ackDelayMs?: number;
}

interface BootState {
  highest: number;
  /** uptime → wall-clock offset, fixed at the boot's first HELLO [PROTO-3.4.1]. */
  offsetMs: number | null;
}

export interface FakeDevice {
  descriptors: Map<number, ChannelDescriptor[]>;
  boots: Map<number, BootState>;
  lastAck: FrameRef | null;
  readings: Reading[];
  /** Stored TELEMETRY frames (bootId, seq) in arrival order. */
  stored: FrameRef[];
  duplicates: number;
  gaps: number;
  hellos: number;
  commandResults: Map<number, { status: number; message: string }>;
  commandsAccepted: number[];
}

/** Hub-side errors the fake answered, with the device they came from. */
export interface FakeHubError {
  deviceId: string | null;
  code: ErrorCode;
  close: number | null;
}

interface Peer {
  send(bytes: Uint8Array): void;
  close(code: number, reason: string): void;
}

export class FakeHub {
  readonly clock: Clock;
  readonly options: FakeHubOptions;
  readonly devices = new Map<string, FakeDevice>();
  readonly errors: FakeHubError[] = [];
  /** Every frame the devices sent, in arrival order (decoded when valid). */
  readonly received: { deviceId: string | null; bytes: Uint8Array }[] = [];
  private readonly sessions = new Map<string, FakeSession>();
  private nextCommandId = 1;
  /** When true, TELEMETRY is received but not acknowledged (a hub that went quiet). */
  withholdAcks = false;
  /**
   * Refuse this many upcoming new TELEMETRY frames with a non-fatal STORAGE_FULL. As the hub does,
   * later frames of the session are then refused silently until the device replays the refused one.
   */
  refuseNext = 0;

  constructor(options: FakeHubOptions = {}) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
  }

  device(id: string): FakeDevice {
    let d = this.devices.get(id);
    if (!d) {
      d = {
        descriptors: new Map(),
        boots: new Map(),
        lastAck: null,
        readings: [],
        stored: [],
        duplicates: 0,
        gaps: 0,
        hellos: 0,
        commandResults: new Map(),
        commandsAccepted: [],
      };
      this.devices.set(id, d);
    }
    return d;
  }

  /** True when `token` may connect as `deviceId` (no token table: anyone). */
  authorize(deviceId: string, token: string): boolean {
    const tokens = this.options.tokens;
    return !tokens || tokens.get(deviceId) === token;
  }

  /** Starts a session for a peer that authenticated as `deviceId`. */
  openSession(deviceId: string, peer: Peer): FakeSession {
    const old = this.sessions.get(deviceId);
    if (old) old.close('REPLACED'); // [PROTO-5.4]
    const s = new FakeSession(this, deviceId, peer);
    this.sessions.set(deviceId, s);
    return s;
  }

  /** @internal */
  sessionEnded(s: FakeSession): void {
    if (this.sessions.get(s.deviceId) === s) this.sessions.delete(s.deviceId);
  }

  /** Sends a COMMAND to the device's live session; returns its id, or null when offline. */
  sendCommand(
    deviceId: string,
    name: string,
    args: CommandArg[] = [],
    commandId = this.nextCommandId++,
  ): number | null {
    const s = this.sessions.get(deviceId);
    if (!s?.welcomed) return null;
    s.peer.send(encodeFrame({ type: 'command', commandId, name, args }));
    return commandId;
  }

  isOnline(deviceId: string): boolean {
    return this.sessions.get(deviceId)?.welcomed ?? false;
  }

  /** Closes every session (as a hub shutting down: 1001). */
  closeAll(code = 1001): void {
    for (const s of [...this.sessions.values()]) s.peer.close(code, 'going away');
  }

  /** Forgets every device's descriptor sets (to exercise UNKNOWN_DESCRIPTORS). */
  forgetDescriptors(): void {
    for (const d of this.devices.values()) d.descriptors.clear();
  }

  /**
   * A connector whose links reach this hub in memory, each direction delayed by `latencyMs` on the
   * hub's clock: with a `FakeClock`, the whole exchange is deterministic.
   */
  loopback(latencyMs = 5): Connector {
    const clock = this.clock;
    return (request, handlers: LinkHandlers): Link => {
      let state: 'connecting' | 'open' | 'closed' = 'connecting';
      let session: FakeSession | null = null;
      let silenced = false;
      const timers = new Set<TimerHandle>();
      const later = (fn: () => void) => {
        const t = clock.setTimeout(() => {
          timers.delete(t);
          fn();
        }, latencyMs);
        timers.add(t);
      };
      const endBoth = (code: number, reason: string) => {
        if (state === 'closed') return;
        state = 'closed';
        if (session) session.ended();
        later(() => handlers.close({ code, reason, opened: session !== null }));
      };
      later(() => {
        if (state !== 'connecting') return;
        if (!this.authorize(request.deviceId, request.token)) {
          state = 'closed';
          handlers.close({ code: 1006, reason: '', opened: false, httpStatus: 401 });
          return;
        }
        state = 'open';
        session = this.openSession(request.deviceId, {
          send: (bytes) => {
            // Sent while open: delivered even if the close overtakes it on the clock (TCP order).
            if (state !== 'open') return;
            later(() => {
              if (!silenced) handlers.message(bytes, true);
            });
          },
          close: (code, reason) => endBoth(code, reason),
        });
        handlers.open();
      });
      return {
        send(data) {
          if (state !== 'open' || silenced) return;
          later(() => {
            if (state === 'open')
              session?.onMessage(typeof data === 'string' ? Buffer.from(data) : data, typeof data !== 'string');
          });
        },
        bufferedAmount: 0,
        ping() {
          later(() => state === 'open' && !silenced && handlers.pong());
        },
        close(code = 1000, reason = '') {
          later(() => endBoth(code, reason));
        },
        terminate() {
          endBoth(1006, '');
        },
        blackhole() {
          silenced = true;
          // The hub side stays open until replaced, as with a real dead Wi-Fi link.
        },
      };
    };
  }
}

export class FakeSession {
  welcomed = false;
  private closed = false;
  private refusal: { bootId: number; seq: number } | null = null;
  constructor(
    readonly hub: FakeHub,
    readonly deviceId: string,
    readonly peer: Peer,
  ) {}

  close(code: ErrorCode | 'NORMAL', message = ''): void {
    if (this.closed) return;
    if (code === 'NORMAL') {
      this.peer.close(1000, message);
      return;
    }
    const spec = ERRORS[code];
    this.hub.errors.push({ deviceId: this.deviceId, code, close: spec.close });
    this.peer.send(
      encodeFrame({ type: 'error', fatal: spec.close !== null, code: spec.wire, message: message || code }),
    );
    if (spec.close !== null) {
      this.ended();
      this.peer.close(spec.close, code);
    }
  }

  ended(): void {
    this.closed = true;
    this.hub.sessionEnded(this);
  }

  onMessage(data: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    this.hub.received.push({ deviceId: this.deviceId, bytes: data });
    if (!isBinary) {
      this.close('TEXT_FRAME');
      return;
    }
    let m: Message;
    try {
      m = decodeFrame(data);
    } catch (err) {
      this.close(err instanceof HubError ? err.code : 'INTERNAL', (err as Error).message);
      return;
    }
    const d = this.hub.device(this.deviceId);
    if (!this.welcomed && m.type !== 'hello') {
      this.close('UNEXPECTED_MESSAGE');
      return;
    }
    switch (m.type) {
      case 'hello': {
        if (this.welcomed) {
          this.close('UNEXPECTED_MESSAGE');
          return;
        }
        if (m.deviceId !== this.deviceId) {
          this.close('DEVICE_MISMATCH');
          return;
        }
        d.hellos++;
        const now = Math.floor(this.hub.clock.now());
        let boot = d.boots.get(m.bootId);
        if (!boot) {
          boot = { highest: 0, offsetMs: null };
          d.boots.set(m.bootId, boot);
        }
        if (boot.offsetMs === null && !m.timeSynced) boot.offsetMs = now - m.uptimeMs;
        this.welcomed = true;
        this.peer.send(
          encodeFrame({
            type: 'welcome',
            acceptedVersion: 1,
            serverTimeMs: now,
            lastAck: d.lastAck,
            descriptorsKnown: d.descriptors.has(m.descriptorHash),
            sampleIntervalMs: this.hub.options.sampleIntervalMs ?? 0,
            heartbeatIntervalSec: this.hub.options.heartbeatIntervalSec ?? 15,
            maxFrameBytes: 4096,
          }),
        );
        return;
      }
      case 'descriptors':
        d.descriptors.set(descriptorHash(m.channels), m.channels);
        return;
      case 'telemetry': {
        if (this.refusal) {
          const r = this.refusal;
          if (m.bootId === r.bootId && m.seq <= r.seq) this.refusal = null;
          else return; // refused silently: an ACK now would cover the refused frame
        }
        const channels = d.descriptors.get(m.descriptorHash);
        if (!channels) {
          this.close('UNKNOWN_DESCRIPTORS');
          return;
        }
        let boot = d.boots.get(m.bootId);
        if (!boot) {
          boot = { highest: 0, offsetMs: null };
          d.boots.set(m.bootId, boot);
        }
        if (m.seq <= boot.highest) {
          d.duplicates++; // [PROTO-3.4.2] acknowledged again, not stored again
        } else if (this.hub.refuseNext > 0) {
          this.hub.refuseNext--;
          this.refusal = { bootId: m.bootId, seq: m.seq };
          this.close('STORAGE_FULL');
          return;
        } else {
          let offset = 0;
          if (m.unsynced) {
            boot.offsetMs ??= Math.floor(this.hub.clock.now()) - m.baseTime;
            offset = boot.offsetMs;
          }
          try {
            d.readings.push(...telemetryToReadings(this.deviceId, m, channels, offset).readings);
          } catch (err) {
            this.close(err instanceof HubError ? err.code : 'INTERNAL', (err as Error).message);
            return;
          }
          if (m.seq > boot.highest + 1) d.gaps += m.seq - boot.highest - 1;
          boot.highest = m.seq;
          d.stored.push({ bootId: m.bootId, seq: m.seq });
        }
        d.lastAck = { bootId: m.bootId, seq: m.seq };
        if (!this.hub.withholdAcks) {
          const ack = encodeFrame({ type: 'ack', bootId: m.bootId, seq: m.seq });
          const delay = this.hub.options.ackDelayMs ?? 0;
          if (delay > 0) this.hub.clock.setTimeout(() => this.peer.send(ack), delay);
          else this.peer.send(ack);
        }
        return;
      }
      case 'command_accepted':
        d.commandsAccepted.push(m.commandId);
        return;
      case 'command_result':
        d.commandResults.set(m.commandId, { status: m.status, message: m.message });
        return;
      default: {
        this.close('UNEXPECTED_MESSAGE');
        return;
      }
    }
  }
}

export interface FakeWsHub {
  /** Device endpoint URL, e.g. ws://127.0.0.1:PORT/v1/device. */
  url: string;
  port: number;
  /** Terminates every device socket at once (a network blip). */
  dropAll(): void;
  close(): Promise<void>;
}

/**
 * Serves a `FakeHub` over a real `ws` server on a loopback port: the subprotocol and bearer token are
 * checked in the `upgrade` handler before `handleUpgrade` (400 / 401), as the hub does. The token
 * names the device: its entry in the hub's token table, or, without a table, the token is the id.
 */
export async function startFakeWsHub(hub: FakeHub, port = 0): Promise<FakeWsHub> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 });
  const server: Server = createServer((_req, res) => {
    res.writeHead(404).end();
  });
  const sockets = new Set<WebSocket>();
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const refuse = (status: number) => {
      socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!offered.includes(SUBPROTOCOL)) return refuse(400);
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    let deviceId: string | undefined;
    if (hub.options.tokens) {
      for (const [id, t] of hub.options.tokens) if (t === token) deviceId = id;
    } else if (token) {
      deviceId = token;
    }
    if (!deviceId) return refuse(401);
    const id = deviceId;
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      const session = hub.openSession(id, {
        send: (bytes) => {
          if (ws.readyState === WebSocket.OPEN) ws.send(bytes);
        },
        close: (code, reason) => ws.close(code, reason),
      });
      ws.on('message', (data, isBinary) => session.onMessage(data as Buffer, isBinary));
      ws.on('error', () => {});
      ws.on('close', () => {
        sockets.delete(ws);
        session.ended();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${actual}/v1/device`,
    port: actual,
    dropAll() {
      for (const ws of sockets) ws.terminate();
    },
    async close() {
      for (const ws of sockets) ws.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
