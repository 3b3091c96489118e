/**
 * `npm run hub -- devices pending|approve|reject|forget`: the operator's enrollment decisions from the
 * command line, on the same store as a running hub (server/enroll/store.ts). They work whether or not
 * the hub runs: a running hub notices the change within a second and hands the token to a connected
 * board (or tells it it was rejected); otherwise the board gets it when it asks next.
 */
import { resolve } from 'node:path';
import { type CliIo, printJson } from '../cli-args.ts';
import type { Logger } from '../log/index.ts';
import type { DeviceRegistry } from '../registry/index.ts';
import {
  approveEnrollment,
  type EnrollView,
  forgetEnrollment,
  listEnrollments,
  rejectEnrollment,
} from './operations.ts';
import { openEnrollStore } from './store.ts';

export const ENROLL_COMMANDS = ['pending', 'approve', 'reject', 'forget'] as const;
export type EnrollCommand = (typeof ENROLL_COMMANDS)[number];

export const ENROLL_USAGE = `  pending            list boards waiting for approval (and those approved but not yet collected)
  approve <hwid>     approve a board: the hub hands it a token (at once if it is connected);
                     --id <deviceId> picks its device id (default: its hardware id)
  reject <hwid>      reject a board: it is told so and refused from then on
  forget <hwid>      forget a board's request and rejections (it may ask again)`;

export async function runEnrollCommand(
  command: EnrollCommand,
  args: { hardwareId?: string; deviceId?: string; json: boolean },
  ctx: { dataDir: string; ttlSec: number; registry: DeviceRegistry; logger: Logger; io: Pick<CliIo, 'stdout'> },
): Promise<void> {
  const store = openEnrollStore({ dataDir: ctx.dataDir, logger: ctx.logger, ttlSec: ctx.ttlSec, watchIntervalMs: 0 });
  const print = (value: unknown) => printJson(ctx.io, value);
  const deps = { store, deviceExists: (id: string) => ctx.registry.get(id) !== undefined };
  try {
    await store.refresh();
    const hw = args.hardwareId as string;
    switch (command) {
      case 'pending': {
        const list = listEnrollments(store.snapshot());
        if (args.json) print(list);
        else ctx.io.stdout.write(pendingTable(list.requests, list.rejections.length, store.file));
        return;
      }
      case 'approve': {
        const view = await approveEnrollment(deps, hw, args.deviceId);
        if (args.json) print(view);
        else {
          ctx.io.stdout.write(
            `Approved ${hw} as device ${view.deviceId}. A running hub hands it its token within a second if it is\n` +
              'connected, otherwise when it asks next; the token is never shown here (only its hash is kept).\n',
          );
        }
        return;
      }
      case 'reject': {
        const view = await rejectEnrollment(deps, hw);
        if (args.json) print(view);
        else {
          ctx.io.stdout.write(
            `Rejected ${hw} (key ${view.keyFingerprint}). It is told so and refused from now on; to undo:\n` +
              `npm run hub -- devices forget ${hw}\n`,
          );
        }
        return;
      }
      case 'forget': {
        const result = await forgetEnrollment(deps, hw);
        if (args.json) print(result);
        else ctx.io.stdout.write(`Forgot ${hw}: its next request starts afresh (as pending).\n`);
        return;
      }
    }
  } finally {
    await store.close();
  }
}

function pendingTable(requests: EnrollView[], rejections: number, file: string): string {
  if (requests.length === 0) {
    return `No boards waiting (${rejections} rejected). Store: ${resolve(file)}\n`;
  }
  const rows = [
    ['HARDWARE ID', 'STATE', 'MODEL', 'FIRMWARE', 'KEY', 'FROM', 'REQUESTED', 'DEVICE ID'],
    ...requests.map((r) => [
      r.hardwareId,
      r.state === 'approved' ? (r.handedOver ? 'handed-over' : 'approved') : r.state,
      r.model || '-',
      r.firmwareVersion || '-',
      r.keyFingerprint,
      r.remote ?? '-',
      r.requestedAt,
      r.deviceId ?? '-',
    ]),
  ];
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  const lines = rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c] as number))
      .join('  ')
      .trimEnd(),
  );
  return `${lines.join('\n')}\nApprove one with: npm run hub -- devices approve <hardwareId> [--id <deviceId>]\n`;
}
