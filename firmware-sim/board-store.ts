/**
 * What a simulated board keeps when it loses power: its NVS (boot counter, token, commanded sample
 * interval, command results, descriptor sets) and its flash outbox (TELEMETRY frames not yet
 * acknowledged, oldest first). The device writes through a `BoardStore` as the firmware writes to
 * flash: a frame counts as buffered once `appendFrame` has returned, and a power cut
 * (`SimDevice.powerCut`) drops every RAM structure and reloads from the store.
 *
 * Two stores:
 * - `MemoryBoardStore` (default): "flash" that lives as long as the process, so power cuts work in
 *   tests and in runs without `--state-dir`;
 * - `FileBoardStore` (`--state-dir D`): `D/<deviceId>/nvs.json` (write-then-rename) and
 *   `D/<deviceId>/outbox.log` (append-only records, compacted by write-then-rename), so a board's
 *   state survives the simulator process too.
 */

import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { type ChannelDescriptor, decodeFrame } from '../server/codec/index.ts';
import type { OtaNvs } from './ota.ts';

/** The board's NVS: small settings written rarely (once per boot, on a command, on a new descriptor set). */
export interface BoardNvs {
  /** Boots so far; incremented and written before a boot id is drawn [PROTO-3.1]. */
  bootCounter: number;
  /** The device token, when the board has been given one. */
  token: string | null;
  /** Interval set by `set_sample_interval` (kept over WELCOME's default and across boots). */
  commandedIntervalMs: number | null;
  /** Results of the latest command ids (null: accepted, not finished), oldest first. */
  commandResults: [commandId: number, result: { status: number; message: string } | null][];
  /** Descriptor sets by hash: buffered frames carry only the hash. */
  descriptorSets: [hash: number, channels: ChannelDescriptor[]][];
  /** The virtual OTA partitions (ota.ts); absent until the first update. */
  ota?: OtaNvs;
}

export function emptyNvs(): BoardNvs {
  return { bootCounter: 0, token: null, commandedIntervalMs: null, commandResults: [], descriptorSets: [] };
}

export interface BoardStore {
  readNvs(): BoardNvs;
  writeNvs(nvs: BoardNvs): void;
  /** The buffered frames, oldest first (a torn last record is discarded). */
  readOutbox(): Uint8Array[];
  /** Appends one frame; it is buffered once this returns. */
  appendFrame(frame: Uint8Array): void;
  /** Frames buffered (what `readOutbox` would return). */
  depth(): number;
  /** Forgets the `n` oldest frames (acknowledged, or dropped when full). */
  dropFrames(n: number): void;
  /** Replaces the whole outbox (frames restamped with a new boot id). */
  rewriteOutbox(frames: readonly Uint8Array[]): void;
  /** Flushes and releases the store (the next power-on opens it again). */
  close(): void;
}

/** Flash and NVS that last as long as the process. */
export class MemoryBoardStore implements BoardStore {
  private nvs: BoardNvs = emptyNvs();
  private frames: Uint8Array[] = [];
  private head = 0;

  readNvs(): BoardNvs {
    return structuredClone(this.nvs);
  }
  writeNvs(nvs: BoardNvs): void {
    this.nvs = structuredClone(nvs);
  }
  readOutbox(): Uint8Array[] {
    return this.frames.slice(this.head).map((f) => f.slice());
  }
  depth(): number {
    return this.frames.length - this.head;
  }
  appendFrame(frame: Uint8Array): void {
    this.frames.push(frame.slice());
  }
  dropFrames(n: number): void {
    this.head = Math.min(this.frames.length, this.head + n);
    if (this.head > 1024 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
  }
  rewriteOutbox(frames: readonly Uint8Array[]): void {
    this.frames = frames.map((f) => f.slice());
    this.head = 0;
  }
  close(): void {}
}

/** Outbox log records: a frame (u32 length + the frame, which carries its own CRC), or a drop of n frames. */
const REC_FRAME = 0x46; // 'F'
const REC_DROP = 0x44; // 'D'
/** Compact when the log holds this many bytes more than twice its live frames. */
const COMPACT_SLACK_BYTES = 256 * 1024;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function writeThenRename(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * A board's state in `<stateDir>/<deviceId>/`, locked by this process while open (`lock` holds the
 * pid; a lock whose process is gone is taken over).
 *
 * Durability, chosen for a simulator: every record is written with a synchronous `write(2)` before
 * the device goes on, so it survives the simulator being killed at any point (the kernel holds it);
 * `fsync` runs when NVS is written (write-then-rename), on compaction and on close, not per frame —
 * a host crash may lose the last frames, which no simulated fault depends on. A torn last record
 * (the process killed mid-write) is detected on load (length, then the frame's CRC) and cut off.
 */
export class FileBoardStore implements BoardStore {
  readonly dir: string;
  private readonly nvsPath: string;
  private readonly logPath: string;
  private readonly lockPath: string;
  /** Whether the counters below reflect the log (read at power-on, or stat'ed at the first write). */
  private known = false;
  /** Live frames' sizes, oldest first, and the log's size: decide when to compact. */
  private liveSizes: number[] = [];
  private liveHead = 0;
  private liveBytes = 0;
  private logBytes = 0;
  private locked = false;

  constructor(stateDir: string, deviceId: string) {
    this.dir = join(stateDir, deviceId);
    this.nvsPath = join(this.dir, 'nvs.json');
    this.logPath = join(this.dir, 'outbox.log');
    this.lockPath = join(this.dir, 'lock');
    this.lock(); // fail early (at fleet construction) when another process runs this board
  }

  /** Takes the board's lock; throws when another live process holds it. */
  private lock(): void {
    if (this.locked) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(this.lockPath, String(process.pid), { flag: 'wx', mode: 0o600 });
        this.locked = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number(readFileSync(this.lockPath, 'utf8').trim());
        if (holder === process.pid || (Number.isInteger(holder) && holder > 0 && processAlive(holder))) {
          throw new Error(`board state ${this.dir} is in use by process ${holder}`);
        }
        unlinkSync(this.lockPath); // stale: its process is gone
      }
    }
    throw new Error(`could not lock board state ${this.dir}`);
  }

  readNvs(): BoardNvs {
    this.lock();
    if (!existsSync(this.nvsPath)) return emptyNvs();
    const parsed = JSON.parse(readFileSync(this.nvsPath, 'utf8')) as Partial<BoardNvs>;
    return { ...emptyNvs(), ...parsed };
  }

  writeNvs(nvs: BoardNvs): void {
    this.lock();
    writeThenRename(this.nvsPath, `${JSON.stringify(nvs)}\n`, 0o600);
  }

  readOutbox(): Uint8Array[] {
    this.lock();
    const frames: Uint8Array[] = [];
    let head = 0;
    let good = 0;
    let data: Buffer = Buffer.alloc(0);
    if (existsSync(this.logPath)) data = readFileSync(this.logPath);
    let off = 0;
    while (off + 5 <= data.length) {
      const type = data[off] as number;
      const n = data.readUInt32LE(off + 1);
      if (type === REC_DROP) {
        head = Math.min(frames.length, head + n);
        off += 5;
      } else if (type === REC_FRAME) {
        if (off + 5 + n > data.length) break; // torn
        const frame = new Uint8Array(data.subarray(off + 5, off + 5 + n));
        try {
          decodeFrame(frame); // CRC and structure: a torn or corrupt frame ends the log
        } catch {
          break;
        }
        frames.push(frame);
        off += 5 + n;
      } else {
        break;
      }
      good = off;
    }
    const live = frames.slice(head);
    this.liveSizes = live.map((f) => f.byteLength + 5);
    this.liveHead = 0;
    this.liveBytes = this.liveSizes.reduce((a, b) => a + b, 0);
    this.logBytes = good;
    this.known = true;
    if (good < data.length) {
      // Cut the torn tail so later appends follow the last good record.
      const fd = openSync(this.logPath, 'r+');
      try {
        ftruncateSync(fd, good);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    return live;
  }

  depth(): number {
    return this.liveSizes.length - this.liveHead;
  }

  /**
   * Appends one record. The log is opened per write rather than held open: a fleet of thousands of
   * boards with a state directory would otherwise hold one descriptor per board.
   */
  private append(rec: Buffer): void {
    this.lock();
    if (!this.known) this.readOutbox();
    const fd = openSync(this.logPath, 'a', 0o600);
    try {
      writeSync(fd, rec);
    } finally {
      closeSync(fd);
    }
    this.logBytes += rec.length;
  }

  appendFrame(frame: Uint8Array): void {
    const rec = Buffer.allocUnsafe(5 + frame.byteLength);
    rec[0] = REC_FRAME;
    rec.writeUInt32LE(frame.byteLength, 1);
    rec.set(frame, 5);
    this.append(rec);
    this.liveSizes.push(rec.length);
    this.liveBytes += rec.length;
  }

  dropFrames(n: number): void {
    if (n <= 0) return;
    const rec = Buffer.allocUnsafe(5);
    rec[0] = REC_DROP;
    rec.writeUInt32LE(n, 1);
    this.append(rec);
    for (let i = 0; i < n && this.liveHead < this.liveSizes.length; i++) {
      this.liveBytes -= this.liveSizes[this.liveHead++] as number;
    }
    if (this.liveHead > 4096) {
      this.liveSizes = this.liveSizes.slice(this.liveHead);
      this.liveHead = 0;
    }
    if (this.logBytes > 2 * this.liveBytes + COMPACT_SLACK_BYTES) this.compact();
  }

  /** Rewrites the live frames into a fresh log (write-then-rename): the log never grows without bound. */
  private compact(): void {
    this.rewriteOutbox(this.readOutbox());
  }

  rewriteOutbox(frames: readonly Uint8Array[]): void {
    this.lock();
    const parts: Buffer[] = [];
    for (const f of frames) {
      const h = Buffer.allocUnsafe(5);
      h[0] = REC_FRAME;
      h.writeUInt32LE(f.byteLength, 1);
      parts.push(h, Buffer.from(f.buffer, f.byteOffset, f.byteLength));
    }
    const data = Buffer.concat(parts);
    writeThenRename(this.logPath, data, 0o600);
    this.liveSizes = frames.map((f) => f.byteLength + 5);
    this.liveHead = 0;
    this.liveBytes = data.length;
    this.logBytes = data.length;
    this.known = true;
  }

  close(): void {
    if (existsSync(this.logPath)) {
      const fd = openSync(this.logPath, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    this.known = false;
    if (this.locked) {
      try {
        unlinkSync(this.lockPath);
      } catch {
        // already gone
      }
      this.locked = false;
    }
  }
}

/** Reads a board's token from its state without locking it (the CLI does this before the boards start). */
export function stateToken(stateDir: string, deviceId: string): string | null {
  const path = join(stateDir, deviceId, 'nvs.json');
  if (!existsSync(path)) return null;
  try {
    const nvs = JSON.parse(readFileSync(path, 'utf8')) as Partial<BoardNvs>;
    return typeof nvs.token === 'string' && nvs.token ? nvs.token : null;
  } catch {
    return null;
  }
}
