import { ProtocolError } from '../errors.ts';
import { type Block, ValueType } from './types.ts';

/**
 * The descriptor a TELEMETRY block refers to, checked against it [PROTO-3.4]: `UNKNOWN_CHANNEL` when
 * the set has no such index, `TYPE_MISMATCH` when the block's value type is not the descriptor's.
 * Generic over the descriptor's shape, so each reader's own table (e.g. with cached line prefixes) works.
 */
export function checkedChannel<C extends { key: string; valueType: number }>(
  ch: C | undefined,
  block: Pick<Block, 'channel' | 'valueType'>,
): C {
  if (!ch) throw new ProtocolError('UNKNOWN_CHANNEL', `channel index ${block.channel} is not in the descriptor set`);
  if (ch.valueType !== block.valueType) {
    throw new ProtocolError(
      'TYPE_MISMATCH',
      `channel ${ch.key} is type ${ch.valueType}, block says ${block.valueType}`,
    );
  }
  return ch;
}

/**
 * Raw sample → engineering value [PROTO-4]: integers with a non-zero `scaleExp` are fixed-point.
 * Division by a power of ten (not multiplication by 10^-n) keeps 2345 × 10^-2 at exactly 23.45.
 */
export function scaledValue(raw: number, scaleExp: number): number {
  if (scaleExp === 0) return raw;
  return scaleExp < 0 ? raw / 10 ** -scaleExp : raw * 10 ** scaleExp;
}

/**
 * An f32 sample as the shortest decimal that reads back as the same binary32 [PROTO-4]: 3.3, not
 * 3.299999952316284 (its float64 widening). That is what the device's code wrote, and 17-digit text
 * would lengthen every line into InfluxDB and every live message for nothing.
 */
export function f32Value(f: number): number {
  if (f === 0 || !Number.isFinite(f)) return f;
  const a = f < 0 ? -f : f;
  if (a >= 1e-3 && a < 1e9) {
    // Fewest decimals first (so fewest digits): m / 10^k is the float64 nearest m × 10^-k, as both
    // operands are exact, so its text is that short decimal. 10 decimals resolve an f32 above 1e-3.
    let p = 1;
    for (let k = 0; k <= 12; k++, p *= 10) {
      const d = Math.round(f * p) / p;
      if (Math.fround(d) === f) return d;
    }
  }
  for (let digits = 1; digits < 9; digits++) {
    const d = Number(f.toPrecision(digits));
    if (Math.fround(d) === f) return d;
  }
  return Number(f.toPrecision(9)); // 9 significant digits always read back as the same binary32
}

/** A raw sample → the reading's value [PROTO-4]: f32 as `f32Value`, integers scaled, a bool as itself. */
export function readingValue(raw: number, ch: { valueType: number; scaleExp: number }): number;
export function readingValue(raw: number | boolean, ch: { valueType: number; scaleExp: number }): number | boolean;
export function readingValue(raw: number | boolean, ch: { valueType: number; scaleExp: number }): number | boolean {
  if (typeof raw === 'boolean') return raw;
  return ch.valueType === ValueType.F32 ? f32Value(raw) : scaledValue(raw, ch.scaleExp);
}
