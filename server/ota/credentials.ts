/**
 * Short-lived, single-device OTA download credentials (docs/ota.md): 128 random bits, base64url, bound
 * to one device and one image, valid for OTA_CREDENTIAL_TTL_SEC, kept only as their SHA-256. Bounded:
 * the oldest are dropped past `max` (a board whose credential went gets a new one with its next command).
 */
import { createHash, randomBytes } from 'node:crypto';

export interface OtaCredentialGrant {
  deviceId: string;
  imageId: string;
  expiresAtMs: number;
}

export interface OtaCredentials {
  /** A new credential for `deviceId` to download `imageId`; the hub keeps only its hash. */
  issue(deviceId: string, imageId: string): string;
  /** The grant when `credential` is known, unexpired and for `imageId`; else null. */
  check(credential: string, imageId: string): OtaCredentialGrant | null;
  size(): number;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex');

export function createOtaCredentials(o: { ttlMs: number; now: () => number; max?: number }): OtaCredentials {
  const max = o.max ?? 10_000;
  const grants = new Map<string, OtaCredentialGrant>();
  const sweep = () => {
    const t = o.now();
    for (const [k, g] of grants) if (g.expiresAtMs <= t) grants.delete(k);
    while (grants.size >= max) {
      const oldest = grants.keys().next().value;
      if (oldest === undefined) break;
      grants.delete(oldest);
    }
  };
  return {
    issue(deviceId, imageId) {
      sweep();
      const credential = randomBytes(16).toString('base64url');
      grants.set(hash(credential), { deviceId, imageId, expiresAtMs: o.now() + o.ttlMs });
      return credential;
    },
    check(credential, imageId) {
      const g = grants.get(hash(credential));
      if (!g || g.imageId !== imageId) return null;
      if (g.expiresAtMs <= o.now()) {
        grants.delete(hash(credential));
        return null;
      }
      return g;
    },
    size: () => grants.size,
  };
}
