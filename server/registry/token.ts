/**
 * Device tokens [PROTO-1.2]: 256 random bits from the OS CSPRNG, base64url, behind a recognisable
 * prefix (so secret scanners and people can tell what a leaked string is). The hub keeps only the
 * SHA-256 of a token; see docs/devices.md for why a fast hash is the right choice for random tokens.
 */
import { createHash, randomBytes } from 'node:crypto';

/** Every device token starts with this. */
export const TOKEN_PREFIX = 'esp32hub_';
/** Random bytes per token: 256 bits, twice the protocol's 128-bit floor. */
export const TOKEN_RANDOM_BYTES = 32;
/** Length of a token in characters: prefix + unpadded base64url of 32 bytes (43 characters). */
export const TOKEN_LENGTH = TOKEN_PREFIX.length + Math.ceil((TOKEN_RANDOM_BYTES * 4) / 3);

const TOKEN_SHAPE = /^esp32hub_[A-Za-z0-9_-]{43}$/;

/** A fresh device token. Shown once to the operator, never stored or logged. */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(TOKEN_RANDOM_BYTES).toString('base64url');
}

/** True when `value` has the shape of a device token (says nothing about whether it is valid). */
export function isTokenShaped(value: string): boolean {
  return value.length === TOKEN_LENGTH && TOKEN_SHAPE.test(value);
}

/** The stored form of a token: lowercase hex SHA-256 of its UTF-8 text. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
