/**
 * The local log's commit window (local-log.ts), the one place it is set (docs/architecture.md §4); a
 * module of its own so that the config takes its bounds without loading lmdb.
 *
 * A group is committed once it is `commitWindowMaxMs` old (`LOG_COMMIT_WINDOW_MAX_MS`, default {@link COMMIT_WINDOW_MAX_MS}), or
 * holds `COMMIT_WINDOW_BYTES` of frames, or is at least `COMMIT_WINDOW_MS` old and holds
 * `COMMIT_TARGET_FRAMES_PER_DEVICE` frames of one device, whichever comes first.
 *
 * - Frames that trickle in share a transaction and its fsync: at 100 frames/s from 50 devices a commit
 *   holds 2.7 frames instead of 1.06 (with 2 ms), which cut the disk writes per frame from 48 to 20 KB
 *   (what wears an SD card) and the CPU per frame by 15-20 % (docs/performance.md, "Issue 12, sixth
 *   pass"). A longer bound (an SD card, a small fleet) shares each commit among more frames.
 * - Many devices streaming, each a few tens of frames per second: a group fills for the whole bound,
 *   so what a commit costs per device (its ACK written back, its state record, the socket reads
 *   between two commits) is shared by every frame the device has in it.
 * - No device waits on the window for long: once one device has `COMMIT_TARGET_FRAMES_PER_DEVICE`
 *   frames in the group (half the firmware's in-flight window), the group goes out as soon as it is
 *   `COMMIT_WINDOW_MS` old, however long the bound. A fast device among slow ones, or one replaying
 *   its outbox, therefore never stalls on its in-flight window for a whole long window.
 *
 * Under load the previous commit's flush takes longer than the window anyway. 256 KiB of records
 * (~1,000 typical frames) closes a group early.
 */
export const COMMIT_WINDOW_MS = 20;
export const COMMIT_WINDOW_MAX_MS = 25;
/** The longest bound `LOG_COMMIT_WINDOW_MAX_MS` may set: far below a device's ACK timeout (30 s). */
export const COMMIT_WINDOW_MAX_LIMIT_MS = 5000;
export const COMMIT_WINDOW_BYTES = 256 * 1024;
/** One device's frames in a group that commit it as soon as it is `COMMIT_WINDOW_MS` old. */
export const COMMIT_TARGET_FRAMES_PER_DEVICE = 4;
