/**
 * Channel units (the descriptor's free text [PROTO-2.8], e.g. `°C`, `%`, `hPa`, `V`, `dBm`, `B`, `s`)
 * mapped to Grafana's unit ids, so a panel formats a channel as its unit says (23.4 °C, 3.91 V,
 * 195 KiB, 2.5 hours). The hub writes the unit as the `unit` tag of `telemetry` (docs/storage.md); a
 * unit not listed here is shown as a plain number.
 */
import * as units from '@grafana/grafana-foundation-sdk/units';

export const CHANNEL_UNITS: Readonly<Record<string, string>> = {
  '°C': units.Celsius,
  '°F': units.Fahrenheit,
  K: units.Kelvin,
  '%': units.Percent,
  '%RH': units.Humidity,
  hPa: units.Hectopascals,
  kPa: units.Kilopascals,
  Pa: units.Pascals,
  mbar: units.Millibars,
  V: units.Volt,
  mV: units.MilliVolt,
  A: units.Ampere,
  mA: units.MilliAmpere,
  W: units.Watt,
  kW: units.KiloWatt,
  dBm: units.DecibelMilliWatt,
  B: units.BytesIEC,
  s: units.Seconds,
  ms: units.Milliseconds,
  Hz: units.Hertz,
  lx: units.Lux,
  ppm: units.PartsPerMillion,
  m: units.Meter,
  mm: units.Millimeter,
  'm/s': units.MetersPerSecond,
  rpm: units.RevolutionsPerMinute,
  '°': units.Degrees,
};

/** Grafana's unit id for a channel unit; `none` (a plain number) for no unit or one not listed. */
export function grafanaUnit(channelUnit: string): string {
  return CHANNEL_UNITS[channelUnit] ?? units.NoUnit;
}
