/**
 * Codec throughput: encode and decode of TELEMETRY frames of three sizes, each next to a bare `crc32`
 * over the same bytes measured in the same run (every decode and encode computes that CRC, so the ratio
 * says how much the codec costs on top of the one unavoidable pass). Design bar: decode ≥ 2 M frames/s
 * per core for the typical frame.
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import {
  type Block,
  decodeFrame,
  encodeFrame,
  f32Value,
  type SampleValue,
  type Telemetry,
  ValueType,
} from '../server/codec/index.ts';
import type { BenchOptions, BenchReport, BenchRow } from './run.ts';
import { formatNumber, measureRate } from './run.ts';

export const name = 'codec';

const DECODE_BAR = 2_000_000;
const VARIANTS = 16; // distinct frames per size, so the measured loop is not one frame replayed

interface Case {
  label: string;
  vector: string;
  shape: string;
}

const CASES: Case[] = [
  {
    label: 'typical',
    vector: 'telemetry-typical-8x4',
    shape: '8 channels × 4 samples, i16 fixed-point + f32 mix',
  },
  { label: 'small', vector: 'telemetry-small-1x1', shape: '1 channel × 1 sample' },
  { label: 'max-size', vector: 'telemetry-exactly-4096-bytes', shape: '8 blocks of u8 samples' },
];

function loadVector(vectorName: string): Uint8Array {
  const file = JSON.parse(readFileSync(new URL('../test/vectors/protocol-v1.json', import.meta.url), 'utf8')) as {
    valid: { name: string; hex: string }[];
  };
  const v = file.valid.find((x) => x.name === vectorName);
  if (!v) throw new Error(`golden vector ${vectorName} not found`);
  return Uint8Array.from(Buffer.from(v.hex, 'hex'));
}

/** Variants of a frame: other seq numbers and slightly different integer values, same size and shape. */
function variants(base: Telemetry): Telemetry[] {
  return Array.from({ length: VARIANTS }, (_, k) => ({
    ...base,
    seq: 1000 + k,
    blocks: base.blocks.map((b) => ({
      ...b,
      values: b.values.map((v) => (typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 100 ? v + (k % 3) : v)),
    })),
  }));
}

/**
 * What decoding must allocate, without the parsing: a fresh message with the same block objects and
 * arrays as `m` (built the way decodeFrame builds them), holding values of the same kinds (small
 * integers, doubles for f32, booleans) computed rather than read, so no reading of the source's mixed
 * arrays is measured. The floor under decode's rate as long as its output keeps this shape.
 */
function buildOutput(m: Telemetry, k: number): Telemetry {
  const blocks: Block[] = new Array(m.blocks.length);
  for (let j = 0; j < blocks.length; j++) {
    const b = m.blocks[j] as Block;
    const n = b.deltasMs.length;
    const vt = b.valueType;
    const deltasMs: number[] = new Array(n);
    const values: SampleValue[] = vt === ValueType.F32 ? new Array(n) : new Array(n);
    for (let i = 0; i < n; i++) {
      deltasMs[i] = i * 1000;
      if (vt === ValueType.F32) values[i] = k + 0.5;
      else if (vt === ValueType.BOOL) values[i] = i > k;
      else values[i] = i + k;
    }
    blocks[j] = { channel: b.channel, valueType: vt, deltasMs, values };
  }
  return {
    type: 'telemetry',
    unsynced: m.unsynced,
    bootId: m.bootId,
    seq: k,
    descriptorHash: m.descriptorHash,
    baseTime: m.baseTime,
    blocks,
  };
}

const samplesOf = (t: Telemetry) => t.blocks.reduce((n, b) => n + b.values.filter((v) => v !== null).length, 0);

export async function run(options: BenchOptions = { quick: false }): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  let typicalWall = 0;
  let outputShare = 0;
  const notes: string[] = [];
  for (const c of CASES) {
    const base = decodeFrame(loadVector(c.vector)) as Telemetry;
    const messages = variants(base);
    const frames = messages.map((m) => encodeFrame(m));
    const size = frames[0]?.length ?? 0;
    const readings = samplesOf(base);
    notes.push(
      `${c.label}: ${size} bytes, ${readings} reading${readings === 1 ? '' : 's'} (${c.shape}); golden vector ${c.vector}`,
    );

    const measure = { ...options, clock: 'cpu' } as const;
    const crc = measureRate((n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc ^= crc32(frames[i % VARIANTS] as Uint8Array);
      return acc;
    }, measure);
    const decode = measureRate((n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += (decodeFrame(frames[i % VARIANTS] as Uint8Array) as Telemetry).seq;
      return acc;
    }, measure);
    const encode = measureRate((n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += encodeFrame(messages[i % VARIANTS] as Telemetry).length;
      return acc;
    }, measure);

    if (c.label === 'typical') typicalWall = decode.wallMedian;
    const baseline = { label: `crc32 of the same ${size} B`, value: crc.median };
    const bar =
      c.label === 'typical' ? `bar ≥ ${DECODE_BAR / 1e6} M/s: ${decode.median >= DECODE_BAR ? 'met' : 'NOT met'}` : '';
    rows.push({ metric: `decode ${c.label}`, value: decode.median, unit: 'frames/s', baseline, note: bar });
    rows.push({ metric: `decode ${c.label}`, value: decode.median * readings, unit: 'readings/s' });
    if (c.label === 'typical') {
      const output = measureRate((n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += buildOutput(base, i % VARIANTS).seq;
        return acc;
      }, measure);
      outputShare = decode.median / output.median;
      rows.push({
        metric: 'output alone typical',
        value: output.median,
        unit: 'frames/s',
        note: 'allocating the decoded message, no parsing',
      });
    }
    rows.push({ metric: `encode ${c.label}`, value: encode.median, unit: 'frames/s', baseline });
    rows.push({ metric: `encode ${c.label}`, value: encode.median * readings, unit: 'readings/s' });
  }
  rows.push(...f32TextRows(options));
  notes.push(
    'rates are per CPU-second of this process (process.cpuUsage; median of the rounds after warm-up), so other load on a shared machine does not deflate them',
    'baseline = zlib.crc32 over the same frame (one native call: the least any receiver does); ratio = codec rate / baseline rate',
    `wall-clock median of decode typical in the same run: ${formatNumber(typicalWall)} frames/s`,
    `decode typical spends ${Math.round(outputShare * 100)} % of its time building its output (rate of decode / rate of "output alone", same run)`,
  );
  return { title: 'protocol v1 codec: TELEMETRY encode / decode', rows, notes };
}

/**
 * The text of an f32 reading (what every line into InfluxDB and every live message carries): the
 * shortest decimal that reads back as the same binary32 (`f32Value`, then `String`), against the text
 * of the float64 widening the hub wrote before. Values with two decimals (a sensor's usual resolution)
 * and random binary32 values of the same magnitude (7 significant digits, the slow path).
 */
function f32TextRows(options: BenchOptions): BenchRow[] {
  const measure = { ...options, clock: 'cpu' } as const;
  const sets: [string, number[]][] = [
    ['two decimals', Array.from({ length: 4096 }, (_, i) => Math.fround(3.3 + (i % 97) / 100 + (i % 13)))],
    ['random', Array.from({ length: 4096 }, () => Math.fround((Math.random() - 0.5) * 200))],
  ];
  const rows: BenchRow[] = [];
  for (const [label, values] of sets) {
    const text = (toText: (v: number) => string) =>
      measureRate((n) => {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += toText(values[i & 4095] as number).length;
        return acc;
      }, measure);
    const widened = text((v) => String(v));
    const shortest = text((v) => String(f32Value(v)));
    const chars = (toText: (v: number) => string) =>
      values.reduce((sum, v) => sum + toText(v).length, 0) / values.length;
    rows.push({
      metric: `f32 reading as text, ${label}`,
      value: shortest.median,
      unit: 'values/s',
      baseline: { label: 'String() of the float64 widening', value: widened.median },
      note: `${chars((v) => String(f32Value(v))).toFixed(1)} characters per value, against ${chars((v) => String(v)).toFixed(1)}`,
    });
  }
  return rows;
}
