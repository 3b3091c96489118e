/**
 * The operator's view of the fleet in the log, from the hub's event bus: devices connecting and
 * disconnecting (with close code and reason), frames missing (gaps), duplicates, reused boot ids and
 * rejected frames (including the non-fatal ones such as COMMAND_UNKNOWN that nothing else logs).
 *
 * Everything goes through a {@link createLogLimiter} keyed per device (and per code): the first event
 * is logged at once, the rest of a window as one summary per device every 10 s, and beyond `maxDevices`
 * devices in a window one line for all the others. A reconnect loop or a replay of 100,000 frames
 * gives a few lines, not 100,000. Listeners never throw into the emitter.
 */
import { ERRORS, isErrorCode } from '../errors.ts';
import type { HubEventBus, HubEvents } from '../events.ts';
import type { Logger } from './index.ts';
import { createLogLimiter, type LimitedEvent } from './rate-limit.ts';

export interface DeviceActivityOptions {
  bus: HubEventBus;
  logger: Logger;
  /** Summary period (default 10 s). */
  windowMs?: number;
  /** Devices logged one by one per event kind and window (default 20). */
  maxDevices?: number;
  /** Start the summary timer (default true). */
  timer?: boolean;
}

export interface DeviceActivityLog {
  /** Writes the pending summaries. */
  flush(): void;
  /** Removes the listeners and writes the pending summaries. */
  close(): void;
}

export function logDeviceActivity(opts: DeviceActivityOptions): DeviceActivityLog {
  const { bus, logger } = opts;
  const limiter = createLogLimiter({
    logger,
    ...(opts.windowMs !== undefined ? { windowMs: opts.windowMs } : {}),
    maxKeys: opts.maxDevices ?? 20,
    ...(opts.timer !== undefined ? { timer: opts.timer } : {}),
  });

  const handlers: { [K in keyof HubEvents]?: (...args: HubEvents[K]) => LimitedEvent & { key: string } } = {
    'device:online': (i) => ({
      key: i.deviceId,
      // A board that dropped frames from its outbox lost data before the hub could take it.
      level: i.droppedFrames > 0 ? 'warn' : 'info',
      msg: i.droppedFrames > 0 ? 'device connected; it dropped frames from its full outbox' : 'device connected',
      fields: {
        deviceId: i.deviceId,
        bootId: i.bootId,
        firmwareVersion: i.firmwareVersion,
        timeSynced: i.timeSynced,
        bufferedFrames: i.bufferedFrames,
        droppedFrames: i.droppedFrames,
      },
    }),
    'device:offline': (i) => ({
      key: i.deviceId,
      level: 'info',
      msg: 'device disconnected',
      fields: {
        deviceId: i.deviceId,
        reason: i.reason,
        ...(i.closeCode !== undefined ? { closeCode: i.closeCode } : {}),
      },
    }),
    'device:gap': (deviceId, missingFrames) => ({
      key: deviceId,
      level: 'warn',
      msg: 'frames missing: the device lost them before they reached the hub',
      fields: { deviceId, missingFrames },
      sums: { missingFrames },
    }),
    'device:duplicate': (deviceId, bootId, seq) => ({
      key: deviceId,
      level: 'info',
      msg: 'duplicate frames: already stored, acknowledged again, not stored twice',
      fields: { deviceId, bootId, seq },
    }),
    'device:boot-reused': (deviceId, bootId) => ({
      key: `${deviceId}|${bootId}`,
      level: 'warn',
      msg: 'the device reused a boot id the hub holds frames of; its new frames are stored as a new boot',
      fields: { deviceId, bootId },
    }),
    'device:rejected': (deviceId, code, detail) => {
      const spec = isErrorCode(code) ? ERRORS[code] : null;
      return {
        key: `${deviceId}|${code}`,
        // Non-fatal notices (COMMAND_UNKNOWN, UNKNOWN_DESCRIPTORS) are information; the rest point at a fault.
        level: spec !== null && spec.close === null && code !== 'STORAGE_FULL' ? 'info' : 'warn',
        msg: `frame rejected: ${code}`,
        fields: { deviceId, code, reason: spec?.summary ?? code, ...(detail !== undefined ? { detail } : {}) },
      };
    },
  };

  const attached: [keyof HubEvents, (...args: never[]) => void][] = [];
  for (const [event, toLine] of Object.entries(handlers) as [keyof HubEvents, (...a: never[]) => unknown][]) {
    const listener = (...args: never[]) => {
      try {
        const { key, ...line } = toLine(...args) as LimitedEvent & { key: string };
        limiter.hit(event, key, line);
      } catch (err) {
        try {
          logger.error({ err, event }, 'device activity log listener failed');
        } catch {
          // never into the emitter
        }
      }
    };
    bus.on(event, listener as never);
    attached.push([event, listener]);
  }

  return {
    flush: () => limiter.flush(),
    close() {
      for (const [event, listener] of attached.splice(0)) bus.off(event, listener as never);
      limiter.close();
    },
  };
}
