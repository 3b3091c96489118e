// Alert configuration: the rules file (YAML and JSON) is checked at start with the rest of the
// configuration; every problem is listed with its rule and field, and the hub does not start.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../server/config/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'alerts-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('alert configuration', () => {
  it('defaults: the offline rule after 300 s, no threshold rules, no webhook', () => {
    const { alerts } = loadConfig({});
    expect(alerts).toEqual({
      offline: { name: 'offline', afterSec: 300, severity: 'warning' },
      rules: [],
      webhook: null,
    });
    expect(loadConfig({ ALERT_OFFLINE_AFTER_SEC: '0' }).alerts.offline).toBeNull();
    expect(loadConfig({ ALERT_OFFLINE_AFTER_SEC: '60', ALERT_OFFLINE_SEVERITY: 'critical' }).alerts.offline).toEqual({
      name: 'offline',
      afterSec: 60,
      severity: 'critical',
    });
    expect(problems({ ALERT_OFFLINE_SEVERITY: 'fatal' })[0]).toMatch(/^ALERT_OFFLINE_SEVERITY: /);
  });

  it('reads YAML rules with their defaults', () => {
    const path = file(
      'rules.yaml',
      [
        'rules:',
        '  - name: greenhouse-hot',
        '    device: greenhouse-*',
        '    channel: temperature',
        "    op: '>'",
        '    value: 30',
        '    clear: 28',
        '    forSec: 60',
        '    severity: critical',
        '  - name: door-open',
        '    channel: door',
        "    op: '=='",
        '    value: true',
      ].join('\n'),
    );
    expect(loadConfig({ ALERT_RULES_FILE: path }).alerts.rules).toEqual([
      {
        name: 'greenhouse-hot',
        device: 'greenhouse-*',
        channel: 'temperature',
        op: '>',
        value: 30,
        clear: 28,
        forSec: 60,
        severity: 'critical',
      },
      { name: 'door-open', device: '*', channel: 'door', op: '==', value: 1, clear: 1, forSec: 0, severity: 'warning' },
    ]);
  });

  it('reads JSON rules', () => {
    const path = file(
      'rules.json',
      JSON.stringify({ rules: [{ name: 'low', channel: 'voltage', op: '<', value: 3.3 }] }),
    );
    expect(loadConfig({ ALERT_RULES_FILE: path }).alerts.rules.map((r) => r.name)).toEqual(['low']);
  });

  it('lists every problem of a bad rules file, each with its rule and field, beside the other settings', () => {
    const path = file(
      'bad.yaml',
      [
        'rules:',
        '  - name: a',
        '    channel: Temperature', // not a channel key
        "    op: '=>'", // no such op
        '    value: 30',
        '  - name: a', // duplicate
        '    channel: t',
        "    op: '>'",
        '    value: 30',
        '    clear: 35', // clear above value for >
        '  - name: offline', // reserved
        '    channel: t',
        "    op: '<'",
        '    value: true', // bool with an ordering op
        '  - name: b',
        '    channel: t',
        "    op: '=='",
        '    value: 1',
        '    clear: 0', // clear without an order
        '    unknown: 1', // unknown field
      ].join('\n'),
    );
    const found = problems({ ALERT_RULES_FILE: path, HUB_PORT: 'x' });
    expect(found.some((p) => p.startsWith('HUB_PORT'))).toBe(true);
    const mine = found.filter((p) => p.startsWith(`ALERT_RULES_FILE ${path}: `));
    // Schema problems come first (the file is not checked further until its shape is right).
    expect(mine.map((p) => p.slice(`ALERT_RULES_FILE ${path}: `.length).split(':')[0])).toEqual([
      'rules[0] (a).channel',
      'rules[0] (a).op',
      'rules[3] (b)',
    ]);
    expect(mine[2]).toContain('unknown');

    const fixed = file('bad2.yaml', readFixed());
    const second = problems({ ALERT_RULES_FILE: fixed });
    expect(second.map((p) => p.slice(`ALERT_RULES_FILE ${fixed}: `.length))).toEqual([
      'rules[1] (a).name: used by an earlier rule (names must be unique)',
      'rules[1] (a).clear: must be at most value (30) for >',
      'rules[2] (offline).name: "offline" is the built-in rule (ALERT_OFFLINE_AFTER_SEC)',
      'rules[2] (offline).value: true/false compares with == or != only, not <',
      'rules[3] (b).clear: only with > >= < <= (a hysteresis band needs an order), not ==',
    ]);
  });

  it('refuses a missing file, bad YAML, a wrong top level', () => {
    expect(problems({ ALERT_RULES_FILE: join(dir, 'nope.yaml') })[0]).toMatch(/ENOENT/);
    expect(problems({ ALERT_RULES_FILE: file('broken.yaml', 'rules: [\n') })[0]).toMatch(/not valid YAML or JSON/);
    expect(problems({ ALERT_RULES_FILE: file('list.yaml', '- name: a\n') })[0]).toMatch(/file: /);
  });

  it('checks the webhook settings', () => {
    expect(problems({ ALERT_WEBHOOK_URL: 'ftp://example.test/x' })).toContain(
      'ALERT_WEBHOOK_URL: must start with http:// or https://',
    );
    expect(problems({ ALERT_WEBHOOK_URL: 'https://user:pw@hooks.example.test/x' })).toContain(
      'ALERT_WEBHOOK_URL: must not hold user:password@ (use ALERT_WEBHOOK_SECRET to sign deliveries)',
    );
    expect(problems({ ALERT_WEBHOOK_SECRET: 'a-long-enough-secret' })).toContain(
      'ALERT_WEBHOOK_SECRET: needs ALERT_WEBHOOK_URL',
    );
    expect(problems({ ALERT_WEBHOOK_URL: 'http://127.0.0.1:9/x', ALERT_WEBHOOK_SECRET: 'short' })[0]).toMatch(
      /^ALERT_WEBHOOK_SECRET: must be at least 16/,
    );
    const { webhook } = loadConfig({
      ALERT_WEBHOOK_URL: 'https://hooks.example.test/abc',
      ALERT_WEBHOOK_SECRET: 'a-long-enough-secret',
      ALERT_WEBHOOK_TIMEOUT_MS: '2000',
      ALERT_WEBHOOK_MAX_ATTEMPTS: '3',
      ALERT_WEBHOOK_QUEUE_MAX: '10',
    }).alerts;
    expect(webhook).toEqual({
      url: 'https://hooks.example.test/abc',
      secret: 'a-long-enough-secret',
      timeoutMs: 2000,
      maxAttempts: 3,
      queueMax: 10,
    });
  });
});

/** The bad file with its schema problems fixed: what remains are the cross-rule checks. */
function readFixed(): string {
  return [
    'rules:',
    '  - name: a',
    '    channel: temperature',
    "    op: '>'",
    '    value: 30',
    '  - name: a',
    '    channel: t',
    "    op: '>'",
    '    value: 30',
    '    clear: 35',
    '  - name: offline',
    '    channel: t',
    "    op: '<'",
    '    value: true',
    '  - name: b',
    '    channel: t',
    "    op: '=='",
    '    value: 1',
    '    clear: 0',
  ].join('\n');
}
