/**
 * Child of local-log.test.ts's restart test: opens the log in the directory it is given, stores frames
 * of several devices (their time-index entries still written behind), says so, and waits to be killed
 * with SIGKILL: no close, nothing flushed beyond what each commit made durable.
 */
import { fileURLToPath } from 'node:url';
import { descriptorHash, encodeFrame, ValueType } from '../../server/codec/index.ts';
import { openLocalLog } from '../../server/storage/local-log.ts';
import { testLogOptions } from './local-log-fixture.ts';

export const CRASH_CHANNELS = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -1, periodMs: 1000 },
];
export const CRASH_DEVICES = ['dev-a', 'dev-b', 'dev-c'];
export const CRASH_FRAMES_PER_DEVICE = 5;
export const CRASH_T0 = 1_700_000_000_000;

async function main(dir: string): Promise<void> {
  const log = openLocalLog(testLogOptions(dir, { now: () => CRASH_T0 }));
  const hash = descriptorHash(CRASH_CHANNELS);
  const stored: Promise<number>[] = [];
  for (const id of CRASH_DEVICES) {
    log.putDescriptors(id, hash, CRASH_CHANNELS);
    log.putDevice(id, { firstSeenMs: CRASH_T0, lastAck: null, maxSpanMs: 0 });
    for (let seq = 1; seq <= CRASH_FRAMES_PER_DEVICE; seq++) {
      const baseTime = CRASH_T0 + seq * 1000;
      const frame = encodeFrame({
        type: 'telemetry',
        unsynced: false,
        bootId: 1,
        seq,
        descriptorHash: hash,
        baseTime,
        blocks: [{ channel: 0, valueType: ValueType.I16, deltasMs: [0], values: [seq] }],
      });
      stored.push(
        new Promise((resolve, reject) =>
          log.append(
            {
              deviceId: id,
              bootId: 1,
              seq,
              receivedAtMs: CRASH_T0,
              timeOffsetMs: 0,
              frame,
              minTimeMs: baseTime,
              maxTimeMs: baseTime,
            },
            (err, offset) => (err ? reject(err) : resolve(offset)),
          ),
        ),
      );
    }
  }
  await Promise.all(stored);
  process.send?.({ stored: stored.length });
  setInterval(() => {}, 60_000); // wait for the SIGKILL
}

// Only as a forked process's entry, never on import by the test.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2]) void main(process.argv[2]);
