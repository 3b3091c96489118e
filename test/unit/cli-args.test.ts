// The preamble every `npm run hub -- <group>` command shares (server/cli-args.ts): what an operator sees
// for --help, an unknown flag, a flag without its value and a bad setting, and the exit codes (0, 2).
import { describe, expect, it } from 'vitest';
import { cliConfig, EXIT, parseCli } from '../../server/cli-args.ts';
import { ConfigError } from '../../server/config/index.ts';
import { FIRMWARE_USAGE, runFirmwareCli } from '../../server/enroll/firmware-cli.ts';
import { OTA_USAGE, runOtaCli } from '../../server/ota/cli.ts';
import { DEVICES_USAGE, runDevicesCli } from '../../server/registry/devices-cli.ts';
import { DEAD_LETTERS_USAGE, runDeadLettersCli } from '../../server/storage/dead-letters-cli.ts';

function buffers(env: Record<string, string | undefined> = {}) {
  const out = { stdout: '', stderr: '' };
  const io = {
    env,
    stdout: { write: (t: string) => (out.stdout += t) },
    stderr: { write: (t: string) => (out.stderr += t) },
  };
  return { io, out };
}

const GROUPS = [
  { name: 'devices', run: runDevicesCli, usage: DEVICES_USAGE },
  { name: 'dead-letters', run: runDeadLettersCli, usage: DEAD_LETTERS_USAGE },
  { name: 'firmware', run: runFirmwareCli, usage: FIRMWARE_USAGE },
  { name: 'ota', run: runOtaCli, usage: OTA_USAGE },
];

describe('every command group', () => {
  for (const g of GROUPS) {
    it(`${g.name}: --help and -h print the usage on stdout (exit 0)`, async () => {
      for (const flag of ['--help', '-h']) {
        const { io, out } = buffers();
        expect(await g.run([flag], io)).toBe(EXIT.OK);
        expect(out).toEqual({ stdout: g.usage, stderr: '' });
      }
    });

    it(`${g.name}: an unknown flag, a flag without its value or no command is a usage error (exit 2)`, async () => {
      const cases: [string[], string][] = [
        [['list', '--bogus'], "error: Unknown option '--bogus'"],
        [['list', '--data-dir'], "error: Option '--data-dir <value>' argument missing"],
        [[], 'error: missing command'],
      ];
      for (const [args, first] of cases) {
        const { io, out } = buffers();
        expect(await g.run(args, io), args.join(' ')).toBe(EXIT.USAGE);
        expect(out.stdout).toBe('');
        expect(out.stderr.startsWith(first), out.stderr).toBe(true);
        expect(out.stderr.endsWith(`\n\n${g.usage}`)).toBe(true);
      }
    });
  }

  it('a bad setting is a configuration error: one line naming it, no usage (exit 2)', async () => {
    const { io, out } = buffers({ HUB_CONFIG_FILE: '/nonexistent/hub.json' });
    expect(await runFirmwareCli(['list'], io)).toBe(EXIT.USAGE);
    expect(out.stdout).toBe('');
    expect(out.stderr).toMatch(/^error: invalid configuration:/);
    expect(out.stderr).not.toContain('Usage:');
  });
});

describe('parseCli', () => {
  const usage = { text: 'usage: x <thing>\n' };

  it('gives the values and positionals, and a reporter of usage errors', () => {
    const { io, out } = buffers();
    const cli = parseCli(['a', '--n', '3', 'b'], io, usage, { n: { type: 'string' } });
    if (typeof cli === 'number') throw new Error(`exit ${cli}`);
    expect(cli.values).toEqual({ n: '3' });
    expect(cli.positionals).toEqual(['a', 'b']);
    expect(cli.usage('too many things')).toBe(EXIT.USAGE);
    expect(out).toEqual({ stdout: '', stderr: 'error: too many things\n\nusage: x <thing>\n' });
  });

  it('without a help option, --help is an unknown flag; the error prefix can be left out', () => {
    const { io, out } = buffers();
    expect(parseCli(['--help'], io, { ...usage, errorPrefix: '' }, { n: { type: 'string' } })).toBe(EXIT.USAGE);
    expect(out.stderr).toMatch(/^Unknown option '--help'.*\n\nusage: x <thing>\n$/s);
  });

  it('cliConfig turns a ConfigError into exit 2 and lets any other error through', () => {
    const { io, out } = buffers();
    expect(
      cliConfig(io, () => {
        throw new ConfigError(['HUB_PORT: expected a number']);
      }),
    ).toBe(EXIT.USAGE);
    expect(out.stderr).toMatch(/^error: .*HUB_PORT: expected a number.*\n$/s);
    expect(cliConfig(io, () => ({ dataDir: '/d' }))).toEqual({ dataDir: '/d' });
    expect(() =>
      cliConfig(io, () => {
        throw new Error('disk on fire');
      }),
    ).toThrow('disk on fire');
  });
});
