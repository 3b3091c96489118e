/**
 * `npm run sim -- [options]`: the simulator's entry point and the only simulator file that touches
 * `process` (argv, env, streams, signals, exit). See docs/simulator.md.
 */
import { parseCliOptions, USAGE, UsageError } from './options.ts';
import { runSimulator } from './run.ts';

async function main(): Promise<number> {
  let opts: ReturnType<typeof parseCliOptions>;
  try {
    opts = parseCliOptions(process.argv.slice(2), process.env);
  } catch (err) {
    const problems = err instanceof UsageError ? err.problems : [(err as Error).message];
    process.stderr.write(`${problems.map((p) => `error: ${p}`).join('\n')}\n\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const interrupt = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) interrupt.abort();
    else process.exit(130); // a second Ctrl-C: leave now, no summary
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const { exitCode } = await runSimulator(opts, {
    stdout: process.stdout,
    stderr: process.stderr,
    statusTty: process.stderr.isTTY === true,
    interrupt: interrupt.signal,
  });
  return exitCode;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
