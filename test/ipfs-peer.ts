/**
 * An IPFS peer for tests and benchmarks: `peerpkgs ipfs daemon` on a
 * PEERPKGS_HOME, in its own process, as another machine would run it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, userEnv } from './helpers.ts';
import { BlockPacks } from '../src/ipfs/packs.ts';

export interface Daemon {
  home: string;
  peerId: string;
  /** its multiaddr, with /p2p/, for PKG_IPFS_PEERS */
  addr: string;
  /** its trustless gateway's URL, when PKG_IPFS_GATEWAY_LISTEN asked for one */
  gateway: string | undefined;
  proc: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | string | null>;
}

/** `peerpkgs ipfs daemon` on `home` in its own process, once it says it is ready. */
export async function startDaemon(home: string, env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const proc = spawn(path.join(BIN, 'peerpkgs'), ['ipfs', 'daemon'], { env: userEnv({ PEERPKGS_HOME: home, ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string | null>((r) => proc.once('exit', (code, sig) => r(code ?? sig)));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the daemon did not get ready in 30 s:\n${out}`)), 30_000);
    const check = () => {
      if (/^ready$/m.test(out)) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`the daemon exited (${code}):\n${out}`));
    });
  });
  const peerId = /^peer id: (\S+)$/m.exec(out)![1]!;
  const addr = /^listening: (\S+)$/m.exec(out)![1]!;
  return {
    home,
    peerId,
    addr,
    gateway: /^gateway: (\S+)$/m.exec(out)?.[1],
    proc,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** The blocks a home's IPFS repo holds: in its packs, and as block files of before them. */
export function storedBlocks(home: string): number {
  const packs = new BlockPacks(path.join(home, 'ipfs/packs'));
  let files: string[] = [];
  try {
    files = (fs.readdirSync(path.join(home, 'ipfs/blocks'), { recursive: true }) as string[]).filter((f) => f.endsWith('.data'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return packs.list().length + files.length;
}
