/**
 * An IPFS peer for tests and benchmarks: `peerpkgs ipfs daemon` on a
 * PEERPKGS_HOME, in its own process, as another machine would run it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { BIN, userEnv } from './helpers.ts';

export interface Daemon {
  addr: string;
  stop(signal?: NodeJS.Signals): Promise<unknown>;
}

/** `peerpkgs ipfs daemon` on `home` in its own process, once it says it is ready. */
export async function startDaemon(home: string): Promise<Daemon> {
  const proc: ChildProcess = spawn(path.join(BIN, 'peerpkgs'), ['ipfs', 'daemon'], { env: userEnv({ PEERPKGS_HOME: home }), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise((r) => proc.once('exit', r));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the daemon did not get ready in 30 s:\n${out}`)), 30_000);
    proc.stdout!.on('data', () => {
      if (!/^ready$/m.test(out)) return;
      clearTimeout(t);
      resolve();
    });
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`the daemon exited (${code}):\n${out}`));
    });
  });
  const addr = /^listening: (\S+)$/m.exec(out)![1]!;
  return {
    addr,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
