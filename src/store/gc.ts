/**
 * Garbage collection of $PEERPKGS_HOME: what no root reaches goes.
 *
 * The roots are given by the caller (the outputs that profiles'
 * generations and live venvs hold, the distfiles that registered trees'
 * fetch files name), so that the store knows nothing of the exports that
 * hold them. What goes, by kind:
 *
 *   outputs         unpacked outputs no root holds, with their records
 *   earlier builds  archives built here before (store/built.ts) whose
 *                   output no root holds
 *   sandbox roots   every assembled root: a cache, made again on the next
 *                   build of its closure
 *   distfiles       sources no registered tree's fetch file names, with
 *                   their verification records
 *   crash leftovers temporaries whose owner is dead (a killed build's, a
 *                   killed install's), failed builds' kept work directories
 *                   included
 *   registrations   venvs and trees that are gone
 *   logs            the kept build logs of packages that are not in a
 *                   registered tree (or whose directory is gone)
 *   IPFS blocks     blocks of $PEERPKGS_HOME/ipfs that no pin reaches
 *                   (ipfsGarbage): what `ipfs add --pin`, `ipfs pin`,
 *                   `cache publish` and `mirror pin` added stays; blocks
 *                   fetched on the way (a substitution, a `cat`) and
 *                   unpinned adds go
 *
 * A tree or root is renamed to a temporary name before it is removed: a
 * kill half-way leaves a temporary for the next sweep, never half an
 * output where a build would take it for whole. The caller runs this
 * under roots.ts's exclusively(), so no build or install uses the store.
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { homeLayout } from '../home.ts';
import { PACKAGE_LINK } from './logs.ts';
import { unheldBuilt } from './built.ts';
import { deadTemporaries, temporaryName, forget } from '../archive/temporary.ts';
import { namesIn } from '../archive/files.ts';
import { ipfsPaths } from '../ipfs/config.ts';

export interface Kept {
  /** output sha256s */
  outputs: ReadonlySet<string>;
  /** distfile sha256s */
  distfiles: ReadonlySet<string>;
  /** registration links found stale by the caller */
  stale: string[];
  /** the package directories (real paths) of the registered trees, whose logs are kept */
  packages: ReadonlySet<string>;
}

export interface Garbage {
  kind: string;
  /** what goes: each item its paths (an output's tree, then its records), each removed whole */
  items: string[][];
  bytes: number;
}

/** Where the build logs' collection joins: a kind of garbage found from the roots, as the others are. */
type Kind = { kind: string; find: (home: string, kept: Kept) => string[][] };

/** The paths of `dir` whose names pass `keep`, grouped by the name's first 64 characters (a sha256 and its records). */
function bySha(dir: string, garbage: (sha: string) => boolean): string[][] {
  const groups = new Map<string, string[]>();
  for (const n of namesIn(dir).sort()) {
    const sha = n.slice(0, 64);
    if (!SHA.test(sha) || (n.length > 64 && n[64] !== '.') || !garbage(sha)) continue;
    // the tree (the bare name, sorted first) goes before its records: a record without its tree is rewritten when the output is unpacked again
    groups.set(sha, [...(groups.get(sha) ?? []), path.join(dir, n)]);
  }
  return [...groups.values()];
}

const SHA = /^[0-9a-f]{64}$/;

const KINDS: Kind[] = [
  {
    kind: 'outputs',
    find: (home, kept) => bySha(homeLayout.outputs(home), (sha) => !kept.outputs.has(sha)),
  },
  {
    // a package built again is found here before it is built: what no root holds goes
    kind: 'earlier builds',
    find: (home, kept) => unheldBuilt(home, kept.outputs),
  },
  {
    kind: 'sandbox roots',
    find: (home) => {
      const dir = homeLayout.roots(home);
      return namesIn(dir)
        .filter((n) => !n.startsWith('.'))
        .map((n) => [path.join(dir, n)]);
    },
  },
  {
    kind: 'distfiles',
    find: (home, kept) => {
      const verified = homeLayout.distfilesVerified(home);
      return bySha(homeLayout.distfiles(home), (sha) => !kept.distfiles.has(sha)).map(([file]) => [file!, path.join(verified, path.basename(file!))]);
    },
  },
  {
    kind: 'logs',
    find: (home, kept) =>
      namesIn(homeLayout.logs(home))
        .filter((n) => !n.startsWith('.'))
        .map((n) => path.join(homeLayout.logs(home), n))
        .filter((d) => {
          let pkg: string;
          try {
            pkg = fs.readlinkSync(path.join(d, PACKAGE_LINK));
          } catch {
            return true; // no package named: no root can hold it
          }
          return !kept.packages.has(pkg);
        })
        .map((d) => [d]),
  },
  {
    kind: 'crash leftovers',
    find: (home) => {
      const dirs = [
        home,
        homeLayout.outputs(home),
        homeLayout.roots(home),
        homeLayout.build(home),
        homeLayout.built(home),
        homeLayout.distfiles(home),
        homeLayout.distfilesVerified(home),
        homeLayout.profiles(home),
        ipfsPaths(home).blocks,
      ];
      const gcroots = homeLayout.gcroots(home);
      dirs.push(
        gcroots,
        ...namesIn(gcroots)
          .map((n) => path.join(gcroots, n))
          .filter((p) => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory()),
      );
      return dirs.flatMap((d) => (fs.existsSync(d) ? deadTemporaries(d) : [])).map((p) => [p]);
    },
  },
  { kind: 'registrations', find: (_home, kept) => kept.stale.map((p) => [p]) },
];

/** What would go, by kind (kinds with nothing to go included); `bytes` is counted by collect(). */
export function findGarbage(home: string, kept: Kept): Garbage[] {
  return KINDS.map(({ kind, find }) => ({ kind, items: find(home, kept), bytes: 0 }));
}

/**
 * Counts the bytes of what findGarbage found into each kind's `bytes`
 * and, unless `dryRun`, removes it: in one walk of each tree, which
 * measures it and makes its directories writable (the store's are not),
 * then one recursive removal; a tree is renamed away first.
 */
export function collect(garbage: Garbage[], dryRun = false): void {
  for (const g of garbage) {
    for (const p of g.items.flat()) {
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (st === undefined) continue;
      if (!st.isDirectory()) {
        g.bytes += st.blocks * 512;
        if (!dryRun) fs.rmSync(p, { force: true });
        continue;
      }
      if (dryRun) {
        g.bytes += walk(p, st, false);
        continue;
      }
      const doomed = p.includes('.tmp-') ? p : temporaryName(p, { sweep: false });
      if (doomed !== p) fs.renameSync(p, doomed);
      g.bytes += walk(doomed, st, true);
      fs.rmSync(doomed, { recursive: true, force: true });
      forget(doomed);
    }
  }
}

/** Bytes the tree `dir` holds on disk, each inode once; `unlock` makes each directory writable on the way. */
function walk(dir: string, st: Stats, unlock: boolean, seen = new Set<string>()): number {
  let n = st.blocks * 512;
  if (unlock && (st.mode & 0o700) !== 0o700) fs.chmodSync(dir, 0o700);
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    const c = fs.lstatSync(p);
    if (c.isDirectory()) n += walk(p, c, unlock, seen);
    else if (c.nlink === 1 || !seen.has(`${c.ino}`)) {
      if (c.nlink > 1) seen.add(`${c.ino}`);
      n += c.blocks * 512;
    }
  }
  return n;
}

/**
 * The IPFS blocks no pin reaches, removed unless `dryRun`, by the node
 * that owns the blockstore: the daemon of this home when one runs (its
 * lock on its blockstore is held meanwhile, so its own work is not cut),
 * else a node started here for the purpose, dialling nobody. The caller
 * holds exclusively(): every process that adds or pins (the `ipfs`,
 * `cache` and `mirror` commands, builds) is a user of the store, so no
 * block is between being added and being pinned. No repo: nothing to do,
 * and no node is started.
 */
export async function ipfsGarbage(home: string, dryRun: boolean, env: NodeJS.ProcessEnv = process.env): Promise<Garbage> {
  const g: Garbage = { kind: 'IPFS blocks', items: [], bytes: 0 };
  const paths = ipfsPaths(home);
  if (!fs.existsSync(paths.blocks) && !fs.existsSync(paths.packs)) return g;
  const { openIpfs } = await import('../ipfs/client.ts');
  // the pins and blocks are all here: no peer, gateway or DHT to ask
  const quiet = { ...env, PKG_IPFS_PEERS: '', PKG_IPFS_GATEWAYS: '', PKG_IPFS_DHT: 'no' };
  const client = await openIpfs({ home, env: quiet });
  try {
    const r = await client.collectGarbage({ dryRun });
    for (const b of r.removed) {
      g.items.push([b.packed ? `block ${b.cid} in ${b.file}` : b.file]);
      g.bytes += b.bytes;
    }
  } finally {
    await client.close();
  }
  return g;
}
