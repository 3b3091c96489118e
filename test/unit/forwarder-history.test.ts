/**
 * The InfluxQL history and downsample queries' text and their validation. The queries themselves run
 * against the real InfluxDB in test/integration/forwarder-influx.test.ts and dashboard-history.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
import { downsampleStatements } from '../../server/storage/influx/downsample.ts';
import { historyStatement, quoteString } from '../../server/storage/influx/history.ts';

const base = { deviceId: 'dev-1', fromMs: 1_700_000_000_000, toMs: 1_700_000_060_000, limit: 100 };

describe('InfluxQL history statement', () => {
  it('selects both fields and the tags, filtered by device, channel and time, oldest first', () => {
    expect(historyStatement({ ...base, channel: 'temp' })).toBe(
      `SELECT "value", "state", "channel", "unit" FROM "telemetry" WHERE "device" = 'dev-1' AND "channel" = 'temp' ` +
        'AND time >= 1700000000000ms AND time <= 1700000060000ms ORDER BY time ASC LIMIT 100',
    );
    expect(historyStatement(base)).not.toContain('"channel" =');
  });

  it.each([
    [{ ...base, deviceId: "x' OR 1=1 --" }],
    [{ ...base, deviceId: '' }],
    [{ ...base, channel: 'Temp' }],
    [{ ...base, channel: "t'" }],
    [{ ...base, fromMs: 2, toMs: 1 }],
    [{ ...base, fromMs: 1.5 }],
    [{ ...base, limit: 0 }],
    [{ ...base, limit: 100_001 }],
  ])('refuses bad parameters with BAD_REQUEST: %j', (q) => {
    expect(() => historyStatement(q)).toThrow(HubError);
    try {
      historyStatement(q);
    } catch (err) {
      expect((err as HubError).code).toBe('BAD_REQUEST');
    }
  });

  it('quotes string literals', () => {
    expect(quoteString("it's")).toBe("'it\\'s'");
    expect(quoteString('a\\b')).toBe("'a\\\\b'");
  });
});

describe('InfluxQL downsample statements', () => {
  const range = { deviceId: 'dev-1', fromMs: 1_700_000_000_000, toMs: 1_700_000_060_000, buckets: 60 };

  it('filter by device, channel and time like the history, grouped in buckets aligned on from', () => {
    const [numeric, bools, trues] = downsampleStatements({ ...range, channel: 'temp' }, 1000);
    const where = `WHERE "device" = 'dev-1' AND "channel" = 'temp' AND time >= 1700000000000ms AND time <= 1700000060000ms`;
    const group = 'GROUP BY time(1000ms, 0ms), "channel", "unit" fill(none)';
    expect(numeric).toBe(
      `SELECT min("value"), mean("value"), max("value"), count("value") FROM "telemetry" ${where} ${group}`,
    );
    expect(bools).toBe(`SELECT count("state") FROM "telemetry" ${where} ${group}`);
    expect(trues).toBe(`SELECT count("state") FROM "telemetry" ${where} AND "state" = true ${group}`);
  });

  it.each([
    [{ ...range, deviceId: "x' OR 1=1 --" }],
    [{ ...range, channel: "t'" }],
    [{ ...range, fromMs: 2, toMs: 1 }],
    [{ ...range, toMs: Number.NaN }],
  ])('refuses bad parameters with BAD_REQUEST: %j', (q) => {
    expect(() => downsampleStatements(q, 1000)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });
});
