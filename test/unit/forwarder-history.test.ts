/**
 * The InfluxQL history query's text and its validation. The query itself runs against the real
 * InfluxDB in test/integration/forwarder-influx.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { HubError } from '../../server/errors.ts';
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
