/** `npm ci` refuses a lockfile that lacks other platforms' optional binaries; keep it complete. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { missingEntries, platformOf } from '../../scripts/complete-lockfile.ts';

describe('package-lock.json', () => {
  it('lists every platform binary its packages may install (run scripts/complete-lockfile.ts to fix)', () => {
    const lock = JSON.parse(readFileSync(new URL('../../package-lock.json', import.meta.url), 'utf8'));
    expect([...missingEntries(lock).keys()]).toEqual([]);
  });

  it('reads platforms from package names the way the binaries are published', () => {
    expect(platformOf('@biomejs/cli-linux-x64-musl')).toEqual({ os: 'linux', cpu: 'x64', libc: 'musl' });
    expect(platformOf('@msgpackr-extract/msgpackr-extract-darwin-arm64')).toEqual({ os: 'darwin', cpu: 'arm64' });
    expect(platformOf('@esbuild/win32-ia32')).toEqual({ os: 'win32', cpu: 'ia32' });
    expect(platformOf('left-pad')).toBeNull();
  });

  it('finds an entry that is missing', () => {
    const lock = {
      packages: {
        '': {},
        'node_modules/tool': {
          version: '1.0.0',
          dev: true,
          optionalDependencies: { '@tool/cli-darwin-arm64': '1.0.0' },
        },
      },
    };
    expect(Object.fromEntries(missingEntries(lock))).toEqual({
      'node_modules/@tool/cli-darwin-arm64': {
        version: '1.0.0',
        cpu: ['arm64'],
        os: ['darwin'],
        optional: true,
        dev: true,
      },
    });
  });
});
