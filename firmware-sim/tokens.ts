/**
 * Where the simulator's device tokens come from [PROTO-1.2]:
 *
 * 1. a tokens file of `id,token` lines, as `npm run hub -- devices add <id>... --tokens-file F` writes;
 * 2. `--provision`: the hub's admin API (`POST /api/admin/devices {id}` → `{id, token}`, authorised by
 *    `Authorization: Bearer <HUB_ADMIN_TOKEN>`), with new tokens appended to the tokens file when one
 *    is given so the next run reuses them.
 *
 * Tokens and the admin token are secrets: nothing here prints or logs them, and error messages name
 * only device ids, URLs and HTTP statuses.
 */
import { closeSync, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { isDeviceId } from '../server/codec/index.ts';

/** Reads `id,token` lines; blank lines and `#` comments are skipped, a later line for an id wins. */
export function parseTokens(text: string, source = 'tokens file'): Map<string, string> {
  const tokens = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    const comma = line.indexOf(',');
    const id = comma < 0 ? '' : line.slice(0, comma).trim();
    const token = comma < 0 ? '' : line.slice(comma + 1).trim();
    if (!isDeviceId(id) || token === '') {
      throw new Error(`${source} line ${i + 1}: expected "id,token"`);
    }
    tokens.set(id, token);
  }
  return tokens;
}

export function readTokensFile(path: string): Map<string, string> {
  if (!existsSync(path)) return new Map();
  return parseTokens(readFileSync(path, 'utf8'), path);
}

/** Appends `id,token` lines (the file is created with mode 0600, like the hub CLI's). */
export function appendTokens(path: string, entries: Iterable<[id: string, token: string]>): void {
  const lines = [...entries].map(([id, token]) => `${id},${token}\n`).join('');
  if (lines === '') return;
  const fd = openSync(path, 'a', 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, lines);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The admin API base URL for a device endpoint: ws→http, wss→https, same host and port. */
export function adminUrlFor(deviceUrl: string): string {
  const u = new URL(deviceUrl);
  const scheme = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  return `${scheme}//${u.host}`;
}

export class ProvisionError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
    this.name = 'ProvisionError';
  }
}

export interface ProvisionOptions {
  adminUrl: string;
  adminToken: string;
  /** Requests in flight at once (default 8: registering is a disk write on the hub). */
  concurrency?: number;
  fetch?: typeof fetch;
}

/**
 * Registers each id through the admin API and returns the issued tokens. Stops at the first failure
 * (a taken id is 409: its token cannot be recovered, only rotated) and reports which ids were done.
 */
export async function provisionDevices(
  ids: readonly string[],
  options: ProvisionOptions,
): Promise<{ issued: Map<string, string>; error: ProvisionError | null }> {
  const doFetch = options.fetch ?? fetch;
  const issued = new Map<string, string>();
  const endpoint = new URL('/api/admin/devices', options.adminUrl).toString();
  let error: ProvisionError | null = null;
  let next = 0;
  const worker = async () => {
    while (error === null && next < ids.length) {
      const id = ids[next++] as string;
      let res: Response;
      try {
        res = await doFetch(endpoint, {
          method: 'POST',
          headers: { Authorization: `Bearer ${options.adminToken}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ id }),
        });
      } catch (err) {
        error ??= new ProvisionError(`cannot reach the admin API at ${endpoint}: ${(err as Error).message}`, null);
        return;
      }
      const body = (await res.json().catch(() => null)) as {
        id?: unknown;
        token?: unknown;
        error?: { code?: unknown; message?: unknown };
      } | null;
      if (!res.ok || typeof body?.token !== 'string') {
        const code = typeof body?.error?.code === 'string' ? ` ${body.error.code}` : '';
        const hint =
          res.status === 401
            ? ' (the admin token was refused)'
            : res.status === 404
              ? ' (is the admin API enabled? the hub needs HUB_ADMIN_TOKEN)'
              : res.status === 409
                ? ` (${id} already exists: put its token in the tokens file, rotate it with \`npm run hub -- devices rotate ${id}\`, or use another --id-prefix)`
                : '';
        error ??= new ProvisionError(`registering ${id} failed: HTTP ${res.status}${code}${hint}`, res.status);
        return;
      }
      issued.set(id, body.token);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 8, ids.length) }, worker));
  return { issued, error };
}
