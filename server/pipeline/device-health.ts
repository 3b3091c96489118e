/**
 * Per-device link health since the hub started: sequence gaps, rejected frames, and what the device
 * said of its own outbox in HELLO. Fed by HubEventBus events, read by the `device_status` points the
 * hub writes to InfluxDB (docs/storage.md) so Grafana can list the devices that lose or garble data.
 * Presence (online / stale / offline) comes from a provider — the live view decides staleness from
 * each device's sample period — with session events as the fallback when no live view runs.
 */
import type { HubEventBus, PresenceState } from '../events.ts';

export interface DeviceHealthRow {
  deviceId: string;
  state: PresenceState;
  /** Sequence-gap frames since the hub started. */
  gaps: number;
  /** Frames rejected with a coded error since the hub started. */
  errors: number;
  /** From the latest HELLO: frames the device dropped (drop-oldest) this boot, and frames it held. */
  droppedFrames: number;
  bufferedFrames: number;
  firmwareVersion: string;
}

/** Returns a device's presence as the live view sees it, or undefined when it does not know it. */
export type PresenceProvider = (deviceId: string) => PresenceState | undefined;

interface Entry extends DeviceHealthRow {}

export class DeviceHealth {
  readonly #devices = new Map<string, Entry>();
  readonly #maxDevices: number;
  #presence: PresenceProvider | null = null;
  readonly #unsubscribe: () => void;

  constructor(bus: HubEventBus, options: { maxDevices?: number } = {}) {
    this.#maxDevices = options.maxDevices ?? 100_000;
    const online = (info: {
      deviceId: string;
      firmwareVersion: string;
      droppedFrames: number;
      bufferedFrames: number;
    }) => {
      const e = this.#entry(info.deviceId);
      if (!e) return;
      e.state = 'online';
      e.firmwareVersion = info.firmwareVersion;
      e.droppedFrames = info.droppedFrames;
      e.bufferedFrames = info.bufferedFrames;
    };
    const offline = (info: { deviceId: string; reason: string }) => {
      // A replaced session is followed by the replacing session's online event.
      if (info.reason === 'replaced') return;
      const e = this.#devices.get(info.deviceId);
      if (e) e.state = 'offline';
    };
    const gap = (deviceId: string, frames: number) => {
      const e = this.#entry(deviceId);
      if (e) e.gaps += frames;
    };
    const rejected = (deviceId: string) => {
      const e = this.#entry(deviceId);
      if (e) e.errors++;
    };
    bus.on('device:online', online);
    bus.on('device:offline', offline);
    bus.on('device:gap', gap);
    bus.on('device:rejected', rejected);
    this.#unsubscribe = () => {
      bus.off('device:online', online);
      bus.off('device:offline', offline);
      bus.off('device:gap', gap);
      bus.off('device:rejected', rejected);
    };
  }

  /** Lets the live view supply presence with staleness; session events remain the fallback. */
  setPresenceProvider(provider: PresenceProvider | null): void {
    this.#presence = provider;
  }

  /** Every device seen since start, plus `known` ids (registered devices never seen: offline). */
  rows(known: Iterable<string> = []): DeviceHealthRow[] {
    for (const id of known) this.#entry(id);
    const out: DeviceHealthRow[] = [];
    for (const e of this.#devices.values()) {
      out.push({ ...e, state: this.#presence?.(e.deviceId) ?? e.state });
    }
    return out;
  }

  close(): void {
    this.#unsubscribe();
  }

  #entry(deviceId: string): Entry | undefined {
    let e = this.#devices.get(deviceId);
    if (!e && this.#devices.size < this.#maxDevices) {
      e = { deviceId, state: 'offline', gaps: 0, errors: 0, droppedFrames: 0, bufferedFrames: 0, firmwareVersion: '' };
      this.#devices.set(deviceId, e);
    }
    return e;
  }
}
