/** Shared by the OTA integration tests: upload a signed image to a real hub through the admin API. */
import { expect } from 'vitest';
import { signImage } from '../../server/ota/signing.ts';
import { request } from '../unit/http-helpers.ts';

/** POSTs `image` signed with `privatePem` as `version` (target esp32); returns its id. */
export async function uploadSigned(
  port: number,
  adminToken: string,
  image: Buffer,
  version: string,
  privatePem: string,
): Promise<string> {
  const up = await request(port, 'POST', `/api/ota/images?version=${version}&target=esp32`, {
    headers: {
      authorization: `Bearer ${adminToken}`,
      'content-type': 'application/octet-stream',
      'x-ota-signature': signImage(image, privatePem),
    },
    body: image,
  });
  expect(up.status, up.text).toBe(201);
  return (up.json as { id: string }).id;
}
