/** The terminal form of the log (server/log/pretty.ts) and HUB_LOG_FORMAT. */
import { describe, expect, it } from 'vitest';
import { configFrom } from '../../server/config/index.ts';
import { createLogger, resolveLogFormat } from '../../server/log/index.ts';
import { formatLogLine, prettyDestination } from '../../server/log/pretty.ts';

function prettyLogger(colors = false) {
  const out: string[] = [];
  const logger = createLogger('info', prettyDestination({ write: (s: string) => out.push(s) }, { colors, utc: true }));
  return { logger, out };
}

describe('pretty log lines', () => {
  it('prints time, level, component, message and the fields as key=value', () => {
    const { logger, out } = prettyLogger();
    logger.child({ component: 'gateway' }).warn(
      {
        endpoint: 'device',
        code: 'UNAUTHORIZED',
        remote: '10.0.0.7',
        reason: 'Missing, malformed or unknown credentials.',
      },
      'handshake refused: UNAUTHORIZED',
    );
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} WARN {2}\[gateway\] handshake refused: UNAUTHORIZED {2}endpoint=device code=UNAUTHORIZED remote=10\.0\.0\.7 reason="Missing, malformed or unknown credentials\."\n$/,
    );
  });

  it('keeps secrets redacted and shows objects as JSON', () => {
    const { logger, out } = prettyLogger();
    logger.info({ token: 'secret-token-value', info: { a: 1 } }, 'x');
    expect(out[0]).not.toContain('secret-token-value');
    expect(out[0]).toContain('token=[redacted]');
    expect(out[0]).toContain('info={"a":1}');
  });

  it('puts an error stack on the lines after, indented', () => {
    const { logger, out } = prettyLogger();
    const err = Object.assign(new Error('disk gone'), { code: 'ENOSPC' });
    logger.error({ err }, 'local log commit failed');
    const lines = (out[0] as string).split('\n');
    expect(lines[0]).toMatch(/ERROR local log commit failed$/);
    expect(lines[1]).toBe('    Error: disk gone [ENOSPC]');
    expect(lines[2]).toMatch(/^ {4}\s*at /);
  });

  it('colours the level only when asked', () => {
    const { logger, out } = prettyLogger(true);
    logger.info('hello');
    expect(out[0]).toContain('\x1b[32mINFO \x1b[0m');
    expect(formatLogLine('{"level":30,"time":0,"msg":"hello"}', { utc: true })).toBe('00:00:00.000 INFO  hello\n');
  });

  it('passes a line that is not JSON through', () => {
    expect(formatLogLine('plain text')).toBe('plain text\n');
  });
});

describe('HUB_LOG_FORMAT', () => {
  it('defaults to auto: pretty on a terminal, JSON otherwise; json and pretty force a form', () => {
    expect(configFrom().log.format).toBe('auto');
    expect(resolveLogFormat('auto', true)).toBe('pretty');
    expect(resolveLogFormat('auto', false)).toBe('json');
    expect(resolveLogFormat(configFrom({ HUB_LOG_FORMAT: 'json' }).log.format, true)).toBe('json');
    expect(resolveLogFormat(configFrom({ HUB_LOG_FORMAT: 'pretty' }).log.format, false)).toBe('pretty');
    expect(() => configFrom({ HUB_LOG_FORMAT: 'xml' as never })).toThrow(/HUB_LOG_FORMAT/);
  });
});
