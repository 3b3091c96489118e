/** zod schemas shared by the hub's routes (identifiers of [PROTO-2.8], empty queries). */
import { z } from 'zod';
import { isChannelKey, isCommandName, isDeviceId } from '../codec/index.ts';

/** A device id [PROTO-2.8]. */
export const deviceId = z
  .string()
  .refine(isDeviceId, 'a device id is 1-64 characters of A-Z a-z 0-9 . _ - [PROTO-2.8]')
  .meta({ pattern: '^[A-Za-z0-9._-]{1,64}$', examples: ['greenhouse-1'] });

/** A channel key [PROTO-2.8]. */
export const channelKey = z
  .string()
  .refine(isChannelKey, 'a channel key is a-z 0-9 _ starting with a letter, at most 32 characters [PROTO-2.8]')
  .meta({ pattern: '^[a-z][a-z0-9_]{0,31}$', examples: ['temperature'] });

/** A command name [PROTO-2.8]. */
export const commandName = z
  .string()
  .refine(isCommandName, 'a command name is 1-32 characters of a-z 0-9 _')
  .meta({ pattern: '^[a-z0-9_]{1,32}$', examples: ['identify'] });

/** `{ id }` path parameters holding a device id. */
export const deviceIdParams = z.strictObject({ id: deviceId });

/** A route that takes no query parameters: any is refused with 400 naming it. */
export const noQuery = z.strictObject({});
