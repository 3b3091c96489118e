/**
 * Raw sample → engineering value [PROTO-4]: integers with a non-zero `scaleExp` are fixed-point.
 * Division by a power of ten (not multiplication by 10^-n) keeps 2345 × 10^-2 at exactly 23.45.
 */
export function scaledValue(raw: number, scaleExp: number): number {
  if (scaleExp === 0) return raw;
  return scaleExp < 0 ? raw / 10 ** -scaleExp : raw * 10 ** scaleExp;
}
