import { describe, expect, it } from 'vitest';
import { defaultLabel, formatNumber, formatValue } from '../../server/web/format.ts';

describe('page number formatting', () => {
  it.each([
    [21.456, '°C', '21.456 °C'],
    [1011.94, 'hPa', '1,011.9 hPa'],
    [194448, '', '194,448'],
    [1234567.8, '', '1,234,600'],
    [-3.3, '%', '-3.3 %'],
    [0, 'V', '0 V'],
    [3.934, 'V', '3.934 V'],
    [0.0033, 'V', '3.3 mV'],
    [0.000012, 'A', '12 µA'],
    [12345, 'W', '12.345 kW'],
    [194448, 'B', '194.45 kB'],
    [2.5e9, 'Hz', '2.5 GHz'],
    [999_999.9, 'B', '1 MB'],
    [9999, 'W', '9,999 W'],
  ])('%d %s → %s', (value, unit, text) => {
    expect(formatNumber(value, unit)).toBe(text);
  });

  it('booleans as on/off, nothing as a dash, non-finite readably', () => {
    expect(formatValue(true, '')).toBe('on');
    expect(formatValue(false, '')).toBe('off');
    expect(formatValue(null, 'V')).toBe('—');
    expect(formatValue(Number.POSITIVE_INFINITY, '')).toBe('∞');
  });

  it('default channel labels come from the key', () => {
    expect(defaultLabel('battery_voltage')).toBe('Battery voltage');
    expect(defaultLabel('temperature')).toBe('Temperature');
    expect(defaultLabel('uptime_s')).toBe('Uptime s');
  });
});
