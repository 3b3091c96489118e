import { ProtocolError } from '../errors.ts';
import type { Block } from './types.ts';

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
