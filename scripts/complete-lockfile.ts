/**
 * Restores the other platforms' optional binary packages in package-lock.json.
 *
 * Packages such as biome, esbuild or msgpackr-extract list one optional dependency per platform.
 * When the registry npm resolved against lacks some of them, npm leaves them out of the lockfile and
 * `npm ci` on any machine then refuses the lockfile as "not in sync". This adds the missing entries
 * (version, os, cpu, libc; no integrity, as npm itself writes for packages it could not fetch) so
 * `npm ci` works everywhere; each platform still installs only its own binary.
 *
 *   npx tsx scripts/complete-lockfile.ts          # fix package-lock.json in place
 *   npx tsx scripts/complete-lockfile.ts --check  # exit 1 when entries are missing
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Entry = { version?: string; dev?: boolean; optionalDependencies?: Record<string, string> } & Record<
  string,
  unknown
>;
const OS = ['android', 'darwin', 'freebsd', 'linux', 'netbsd', 'openbsd', 'sunos', 'win32', 'aix', 'openharmony'];
const CPU = ['arm64', 'x64', 'arm', 'ia32', 'loong64', 'mips64el', 'ppc64', 'riscv64', 's390x'];

/** Platform of a package from its name, e.g. `@biomejs/cli-linux-x64-musl` → linux/x64/musl. */
export function platformOf(name: string): { os: string; cpu: string; libc?: string } | null {
  const parts = name.split('/').pop()?.split('-') ?? [];
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.find((p) => CPU.includes(p));
  if (!os || !cpu) return null;
  return parts.includes('musl')
    ? { os, cpu, libc: 'musl' }
    : parts.includes('gnu')
      ? { os, cpu, libc: 'glibc' }
      : { os, cpu };
}

/** Lock entries missing for optional platform dependencies, keyed like `packages`. */
export function missingEntries(lock: { packages: Record<string, Entry> }): Map<string, Entry> {
  const missing = new Map<string, Entry>();
  for (const [key, entry] of Object.entries(lock.packages)) {
    for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
      const depKey = `node_modules/${dep}`;
      const platform = platformOf(dep);
      if (lock.packages[depKey] || missing.has(depKey) || !platform || !/^\d+\.\d+\.\d+/.test(version)) continue;
      const added: Entry = { version, cpu: [platform.cpu], optional: true, os: [platform.os] };
      if (entry.dev || (key === '' ? false : lock.packages[key]?.dev)) added.dev = true;
      if (platform.libc) added.libc = [platform.libc];
      missing.set(depKey, added);
    }
  }
  return missing;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = fileURLToPath(new URL('../package-lock.json', import.meta.url));
  const lock = JSON.parse(readFileSync(path, 'utf8'));
  const missing = missingEntries(lock);
  if (process.argv.includes('--check')) {
    for (const key of missing.keys()) console.error(`missing from package-lock.json: ${key}`);
    process.exitCode = missing.size ? 1 : 0;
  } else if (missing.size) {
    const packages = { ...lock.packages, ...Object.fromEntries(missing) };
    const [root, ...rest] = Object.keys(packages).sort((a, b) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1));
    lock.packages = Object.fromEntries([root, ...rest].map((k) => [k, packages[k as string]]));
    writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
    console.log(`added ${missing.size} platform entries to package-lock.json`);
  }
}
