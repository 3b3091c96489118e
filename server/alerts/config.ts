/**
 * Alert configuration: the `ALERT_*` settings and the rules file (`ALERT_RULES_FILE`, YAML or JSON),
 * validated at start together with the rest of the configuration (server/config/index.ts): every
 * problem of the file is listed, each with its rule and field, and the hub does not start.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { AlertSeverity, AlertsConfig, ThresholdRule } from './types.ts';

/** Rules one file may hold. */
export const MAX_RULES = 1000;

const CHANNEL_KEY = /^[a-z][a-z0-9_]{0,31}$/;
/** Device ids [PROTO-2.8] plus the glob characters `*` and `?`. */
const DEVICE_GLOB = /^[A-Za-z0-9._*?-]{1,64}$/;
const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const severity = z.enum(['info', 'warning', 'critical']);

const ruleSchema = z.strictObject({
  name: z.string().regex(RULE_NAME, 'must be 1-63 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)'),
  device: z
    .string()
    .regex(DEVICE_GLOB, 'must be a device id or a glob over ids (* and ?), 1-64 characters')
    .default('*'),
  channel: z.string().regex(CHANNEL_KEY, 'must be a channel key (a-z, 0-9, _; starting with a letter)'),
  op: z.enum(['>', '>=', '<', '<=', '==', '!=']),
  value: z.union([z.number().finite(), z.boolean()], 'must be a number, or true/false with == and !='),
  clear: z.number().finite().optional(),
  forSec: z
    .number()
    .min(0)
    .max(7 * 86_400)
    .default(0),
  severity: severity.default('warning'),
});

const fileSchema = z.strictObject({ rules: z.array(ruleSchema).max(MAX_RULES) });

type RawRule = z.output<typeof ruleSchema>;

/** The `ALERT_*` values after the environment schema (server/config/index.ts `ENV_SCHEMA`). */
export interface AlertEnv {
  ALERT_OFFLINE_AFTER_SEC: number;
  ALERT_OFFLINE_SEVERITY: AlertSeverity;
  ALERT_WEBHOOK_URL?: string | undefined;
  ALERT_WEBHOOK_SECRET?: string | undefined;
  ALERT_WEBHOOK_TIMEOUT_MS: number;
  ALERT_WEBHOOK_MAX_ATTEMPTS: number;
  ALERT_WEBHOOK_QUEUE_MAX: number;
}

/** The alert settings' schemas, spread into `ENV_SCHEMA` (`.env.example` lists each; a test checks). */
export const ALERT_ENV_SCHEMA = {
  ALERT_OFFLINE_AFTER_SEC: z.coerce
    .number()
    .int()
    .min(0)
    .max(30 * 86_400)
    .default(300),
  ALERT_OFFLINE_SEVERITY: severity.default('warning'),
  ALERT_RULES_FILE: z.string().min(1).optional(),
  ALERT_WEBHOOK_URL: z.url().optional(),
  ALERT_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters (use: openssl rand -hex 32)').optional(),
  ALERT_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5000),
  ALERT_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(8),
  ALERT_WEBHOOK_QUEUE_MAX: z.coerce.number().int().min(1).max(100_000).default(1000),
} as const;

/**
 * Reads and checks the rules file named by `raw.ALERT_RULES_FILE` (unset: no threshold rules) and the
 * cross-field alert settings; pushes every problem found onto `problems`. Returns the rules (empty
 * when there are problems).
 */
export function loadAlertRules(raw: Record<string, unknown>, problems: string[]): ThresholdRule[] {
  const url = raw.ALERT_WEBHOOK_URL;
  if (url !== undefined && !/^https?:\/\//.test(String(url))) {
    problems.push('ALERT_WEBHOOK_URL: must start with http:// or https://');
  } else if (url !== undefined && /^https?:\/\/[^/?#]*@/.test(String(url))) {
    // fetch refuses URLs with credentials: every delivery would fail. The secret signs instead.
    problems.push('ALERT_WEBHOOK_URL: must not hold user:password@ (use ALERT_WEBHOOK_SECRET to sign deliveries)');
  }
  if (url === undefined && raw.ALERT_WEBHOOK_SECRET !== undefined) {
    problems.push('ALERT_WEBHOOK_SECRET: needs ALERT_WEBHOOK_URL');
  }
  const file = raw.ALERT_RULES_FILE;
  if (file === undefined) return [];
  const where = `ALERT_RULES_FILE ${String(file)}`;
  let text: string;
  try {
    text = readFileSync(String(file), 'utf8');
  } catch (err) {
    problems.push(`${where}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}: ${(err as Error).message}`);
    return [];
  }
  const found = parseRules(text);
  for (const p of found.problems) problems.push(`${where}: ${p}`);
  return found.problems.length > 0 ? [] : found.rules;
}

/** Parses a rules document (YAML, hence JSON too). Never throws: every problem is listed. */
export function parseRules(text: string): { rules: ThresholdRule[]; problems: string[] } {
  let doc: unknown;
  try {
    // One document, no custom tags; YAML 1.2 core schema (JSON is valid YAML).
    doc = parseYaml(text, { prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    return { rules: [], problems: [`not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`] };
  }
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) {
    return { rules: [], problems: parsed.error.issues.map((i) => `${describePath(doc, i.path)}: ${i.message}`) };
  }
  const problems: string[] = [];
  const seen = new Set<string>();
  const rules: ThresholdRule[] = [];
  parsed.data.rules.forEach((r, i) => {
    const at = `rules[${i}] (${r.name})`;
    if (r.name === 'offline') problems.push(`${at}.name: "offline" is the built-in rule (ALERT_OFFLINE_AFTER_SEC)`);
    if (seen.has(r.name)) problems.push(`${at}.name: used by an earlier rule (names must be unique)`);
    seen.add(r.name);
    problems.push(...checkRule(r).map((p) => `${at}.${p}`));
    rules.push(compileRule(r));
  });
  return problems.length > 0 ? { rules: [], problems } : { rules, problems };
}

function checkRule(r: RawRule): string[] {
  const out: string[] = [];
  const ordering = r.op !== '==' && r.op !== '!=';
  if (typeof r.value === 'boolean' && ordering) out.push(`value: true/false compares with == or != only, not ${r.op}`);
  if (r.clear !== undefined) {
    if (!ordering) out.push(`clear: only with > >= < <= (a hysteresis band needs an order), not ${r.op}`);
    else if (typeof r.value === 'number') {
      const above = r.op === '>' || r.op === '>=';
      if (above && r.clear > r.value) out.push(`clear: must be at most value (${r.value}) for ${r.op}`);
      if (!above && r.clear < r.value) out.push(`clear: must be at least value (${r.value}) for ${r.op}`);
    }
  }
  return out;
}

function compileRule(r: RawRule): ThresholdRule {
  const value = typeof r.value === 'boolean' ? (r.value ? 1 : 0) : r.value;
  return {
    name: r.name,
    device: r.device,
    channel: r.channel,
    op: r.op,
    value,
    clear: r.clear ?? value,
    forSec: r.forSec,
    severity: r.severity,
  };
}

/** `rules[2] (temp-high).op` rather than `rules.2.op`: the rule's name when the file gives one. */
function describePath(doc: unknown, path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'file';
  const [first, index, ...rest] = path;
  if (first !== 'rules' || typeof index !== 'number') return path.map(String).join('.');
  const raw = (doc as { rules?: unknown[] }).rules?.[index];
  const name = raw && typeof raw === 'object' && typeof (raw as { name?: unknown }).name === 'string';
  const label = `rules[${index}]${name ? ` (${(raw as { name: string }).name})` : ''}`;
  return rest.length > 0 ? `${label}.${rest.map(String).join('.')}` : label;
}

/** The alert part of the hub's configuration, from the parsed environment and the loaded rules. */
export function alertsConfigFrom(e: AlertEnv, rules: ThresholdRule[]): AlertsConfig {
  return {
    offline:
      e.ALERT_OFFLINE_AFTER_SEC > 0
        ? { name: 'offline', afterSec: e.ALERT_OFFLINE_AFTER_SEC, severity: e.ALERT_OFFLINE_SEVERITY }
        : null,
    rules,
    webhook: e.ALERT_WEBHOOK_URL
      ? {
          url: e.ALERT_WEBHOOK_URL,
          secret: e.ALERT_WEBHOOK_SECRET ?? null,
          timeoutMs: e.ALERT_WEBHOOK_TIMEOUT_MS,
          maxAttempts: e.ALERT_WEBHOOK_MAX_ATTEMPTS,
          queueMax: e.ALERT_WEBHOOK_QUEUE_MAX,
        }
      : null,
  };
}

/** Device-id glob → RegExp (`*` any run, `?` one character; the id alphabet has no other specials but `.`). */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.*?]/g, (c) => (c === '*' ? '.*' : c === '?' ? '.' : '\\.'));
  return new RegExp(`^${body}$`);
}
