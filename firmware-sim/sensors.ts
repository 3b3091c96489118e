/**
 * Seeded, realistic sensors for a simulated ESP32 board: temperature and humidity with a daily cycle
 * and weather, barometric pressure, a LiPo battery that drains and is sometimes recharged, Wi-Fi RSSI,
 * free heap and uptime, plus the status LED that `identify` blinks.
 *
 * Physical quantities follow the host clock (the weather does not care about the device's clock);
 * values come out as raw integers already in the channel's fixed-point encoding [PROTO-4], ready to
 * put on the wire. All randomness is drawn from the `Rng` given to the constructor.
 */
import { type ChannelDescriptor, ValueType } from '../server/codec/index.ts';
import type { Rng } from './rng.ts';

/** A channel of the simulated board: its descriptor plus how often it is sampled. */
export interface ChannelSpec extends Omit<ChannelDescriptor, 'periodMs'> {
  /** Sampled on every `everyTicks`-th sample tick; 0 = irregular (only on change). */
  everyTicks: number;
}

/** Channel indexes, stable across versions: the firmware uses the same table. */
export const Channel = {
  TEMPERATURE: 0,
  HUMIDITY: 1,
  PRESSURE: 2,
  BATTERY_V: 3,
  RSSI_DBM: 4,
  HEAP_FREE: 5,
  UPTIME_S: 6,
  LED: 7,
} as const;

/**
 * The board's channel set. Fixed-point choices keep a reading at 1–4 bytes: 23.45 °C is i16 2345 at
 * scale −2, 1013.25 hPa is u32 101325 at scale −2, 3.912 V is u16 3912 at scale −3.
 */
export const CHANNELS: readonly ChannelSpec[] = [
  { index: 0, key: 'temperature', unit: '°C', valueType: ValueType.I16, scaleExp: -2, everyTicks: 1 },
  { index: 1, key: 'humidity', unit: '%', valueType: ValueType.U16, scaleExp: -2, everyTicks: 1 },
  { index: 2, key: 'pressure', unit: 'hPa', valueType: ValueType.U32, scaleExp: -2, everyTicks: 2 },
  { index: 3, key: 'battery_v', unit: 'V', valueType: ValueType.U16, scaleExp: -3, everyTicks: 5 },
  { index: 4, key: 'rssi_dbm', unit: 'dBm', valueType: ValueType.I8, scaleExp: 0, everyTicks: 2 },
  { index: 5, key: 'heap_free', unit: 'B', valueType: ValueType.U32, scaleExp: 0, everyTicks: 5 },
  { index: 6, key: 'uptime_s', unit: 's', valueType: ValueType.U32, scaleExp: 0, everyTicks: 10 },
  { index: 7, key: 'led', unit: '', valueType: ValueType.BOOL, scaleExp: 0, everyTicks: 0 },
];

/** The DESCRIPTORS set for a sample interval: `periodMs` is each channel's nominal period [PROTO-3.3]. */
export function channelDescriptors(sampleIntervalMs: number, specs: readonly ChannelSpec[] = CHANNELS) {
  return specs.map(
    (s): ChannelDescriptor => ({
      index: s.index,
      key: s.key,
      unit: s.unit,
      valueType: s.valueType,
      scaleExp: s.scaleExp,
      // Integer ms on the wire; a fractional tick (e.g. 62.5 ms at 4 frames/s) is rounded.
      periodMs: s.everyTicks === 0 ? 0 : Math.round(s.everyTicks * sampleIntervalMs),
    }),
  );
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/**
 * Ornstein–Uhlenbeck process: mean-reverting noise, the usual model for weather anomalies and slow
 * sensor drift. Updated lazily from the elapsed time, so the sample rate does not change its statistics.
 */
class MeanReverting {
  value: number;
  private lastMs: number | null = null;
  // Decay factors for the last step length: ticks are regular, so exp/sqrt run once, not per sample.
  private lastDt = -1;
  private decay = 0;
  private spread = 0;
  constructor(
    private readonly mean: number,
    /** Stationary standard deviation. */
    private readonly sigma: number,
    /** Correlation time in ms. */
    private readonly tauMs: number,
    rng: Rng,
  ) {
    this.value = mean + sigma * rng.normal();
  }
  at(ms: number, rng: Rng): number {
    if (this.lastMs !== null && ms > this.lastMs) {
      const dt = ms - this.lastMs;
      if (dt !== this.lastDt) {
        this.lastDt = dt;
        this.decay = Math.exp(-dt / this.tauMs);
        this.spread = this.sigma * Math.sqrt(1 - this.decay * this.decay);
      }
      this.value = this.mean + (this.value - this.mean) * this.decay + this.spread * rng.normal();
    }
    this.lastMs = ms;
    return this.value;
  }
}

/** Per-board constants, drawn once from the device's seed. */
export interface BoardProfile {
  indoor: boolean;
  /** Offset of local time from UTC, hours (drives the daily cycle's phase). */
  utcOffsetHours: number;
  meanTemperatureC: number;
  dailyAmplitudeC: number;
  meanHumidityPct: number;
  altitudeM: number;
  meanRssiDbm: number;
  /** Battery drain while discharging, volts per hour. */
  drainVPerHour: number;
  heapBytes: number;
}

export function drawProfile(rng: Rng): BoardProfile {
  const indoor = rng.chance(0.6);
  return {
    indoor,
    utcOffsetHours: rng.int(-8, 9),
    meanTemperatureC: indoor ? rng.uniform(19.5, 23.5) : rng.uniform(4, 22),
    dailyAmplitudeC: indoor ? rng.uniform(0.8, 2.5) : rng.uniform(3, 8),
    meanHumidityPct: indoor ? rng.uniform(35, 55) : rng.uniform(55, 80),
    altitudeM: rng.uniform(0, 600),
    meanRssiDbm: rng.uniform(-82, -48),
    drainVPerHour: rng.uniform(0.01, 0.06),
    heapBytes: 4 * rng.int(42_000, 52_000),
  };
}

/**
 * The sensors of one board. `read(channel, hostMs, uptimeMs)` returns the raw wire value, or null
 * for a failed read (sent as a "missing" sample [PROTO-3.4]).
 */
export class SensorSuite {
  readonly profile: BoardProfile;
  private readonly rng: Rng;
  private readonly weather: MeanReverting;
  private readonly humidityNoise: MeanReverting;
  private readonly pressureWeather: MeanReverting;
  private readonly rssiFade: MeanReverting;
  private batteryV: number;
  private charging = false;
  private batteryMs: number | null = null;
  private heapLeak = 0;
  private led = false;
  private tempAtMs = Number.NaN;
  private tempC = 0;
  /** Probability that a temperature/humidity read fails (I²C glitch): sent as "missing". */
  missingRate = 0.002;

  constructor(rng: Rng, profile?: BoardProfile) {
    this.rng = rng;
    this.profile = profile ?? drawProfile(rng);
    const p = this.profile;
    this.weather = new MeanReverting(0, p.indoor ? 0.4 : 2.5, 6 * HOUR_MS, rng);
    this.humidityNoise = new MeanReverting(0, 4, 2 * HOUR_MS, rng);
    this.pressureWeather = new MeanReverting(0, 6, 18 * HOUR_MS, rng);
    this.rssiFade = new MeanReverting(0, 3, 20_000, rng);
    this.batteryV = rng.uniform(3.6, 4.15);
  }

  /** Air temperature in °C: mean + daily sine peaking mid-afternoon + weather + sensor noise. */
  temperatureC(hostMs: number): number {
    // Temperature and humidity are read on the same tick: one draw serves both.
    if (hostMs === this.tempAtMs) return this.tempC;
    this.tempAtMs = hostMs;
    this.tempC = this.airTemperature(hostMs);
    return this.tempC;
  }

  private airTemperature(hostMs: number): number {
    const p = this.profile;
    const localHours = ((((hostMs + p.utcOffsetHours * HOUR_MS) % DAY_MS) + DAY_MS) % DAY_MS) / HOUR_MS;
    const daily = p.dailyAmplitudeC * Math.sin((2 * Math.PI * (localHours - 9)) / 24); // peak at 15:00
    return p.meanTemperatureC + daily + this.weather.at(hostMs, this.rng) + 0.03 * this.rng.normal();
  }

  /** Power-on reset: the heap is whole again, the LED off. Weather and battery carry on. */
  reboot(): void {
    this.heapLeak = 0;
    this.led = false;
  }

  setLed(on: boolean): void {
    this.led = on;
  }

  get ledOn(): boolean {
    return this.led;
  }

  read(channel: number, hostMs: number, uptimeMs: number): number | boolean | null {
    const p = this.profile;
    const rng = this.rng;
    switch (channel) {
      case Channel.TEMPERATURE: {
        if (rng.chance(this.missingRate)) return null;
        return clampInt(Math.round(this.temperatureC(hostMs) * 100), -0x8000, 0x7fff);
      }
      case Channel.HUMIDITY: {
        if (rng.chance(this.missingRate)) return null;
        // Relative humidity falls as the air warms (same absolute moisture): about −3 %/°C.
        const dT = this.temperatureC(hostMs) - p.meanTemperatureC;
        const rh = p.meanHumidityPct - 3 * dT + this.humidityNoise.at(hostMs, rng) + 0.1 * rng.normal();
        return Math.round(Math.min(99.5, Math.max(3, rh)) * 100);
      }
      case Channel.PRESSURE: {
        // Barometric formula near sea level: about −0.12 hPa per metre.
        const hPa = 1013.25 - 0.12 * p.altitudeM + this.pressureWeather.at(hostMs, rng) + 0.03 * rng.normal();
        return Math.round(hPa * 100);
      }
      case Channel.BATTERY_V:
        return Math.round(this.battery(hostMs) * 1000);
      case Channel.RSSI_DBM:
        return clampInt(Math.round(p.meanRssiDbm + this.rssiFade.at(hostMs, rng) + 1.5 * rng.normal()), -110, -20);
      case Channel.HEAP_FREE: {
        // Slow fragmentation since boot plus allocation churn; ESP-IDF reports multiples of 4.
        this.heapLeak += rng.uniform(0, 24);
        const churn = Math.abs(rng.normal()) * 3000;
        return Math.max(8192, 4 * Math.round((p.heapBytes - this.heapLeak - churn) / 4));
      }
      case Channel.UPTIME_S:
        return Math.floor(uptimeMs / 1000);
      case Channel.LED:
        return this.led;
      default:
        return null;
    }
  }

  /** LiPo cell voltage: drains linearly with noise; charged back when low, or now and then when half-full. */
  private battery(hostMs: number): number {
    const rng = this.rng;
    if (this.batteryMs !== null && hostMs > this.batteryMs) {
      const hours = (hostMs - this.batteryMs) / HOUR_MS;
      if (this.charging) {
        this.batteryV += 0.45 * hours; // ≈ 1 h from empty to full at 0.5 C
        if (this.batteryV >= 4.18) {
          this.batteryV = 4.18;
          this.charging = false;
        }
      } else {
        this.batteryV -= this.profile.drainVPerHour * hours;
        // Someone plugs the board in: certainly below 3.45 V, sometimes earlier (hazard ≈ once per 4 h).
        if (this.batteryV < 3.45 || (this.batteryV < 3.95 && rng.chance(1 - Math.exp(-hours / 4)))) {
          this.charging = true;
        }
      }
    }
    this.batteryMs = hostMs;
    return Math.min(4.2, Math.max(3.0, this.batteryV + 0.002 * rng.normal()));
  }
}

function clampInt(v: number, min: number, max: number): number {
  return v < min ? min : Math.min(v, max);
}
