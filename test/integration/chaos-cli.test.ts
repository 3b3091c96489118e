/**
 * `npm run chaos` as a command: its exit codes for bad arguments (2, with the usage) and for a
 * scenario that cannot run here (77: disk-full without root, run as an unprivileged user when the
 * test runs as root). The scenarios themselves: chaos-kill9, chaos-influx-outage, chaos-disk-full.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tryFindExecutable } from '../harness/process.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = ['--import', 'tsx', 'scripts/chaos/cli.ts'];

function chaos(args: string[], asNobody = false) {
  const setpriv = tryFindExecutable('setpriv');
  const [cmd, argv] =
    asNobody && setpriv
      ? [setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...CLI, ...args]]
      : [process.execPath, [...CLI, ...args]];
  const r = spawnSync(cmd, argv, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

it('bad arguments: exit 2 with the usage', () => {
  for (const args of [[], ['bogus'], ['kill9', '--rounds', 'many'], ['kill9', '--store', 'sqlite']]) {
    const r = chaos(args);
    expect(r.code, args.join(' ')).toBe(2);
    expect(r.stderr).toContain('usage: npm run chaos -- <scenario> [options]');
  }
});

/** As root the scenario would run: the test drops to `nobody`, if `nobody` can read the checkout. */
function unprivilegedUnavailable(): string | null {
  if (process.getuid?.() !== 0) return null;
  const setpriv = tryFindExecutable('setpriv');
  if (!setpriv) return 'setpriv not found';
  const probe = spawnSync(
    setpriv,
    [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      process.execPath,
      '-e',
      'require("fs").readFileSync(process.argv[1])',
      join(ROOT, 'node_modules/tsx/package.json'),
    ],
    { encoding: 'utf8' },
  );
  return probe.status === 0 ? null : 'the unprivileged user cannot read the checkout';
}
const unavailable = unprivilegedUnavailable();

it.skipIf(unavailable !== null)(
  `disk-full without root: says why and exits 77 (skipped), never "PASS" ${unavailable ? `(skipped: ${unavailable})` : ''}`,
  () => {
    const r = chaos(['disk-full'], true);
    expect(r.code).toBe(77);
    expect(r.stdout).toMatch(/^SKIPPED: .*root/m);
    expect(r.stdout).not.toMatch(/^PASS$/m);
  },
);
