// Writes firmware/test/ota-cases.json, the host tests' OTA images: the public key of a fresh test key pair
// (the private key is thrown away after signing), an old and a new image, the new image's SHA-256 and its
// ECDSA P-256 signature (DER, base64: the scheme of docs/ota.md), and a signature by another key.
// Run: node firmware/test/ota/gen-ota-cases.mjs   (test/unit/firmware-host.test.ts checks the file with
// Node's crypto.verify, so the C++ verifier and Node agree on every case).
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function image(seed, size) {
  const out = Buffer.alloc(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const oldImage = image(1, 5000);
const newImage = image(2, 9000);
const cases = {
  publicKeyPem: key.publicKey.export({ type: 'spki', format: 'pem' }),
  oldImage: oldImage.toString('base64'),
  newImage: newImage.toString('base64'),
  newSha256: createHash('sha256').update(newImage).digest('hex'),
  newSignature: sign('sha256', newImage, key.privateKey).toString('base64'),
  otherKeySignature: sign('sha256', newImage, other.privateKey).toString('base64'),
};
writeFileSync(join(here, '..', 'ota-cases.json'), `${JSON.stringify(cases, null, 2)}\n`);
