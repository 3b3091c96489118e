/**
 * Number and name formatting for the page (pure; unit-tested in test/unit/web-format.test.ts).
 *
 * - Units that take SI prefixes (V, A, W, Wh, Hz, Pa, B, g, m, s, J, F, Ω, lx, bps) get one once the
 *   value leaves 1..9,999: 12.35 kW, 3.3 mV, 194.4 kB. Other units (°C, %, hPa, dBm, ppm, counts) keep
 *   the plain number with thousands separators: 1,011.9 hPa, 194,448.
 * - Five significant digits at most, trailing zeros dropped; integers exact up to 10¹⁵.
 * - Separators are fixed (en-US: `,` for thousands, `.` for decimals) so that what tests and
 *   screenshots show is what every operator sees.
 */

const PREFIXABLE = new Set([
  'V',
  'A',
  'W',
  'Wh',
  'VA',
  'Hz',
  'Pa',
  'B',
  'g',
  'm',
  's',
  'J',
  'F',
  'Ω',
  'lx',
  'bps',
  'b',
]);

const PREFIXES: readonly [number, string][] = [
  [1e12, 'T'],
  [1e9, 'G'],
  [1e6, 'M'],
  [1e3, 'k'],
  [1, ''],
  [1e-3, 'm'],
  [1e-6, 'µ'],
  [1e-9, 'n'],
];

const plain = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 5 });
const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A number for display with its unit: SI prefix where the unit takes one, thousands separators otherwise. */
export function formatNumber(value: number, unit: string): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? '—' : value > 0 ? '∞' : '−∞';
  const abs = Math.abs(value);
  if (PREFIXABLE.has(unit) && value !== 0 && (abs >= 10_000 || abs < 1)) {
    const [scale, prefix] =
      PREFIXES.find(([s]) => abs >= s * 0.999995) ?? (PREFIXES[PREFIXES.length - 1] as [number, string]);
    return `${plain.format(value / scale)} ${prefix}${unit}`;
  }
  const text = Number.isInteger(value) && abs < 1e15 ? integer.format(value) : plain.format(value);
  return unit ? `${text} ${unit}` : text;
}

/** A value for display: numbers per {@link formatNumber}, booleans as on/off, nothing as a dash. */
export function formatValue(value: number | boolean | null | undefined, unit: string): string {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  return formatNumber(value, unit);
}

/** The name a channel shows until an operator sets one: `battery_v` → "Battery v", `rssi_dbm` → "Rssi dbm". */
export function defaultLabel(key: string): string {
  const words = key.replaceAll('_', ' ').trim();
  return words ? words.charAt(0).toUpperCase() + words.slice(1) : key;
}
