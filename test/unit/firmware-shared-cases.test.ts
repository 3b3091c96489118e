/**
 * Shared cases between the firmware's C++ core and the simulator (firmware/test/shared-cases.json): the
 * TypeScript side — the codec plus the simulator's `channelDescriptors` and `FrameBuilder` — must
 * produce each case's `hex`; the C++ host tests (firmware-host.test.ts) check the same file from the
 * other side. Run with UPDATE_SHARED_CASES=1 to rewrite the `hex` fields after changing an input.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CHANNELS, channelDescriptors } from '../../firmware-sim/sensors.ts';
import { FrameBuilder } from '../../firmware-sim/telemetry.ts';
import { descriptorHash, encodeFrame, type Message, type SampleValue } from '../../server/codec/index.ts';

const SHARED_CASES_PATH = fileURLToPath(new URL('../../firmware/test/shared-cases.json', import.meta.url));

interface BaseCase {
  name: string;
  description?: string;
  hex: string;
}
interface DescriptorsCase extends BaseCase {
  kind: 'board-descriptors';
  sampleIntervalMs: number;
  channels: number[];
}
interface TelemetryCase extends BaseCase {
  kind: 'telemetry';
  bootId: number;
  seq: number;
  descriptorSet: string;
  unsynced: boolean;
  samples: { channel: number; timeMs: number; value: SampleValue }[];
}
interface MessageCase extends BaseCase {
  kind: 'message';
  fields: Message;
  descriptorSet?: string;
}
type SharedCase = DescriptorsCase | TelemetryCase | MessageCase;
interface SharedCasesFile {
  about: string;
  cases: SharedCase[];
}

const text = readFileSync(SHARED_CASES_PATH, 'utf8');
const file = JSON.parse(text) as SharedCasesFile;
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

function boardChannels(c: DescriptorsCase) {
  return channelDescriptors(
    c.sampleIntervalMs,
    CHANNELS.filter((s) => c.channels.includes(s.index)),
  );
}

function hashOf(setName: string): number {
  const set = file.cases.find((c): c is DescriptorsCase => c.name === setName && c.kind === 'board-descriptors');
  if (!set) throw new Error(`no board-descriptors case named ${setName}`);
  return descriptorHash(boardChannels(set));
}

/** What the TypeScript side produces for a case, and the size the simulator's builder predicted. */
function encodeCase(c: SharedCase): { bytes: Uint8Array; predictedBytes?: number } {
  switch (c.kind) {
    case 'board-descriptors':
      return { bytes: encodeFrame({ type: 'descriptors', channels: boardChannels(c) }) };
    case 'telemetry': {
      const builder = new FrameBuilder();
      for (const s of c.samples) {
        const spec = CHANNELS.find((x) => x.index === s.channel);
        if (!spec) throw new Error(`channel ${s.channel} is not in the simulator's table`);
        builder.add(s.channel, spec.valueType, s.timeMs, s.value, c.unsynced);
      }
      const predictedBytes = builder.bytes;
      return { bytes: encodeFrame(builder.take(c.bootId, c.seq, hashOf(c.descriptorSet))), predictedBytes };
    }
    case 'message': {
      const fields =
        c.descriptorSet !== undefined && c.fields.type === 'hello'
          ? { ...c.fields, descriptorHash: hashOf(c.descriptorSet) }
          : c.fields;
      return { bytes: encodeFrame(fields) };
    }
  }
}

if (process.env.UPDATE_SHARED_CASES === '1') {
  for (const c of file.cases) c.hex = hex(encodeCase(c).bytes);
  writeFileSync(SHARED_CASES_PATH, `${JSON.stringify(file, null, 2)}\n`);
}

describe('firmware/simulator shared cases', () => {
  it('has cases of every kind, names unique, hex filled in', () => {
    const kinds = new Set(file.cases.map((c) => c.kind));
    expect([...kinds].sort()).toEqual(['board-descriptors', 'message', 'telemetry']);
    expect(new Set(file.cases.map((c) => c.name)).size).toBe(file.cases.length);
    for (const c of file.cases) expect(c.hex, c.name).toMatch(/^([0-9a-f]{2})+$/);
  });

  for (const c of file.cases) {
    it(`${c.kind} ${c.name}: the TypeScript side produces the shared bytes`, () => {
      const { bytes, predictedBytes } = encodeCase(c);
      expect(hex(bytes)).toBe(c.hex);
      // The simulator's builder tracks the frame size as it grows, like the firmware's.
      if (predictedBytes !== undefined) expect(predictedBytes).toBe(bytes.length);
    });
  }
});
