/**
 * Device registry: ids, hashed tokens, revocation. The gateway calls `authenticate` in its upgrade
 * handler and closes sessions named by `onRevoked`; the admin API and the CLI change it.
 */
export { deviceUrlFrom } from './device-url.ts';
export {
  type DeviceInfo,
  type DeviceRegistry,
  type DeviceRegistryOptions,
  type IssuedToken,
  openDeviceRegistry,
  REGISTRY_FILE_NAME,
  type RevokedListener,
} from './registry.ts';
export { hashToken, isTokenShaped, TOKEN_LENGTH, TOKEN_PREFIX } from './token.ts';
