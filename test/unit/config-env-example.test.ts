import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_SCHEMA, loadConfig } from '../../server/config/index.ts';

const whole = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
/** The hub's part; the section after this marker holds variables only docker-compose.yml reads. */
const COMPOSE_MARKER = '# --- docker compose only';
const text = whole.slice(0, whole.indexOf(COMPOSE_MARKER) >>> 0);

/** `NAME=value` lines (commented-out `# NAME=` lines count too, so optional settings may be shown that way). */
function entries(): [name: string, value: string][] {
  const found: [string, string][] = [];
  for (const line of text.split('\n')) {
    const m = /^#?\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) found.push([m[1] as string, m[2] as string]);
  }
  return found;
}

describe('.env.example', () => {
  it('keeps the compose-only variables in their own section, after the hub settings', () => {
    expect(whole.indexOf(COMPOSE_MARKER)).toBeGreaterThan(0);
    const composeOnly = whole.slice(whole.indexOf(COMPOSE_MARKER));
    const names = [...composeOnly.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1] as string);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(Object.keys(ENV_SCHEMA), name).not.toContain(name);
  });

  it('lists exactly the variables of ENV_SCHEMA', () => {
    const names = entries().map(([name]) => name);
    const schema = Object.keys(ENV_SCHEMA);
    expect(
      names.filter((n) => !schema.includes(n)),
      'in .env.example but not in ENV_SCHEMA',
    ).toEqual([]);
    expect(
      schema.filter((n) => !names.includes(n)),
      'in ENV_SCHEMA but not in .env.example',
    ).toEqual([]);
    expect(new Set(names).size, 'listed twice').toBe(names.length);
  });

  it('gives every variable a comment', () => {
    const lines = text.split('\n');
    for (const [i, line] of lines.entries()) {
      if (!/^[A-Z][A-Z0-9_]*=/.test(line)) continue;
      // The nearest non-variable line above must be a comment (a group of related variables may share one).
      let j = i - 1;
      while (j >= 0 && /^[A-Z][A-Z0-9_]*=/.test(lines[j] as string)) j--;
      expect(lines[j]?.startsWith('#'), `${line} has no comment above it`).toBe(true);
    }
  });

  it('loads as is, and holds no secret values', () => {
    const env = Object.fromEntries(entries());
    expect(() => loadConfig(env)).not.toThrow();
    for (const name of ['HUB_ADMIN_TOKEN', 'HUB_DASHBOARD_PASSWORD', 'INFLUX_TOKEN', 'MQTT_PASSWORD']) {
      expect(env[name], name).toBe('');
    }
  });

  it('shows the schema defaults', () => {
    const env = Object.fromEntries(entries());
    const fromExample = loadConfig(env);
    const fromNothing = loadConfig({});
    expect(fromExample).toEqual(fromNothing);
  });
});
