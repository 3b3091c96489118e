/**
 * Operator-editable display names of channels ("Battery voltage" for `battery_v`), per device, kept
 * durably in `<dataDir>/channel-labels.json`. A channel without one shows a name derived from its key
 * (the page's `defaultLabel`).
 *
 * Writes replace the file atomically (temp file, fsync, rename, fsync of the directory) and are
 * serialized, so a crash leaves the old or the new file, never a torn one. Bounded: labels are at
 * most {@link MAX_LABEL_LENGTH} characters, at most {@link MAX_LABELS} labels in all (beyond it a
 * new label is refused with BAD_REQUEST; changing or clearing an existing one still works).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HubError } from '../errors.ts';
import type { Logger } from '../log/index.ts';

export const MAX_LABEL_LENGTH = 64;
export const MAX_LABELS = 100_000;
const FILE = 'channel-labels.json';

/** deviceId → channel key → label. */
export type LabelTable = Record<string, Record<string, string>>;

export interface ChannelLabels {
  /** Every label, by device then channel (a copy). */
  all(): LabelTable;
  /** One device's labels (a copy; empty when none). */
  of(deviceId: string): Record<string, string>;
  /**
   * Sets a channel's label; an empty (after trimming) label removes it (the default shows again).
   * Resolves once the file is durable.
   */
  set(deviceId: string, channel: string, label: string): Promise<void>;
}

export interface ChannelLabelsOptions {
  dataDir: string;
  logger: Logger;
}

export function openChannelLabels(options: ChannelLabelsOptions): ChannelLabels {
  const path = join(options.dataDir, FILE);
  const table = new Map<string, Map<string, string>>();
  let count = 0;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (parsed && typeof parsed === 'object') {
      for (const [deviceId, channels] of Object.entries(parsed as Record<string, unknown>)) {
        if (!channels || typeof channels !== 'object') continue;
        const m = new Map<string, string>();
        for (const [key, label] of Object.entries(channels as Record<string, unknown>)) {
          if (typeof label === 'string' && label.length > 0) m.set(key, label.slice(0, MAX_LABEL_LENGTH));
        }
        if (m.size > 0) table.set(deviceId, m);
        count += m.size;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      // A damaged file must not stop the hub: the labels fall back to their defaults, and say so.
      options.logger.warn({ err, path }, 'channel labels unreadable: showing default names until one is set again');
    }
  }

  const snapshot = (): LabelTable => {
    const out: LabelTable = {};
    for (const [deviceId, m] of table) out[deviceId] = Object.fromEntries(m);
    return out;
  };

  let writing: Promise<void> = Promise.resolve();
  const persist = (): Promise<void> => {
    const body = `${JSON.stringify(snapshot(), null, 1)}\n`;
    const run = async (): Promise<void> => {
      mkdirSync(options.dataDir, { recursive: true });
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, body);
      const fd = openSync(tmp, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      const dir = openSync(options.dataDir, 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    };
    writing = writing.then(run, run);
    return writing;
  };

  return {
    all: snapshot,
    of(deviceId) {
      return Object.fromEntries(table.get(deviceId) ?? []);
    },
    async set(deviceId, channel, label) {
      const text = label.trim();
      if (text.length > MAX_LABEL_LENGTH) {
        throw new HubError('BAD_REQUEST', `a label is at most ${MAX_LABEL_LENGTH} characters`);
      }
      let m = table.get(deviceId);
      const had = m?.has(channel) ?? false;
      if (text === '') {
        if (!had) return;
        m?.delete(channel);
        count--;
        if (m?.size === 0) table.delete(deviceId);
      } else {
        if (!had && count >= MAX_LABELS) {
          throw new HubError('BAD_REQUEST', `at most ${MAX_LABELS} channel labels are kept; clear some first`);
        }
        if (!m) {
          m = new Map();
          table.set(deviceId, m);
        }
        m.set(channel, text);
        if (!had) count++;
      }
      await persist();
    },
  };
}
