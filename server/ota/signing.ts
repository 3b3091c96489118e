/**
 * OTA image signing (docs/ota.md): ECDSA P-256 (secp256r1) with SHA-256 over the raw image bytes, the
 * signature DER-encoded and carried base64. mbedTLS on the ESP32 verifies the same bytes
 * (`mbedtls_pk_parse_public_key` + `mbedtls_pk_verify(MBEDTLS_MD_SHA256, ...)`). The operator's private
 * key never goes to the hub: the hub only holds the public key (OTA_PUBLIC_KEY_FILE).
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { HubError } from '../errors.ts';

export interface OtaKeyPair {
  /** PKCS#8 PEM of the private key (keep it off the hub, mode 0600). */
  privatePem: string;
  /** SPKI PEM of the public key (OTA_PUBLIC_KEY_FILE, and the firmware's built-in key). */
  publicPem: string;
}

export function generateSigningKey(): OtaKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** The base64 DER ECDSA-SHA256 signature of `image`. */
export function signImage(image: Buffer, privatePem: string): string {
  return sign('sha256', image, { key: privatePem, dsaEncoding: 'der' }).toString('base64');
}

/** Parses a P-256 public key PEM; CONFIG_INVALID when it is not one. */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new HubError('CONFIG_INVALID', `OTA_PUBLIC_KEY_FILE: not a public key PEM (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new HubError('CONFIG_INVALID', 'OTA_PUBLIC_KEY_FILE: the key must be ECDSA P-256 (prime256v1)');
  }
  return key;
}

/** True when `signatureB64` is a valid DER ECDSA-SHA256 signature of `image` under `key`. */
export function verifyImage(image: Buffer, signatureB64: string, key: KeyObject): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signatureB64) || signatureB64.length > 200) return false;
  try {
    return verify('sha256', image, { key, dsaEncoding: 'der' }, Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}

/** A C header with the public key PEM as a string constant, for the firmware build. */
export function publicKeyHeader(publicPem: string): string {
  const lines = publicPem
    .trim()
    .split('\n')
    .map((l) => `  "${l}\\n"`)
    .join('\n');
  return `// OTA signing public key (ECDSA P-256), written by \`npm run hub -- ota keygen\`.
#pragma once
static const char OTA_PUBLIC_KEY_PEM[] =
${lines};
`;
}
