/** Builds firmware/test's host_device (the firmware's portable core on the host) for integration tests. */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIRMWARE_TEST_DIR = fileURLToPath(new URL('../../firmware/test', import.meta.url));

/** Builds the host device under a lock (shared checkout, parallel runs); see firmware-host.test.ts. */
export function buildHostDevice(): string {
  for (const tool of ['g++', 'make']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} not found: install a C++17 compiler and make (Debian/Ubuntu: apt-get install g++ make)`);
    }
  }
  const bin = join(FIRMWARE_TEST_DIR, 'build/host/bin/host_device');
  mkdirSync(join(FIRMWARE_TEST_DIR, 'build'), { recursive: true });
  const make = ['make', '-s', '-C', FIRMWARE_TEST_DIR, '-j2', bin];
  const haveFlock = spawnSync('sh', ['-c', 'command -v flock']).status === 0;
  const [cmd, ...args] = haveFlock ? ['flock', join(FIRMWARE_TEST_DIR, 'build/.lock'), ...make] : make;
  const r = spawnSync(cmd as string, args, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`host build failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return bin;
}

/** host_device's records (1 byte type, u32 little-endian length, payload): one record's bytes. */
export function encodeRecord(type: string, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32LE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Splits host_device's stdout into records as the bytes arrive. */
export class RecordReader {
  private buf = Buffer.alloc(0);
  constructor(private readonly onRecord: (type: string, payload: Buffer) => void) {}
  push(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32LE(1);
      if (this.buf.length < 5 + len) break;
      const type = String.fromCharCode(this.buf[0] as number);
      const payload = Buffer.from(this.buf.subarray(5, 5 + len));
      this.buf = this.buf.subarray(5 + len);
      this.onRecord(type, payload);
    }
  }
}
