/**
 * A hub process for the crash test (ingest-crash.test.ts): `buildHub` with the real configuration from
 * the environment (as `server/main.ts` does) plus the storage fault seam, driven over IPC:
 *   parent → child  `{ type: 'hold', at }`  from now on every local-log commit is held (never released:
 *                                         the parent SIGKILLs this process) — `at: 'commit'` before its
 *                                         write transaction, `at: 'flush'` after the transaction and
 *                                         before the wait for the disk flush
 *   child → parent  `{ type: 'ready', port }`            listening
 *                   `{ type: 'held', frames, groups }`  a commit is being held (`frames` in its group)
 * A held commit is the window in which an ACK sent before the commit would acknowledge frames that
 * are not on disk; kill -9 keeps the page cache, so only holding the commit makes that window real.
 * A held flush is the window of an ACK sent after the commit but before the flush: the frames survive
 * kill -9 (page cache) but would not survive a power cut, so the test checks that none was acknowledged.
 */
import { loadConfig } from '../../server/config/index.ts';
import { buildHub } from '../../server/hub.ts';

type FromParent = { type: 'hold'; at: 'commit' | 'flush' };

const send = (m: unknown) => process.send?.(m);
let holding: FromParent['at'] | null = null;
let groups = 0;

const hub = buildHub(loadConfig(process.env), {
  storageFaults: {
    beforeCommit({ frames }) {
      if (holding !== 'commit') return;
      groups++;
      send({ type: 'held', frames, groups });
      return new Promise<void>(() => undefined);
    },
    beforeFlush({ frames }) {
      if (holding !== 'flush') return;
      groups++;
      send({ type: 'held', frames, groups });
      return new Promise<void>(() => undefined);
    },
  },
});

process.on('message', (m: FromParent) => {
  if (m.type === 'hold') holding = m.at;
});
// The test process went away: do not outlive it.
process.on('disconnect', () => process.exit(1));

hub.start().then(
  ({ port }) => send({ type: 'ready', port }),
  (err: unknown) => {
    process.stderr.write(`crash-hub-child failed to start: ${String(err)}\n`);
    process.exit(1);
  },
);
