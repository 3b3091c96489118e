/**
 * Channel labels for the page (docs/live-api.md §7): `GET /api/labels` (every device's labels, for
 * the fleet view's search and columns) and `PUT /api/devices/:id/channels/:channel/label` with
 * `{ "label": "Battery voltage" }` (an empty label restores the default). Reading needs dashboard
 * access; writing the operator role (and, for cookie sessions, an allowed Origin).
 */
import { z } from 'zod';
import { isChannelKey, isDeviceId } from '../codec/index.ts';
import { type ChannelLabels, MAX_LABEL_LENGTH } from '../storage/channel-labels.ts';
import type { Guard, Router } from './router.ts';

export interface ChannelLabelRoutesOptions {
  labels: ChannelLabels;
  /** Who may read labels (dashboard access). */
  read: Guard | readonly Guard[];
  /** Who may change them (dashboard operators, CSRF-checked). */
  write: Guard | readonly Guard[];
}

const tags = ['dashboard'];
const labelTable = z.record(z.string(), z.record(z.string(), z.string()));

export function registerChannelLabelRoutes(router: Router, o: ChannelLabelRoutesOptions): void {
  router.get('/api/labels', () => ({ labels: o.labels.all() }), {
    summary:
      'Operator-set display names of channels, by device then channel key (channels without one show a name from the key)',
    tags,
    guard: o.read,
    query: z.strictObject({}),
    headers: { 'cache-control': 'no-store' },
    responses: { 200: z.object({ labels: labelTable }) },
  });
  router.put(
    '/api/devices/:id/channels/:channel/label',
    async (ctx) => {
      const { id, channel } = ctx.input.params;
      const { label } = ctx.input.body;
      await o.labels.set(id, channel, label);
      return { deviceId: id, channel, label: o.labels.of(id)[channel] ?? null };
    },
    {
      summary: "Set a channel's display name; an empty label restores the default",
      tags,
      guard: o.write,
      params: z.strictObject({
        id: z.string().refine(isDeviceId, 'a device id: 1-64 characters of A-Z a-z 0-9 . _ -'),
        channel: z.string().refine(isChannelKey, 'a channel key: a-z 0-9 _, starting with a letter, 1-32 long'),
      }),
      query: z.strictObject({}),
      body: z.strictObject({ label: z.string().max(MAX_LABEL_LENGTH) }),
      maxBodyBytes: 1024,
      headers: { 'cache-control': 'no-store' },
      responses: {
        200: z.object({ deviceId: z.string(), channel: z.string(), label: z.string().nullable() }),
      },
    },
  );
}
