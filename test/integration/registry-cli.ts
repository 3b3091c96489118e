/** Runs the real CLI (`node --import tsx server/cli.ts …`, what `npm run hub --` runs) as a child process. */
import { spawn } from 'node:child_process';
import { NODE_TSX, REPO_ROOT } from './run-script.ts';

export { REPO_ROOT };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx server/cli.ts ...args` with a clean environment (no HUB_* from the test runner) plus `env`. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE_TSX.command, [...NODE_TSX.args, 'server/cli.ts', ...args], {
      cwd: REPO_ROOT,
      // ENV_FILE: a developer's own .env in the repository root stays out of the run.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ENV_FILE: '/dev/null', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
