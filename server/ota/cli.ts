/**
 * `npm run hub -- ota <keygen|sign|upload|list|delete>` (docs/ota.md): the operator's signing key and
 * the hub's OTA image store, on the hub's data directory (a running hub sees a new image at once: it
 * reads the directory per request). `keygen` and `sign` need no hub: run them where the private key lives.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CliIo,
  EXIT,
  failed,
  HUB_CLI_OPTIONS,
  loadCliConfig,
  type ParsedCli,
  parseCli,
  printJson,
} from '../cli-args.ts';
import { loadOtaPublicKey } from './index.ts';
import { generateSigningKey, publicKeyHeader, signImage } from './signing.ts';
import { OTA_TARGETS, type OtaImage, openOtaStore } from './store.ts';

export const OTA_USAGE = `Usage: npm run hub -- ota <command> [options]

Commands:
  keygen --out <dir>      write ota-signing.pem (private, mode 0600), ota-signing.pub.pem (set
                          OTA_PUBLIC_KEY_FILE to it) and ota_public_key.h (for the firmware build)
  sign --key <pem> <image.bin>
                          write <image.bin>.sig (base64 DER ECDSA P-256 over the image)
  upload <image.bin> --version <v> --target <t> [--sig <file>]
                          verify and store a signed image (the signature from --sig, default <image.bin>.sig)
  list                    list the stored images
  delete <id>             delete an image
  rollout start --image <id> [--devices a,b | --group <glob>] [--waves 1,10%,100%] [--max-failures 10%]
                          start a campaign on the running hub (all boards unless --devices/--group)
  rollout status [<campaign>]
                          campaigns with board counts, or one campaign with each board's state
  rollout pause|resume|abort <campaign>

Options:
  --data-dir <dir>        the hub's data directory (default: HUB_DATA_DIR, else .data)
  --hub <url>             rollout: the running hub (default: HUB_PUBLIC_URL, else http://127.0.0.1:HUB_PORT);
                          the admin token is read from HUB_ADMIN_TOKEN
  --json                  machine-readable output on stdout
  -h, --help              show this help

Targets: ${OTA_TARGETS.join(', ')}.
`;

export async function runOtaCli(args: string[], io: CliIo): Promise<number> {
  const cli = parseCli(args, io, { text: OTA_USAGE }, OPTIONS);
  if (typeof cli === 'number') return cli;
  const { values, positionals, usage } = cli;
  const json = values.json === true;
  const print = (v: unknown) => printJson(io, v);
  const [command, ...rest] = positionals;
  try {
    if (command === 'keygen') {
      if (!values.out || rest.length > 0) return usage('keygen needs --out <dir>');
      const keys = generateSigningKey();
      mkdirSync(values.out, { recursive: true, mode: 0o700 });
      const priv = join(values.out, 'ota-signing.pem');
      writeFileSync(priv, keys.privatePem, { mode: 0o600, flag: 'wx' });
      chmodSync(priv, 0o600);
      writeFileSync(join(values.out, 'ota-signing.pub.pem'), keys.publicPem);
      writeFileSync(join(values.out, 'ota_public_key.h'), publicKeyHeader(keys.publicPem));
      if (json) print({ privateKey: priv, publicKey: join(values.out, 'ota-signing.pub.pem') });
      else
        io.stdout.write(
          `Wrote ${priv} (keep it off the hub), ${join(values.out, 'ota-signing.pub.pem')} (OTA_PUBLIC_KEY_FILE) and ${join(values.out, 'ota_public_key.h')}.\n`,
        );
      return EXIT.OK;
    }
    if (command === 'sign') {
      if (!values.key || rest.length !== 1) return usage('sign needs --key <pem> and <image.bin>');
      const file = rest[0] as string;
      const sig = signImage(readFileSync(file), readFileSync(values.key, 'utf8'));
      writeFileSync(`${file}.sig`, `${sig}\n`);
      if (json) print({ signature: sig, file: `${file}.sig` });
      else io.stdout.write(`Wrote ${file}.sig\n`);
      return EXIT.OK;
    }
    if (command === 'rollout') return await rollout(rest, values, io, json, usage);
    if (command !== 'upload' && command !== 'list' && command !== 'delete') {
      return usage(command === undefined ? 'missing command' : `unknown command "${command}"`);
    }
    if (command === 'upload' && (rest.length !== 1 || !values.version || !values.target)) {
      return usage('upload needs <image.bin>, --version and --target');
    }
    if (command === 'delete' && rest.length !== 1) return usage('delete needs one image id');
    if (command === 'list' && rest.length > 0) return usage('list takes no arguments');
    const config = loadCliConfig(io, [
      'HUB_CONFIG_FILE',
      'HUB_DATA_DIR',
      'OTA_PUBLIC_KEY_FILE',
      'OTA_MAX_IMAGES',
      'OTA_MAX_IMAGE_BYTES',
    ]);
    if (typeof config === 'number') return config;
    const store = openOtaStore({
      dataDir: values['data-dir'] ?? config.storage.dataDir,
      maxImages: config.ota.maxImages,
      maxImageBytes: config.ota.maxImageBytes,
      publicKey: command === 'upload' ? loadOtaPublicKey(config) : null,
    });
    if (command === 'list') {
      const images = await store.list();
      if (json) print({ images });
      else io.stdout.write(images.length === 0 ? 'No OTA images.\n' : `${images.map(line).join('\n')}\n`);
      return EXIT.OK;
    }
    if (command === 'delete') {
      const image = await store.remove(rest[0] as string);
      if (json) print(image);
      else io.stdout.write(`Deleted ${line(image)}\n`);
      return EXIT.OK;
    }
    const file = rest[0] as string;
    if (statSync(file).size > config.ota.maxImageBytes) {
      return failed(io, json, new Error(`${file} is larger than OTA_MAX_IMAGE_BYTES (${config.ota.maxImageBytes})`));
    }
    const sigFile = values.sig ?? `${file}.sig`;
    let signature: string | undefined;
    try {
      signature = readFileSync(sigFile, 'utf8').trim();
    } catch {
      signature = undefined;
    }
    const image = await store.add(
      { version: values.version as string, target: values.target as string, signature },
      readFileSync(file),
    );
    if (json) print(image);
    else io.stdout.write(`Stored ${line(image)}\n`);
    return EXIT.OK;
  } catch (err) {
    return failed(io, json, err);
  }
}

function line(i: OtaImage): string {
  return `${i.id} ${i.version} · ${i.target} · ${i.size} bytes · sha256 ${i.sha256.slice(0, 12)}… · ${i.uploadedAt}`;
}

const OPTIONS = {
  ...HUB_CLI_OPTIONS,
  out: { type: 'string' },
  key: { type: 'string' },
  sig: { type: 'string' },
  hub: { type: 'string' },
  image: { type: 'string' },
  devices: { type: 'string' },
  group: { type: 'string' },
  waves: { type: 'string' },
  'max-failures': { type: 'string' },
  version: { type: 'string' },
  target: { type: 'string' },
} as const;

type Values = ParsedCli<typeof OPTIONS>['values'];

/** `ota rollout ...`: campaigns run in the hub, so these go through its admin API. */
async function rollout(
  rest: string[],
  values: Values,
  io: CliIo,
  json: boolean,
  usage: (message: string) => number,
): Promise<number> {
  const [sub, id, ...extra] = rest;
  if (extra.length > 0) return usage('too many arguments');
  const token = io.env.HUB_ADMIN_TOKEN;
  if (!token) return usage("rollout needs HUB_ADMIN_TOKEN (the running hub's admin token)");
  const base = (values.hub ?? io.env.HUB_PUBLIC_URL ?? `http://127.0.0.1:${io.env.HUB_PORT ?? '8080'}`).replace(
    /\/+$/,
    '',
  );
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const data = (await res.json()) as Record<string, unknown>;
    if (!res.ok) {
      const e = data.error as { code: string; message: string };
      throw Object.assign(new Error(e.message), { code: e.code });
    }
    return data;
  };
  const show = (c: Record<string, unknown>) =>
    `${c.id} ${c.state}${c.reason ? ` (${c.reason})` : ''} · image ${c.imageId} ${c.version} · wave ${(c.wave as number) + 1}/${(c.waveEnds as number[]).length} · ${Object.entries(
      c.counts as Record<string, number>,
    )
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${s} ${n}`)
      .join(', ')}`;
  try {
    let out: Record<string, unknown>;
    if (sub === 'start') {
      if (!values.image || id !== undefined) return usage('rollout start needs --image <id>');
      out = await call('POST', '/api/ota/campaigns', {
        imageId: values.image,
        ...(values.devices ? { devices: values.devices.split(',').map((d) => d.trim()) } : {}),
        ...(values.group ? { group: values.group } : {}),
        ...(values.waves ? { waves: values.waves } : {}),
        ...(values['max-failures'] ? { maxFailures: values['max-failures'] } : {}),
      });
    } else if (sub === 'status') {
      out = await call('GET', id ? `/api/ota/campaigns/${id}` : '/api/ota/campaigns');
      if (!json && !id) {
        const list = out.campaigns as Record<string, unknown>[];
        io.stdout.write(list.length === 0 ? 'No OTA campaigns.\n' : `${list.map(show).join('\n')}\n`);
        return EXIT.OK;
      }
      if (!json) {
        const boards = Object.entries(out.boards as Record<string, { state: string; detail?: string }>);
        io.stdout.write(
          `${show(out)}\n${boards.map(([d, b]) => `  ${d} ${b.state}${b.detail ? ` (${b.detail})` : ''}`).join('\n')}\n`,
        );
        return EXIT.OK;
      }
    } else if (sub === 'pause' || sub === 'resume' || sub === 'abort') {
      if (!id) return usage(`rollout ${sub} needs a campaign id`);
      out = await call('POST', `/api/ota/campaigns/${id}/actions`, { action: sub });
    } else {
      return usage(sub === undefined ? 'missing rollout command' : `unknown rollout command "${sub}"`);
    }
    if (json) printJson(io, out);
    else io.stdout.write(`${show(out)}\n`);
    return EXIT.OK;
  } catch (err) {
    return failed(io, json, err);
  }
}
