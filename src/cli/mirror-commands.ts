/**
 * `peerpkgs mirrors import|pin|pin-all` and p2pkgs' names for the last two,
 * `bin/ipfs-pin-fetch-file` and `bin/ipfs-pin-all-fetch-files`: argument
 * parsing and what the user sees. The work is in src/mirrors/.
 *
 * Usage errors are printed here (exit 2); a bad tree or database
 * (TreeError, exit 4) and a source no mirror or url had (FetchError, exit 5)
 * are left to the caller, which maps every command's errors alike.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { peerpkgsHome } from '../home.ts';
import { display } from '../tree/errors.ts';
import { PeerpkgsError } from '../errors.ts';
import { UsageError, parse } from './frame.ts';

const MIRRORS_HELP = `usage: peerpkgs mirrors import [--db FILE] P2PKGS-MIRRORS-FILE
       peerpkgs mirrors pin [--db FILE] FETCHFILE...     (also: ipfs-pin-fetch-file)
       peerpkgs mirrors pin-all [--db FILE] [TREEDIR]    (also: ipfs-pin-all-fetch-files)

import   add the records of a p2pkgs mirrors/ipfs rec file to the mirror database
pin      fetch each source of the packages' fetch files into the distfile store,
         add it to the local IPFS node (kubo's default settings) and pin it, and
         record sha256,cid,url in the mirror database
pin-all  pin the sources of every package of the tree (every pkg/**/fetch) around
         TREEDIR (default: the current directory)

The mirror database is mirrors/ipfs.csv beside the tree's pkg/ directory,
or --db FILE, or $PKG_MIRROR_DB. Builds and do-fetch fetch a source from
IPFS when the database has a CID for its sha256 (PKG_MIRROR_IPFS=no: never),
and from its urls when that fails.
`;

/** Each subcommand's arguments, for its own usage line. */
const SUB_ARGS: Record<string, string> = { import: '[--db FILE] P2PKGS-MIRRORS-FILE', pin: '[--db FILE] FETCHFILE...', 'pin-all': '[--db FILE] [TREEDIR]' };

const MIRRORS_ENV =
  '\nEnvironment: PEERPKGS_HOME, PKG_MIRROR_DB, PKG_IPFS_PEERS, PKG_IPFS_LISTEN, PKG_IPFS_TIMEOUT, PKG_MAX_DOWNLOAD_SIZE,\nPKG_DOWNLOAD_BASE_TIME, PKG_DOWNLOAD_MIN_RATE (see peerpkgs --help).\n';

interface Flags {
  db: string | null;
  args: string[];
}

function flags(argv: string[]): Flags {
  const { values, positionals } = parse(argv, { db: { type: 'string' } });
  if (values.db === '') throw new UsageError('--db needs a file');
  return { db: values.db ?? null, args: positionals };
}

/** `peerpkgs mirrors SUB ...`; `prog` is the name the user called. */
export async function mirrorsCommand(prog: string, sub: string | undefined, argv: string[]): Promise<number> {
  if (!sub || sub === '-h' || sub === '--help' || argv.includes('-h') || argv.includes('--help')) {
    // p2pkgs' names lead with their own usage
    const args = SUB_ARGS[sub ?? ''];
    const own = !args ? '' : prog.startsWith('ipfs-pin-') ? `usage: ${prog} ${args}   (peerpkgs mirrors ${sub})\n\n` : `usage: peerpkgs mirrors ${sub} ${args}\n\n`;
    process.stdout.write(own + MIRRORS_HELP + MIRRORS_ENV);
    return sub ? 0 : 2;
  }
  try {
    const f = flags(argv);
    switch (sub) {
      case 'import':
        return await importCmd(f);
      case 'pin':
        return await pinCmd(prog, f.db, f.args);
      case 'pin-all':
        return await pinAllCmd(prog, f);
      default:
        throw new UsageError(`unknown mirrors command ${sub}`);
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    const help = prog.startsWith('ipfs-pin-') ? `${prog} --help` : `${prog} mirrors --help`;
    process.stderr.write(`${prog}: ${e.message} (see ${help})\n`);
    return 2;
  }
}

async function dbFor(start: string, db: string | null): Promise<string> {
  if (db) return path.resolve(db);
  const { mirrorDbPath } = await import('../mirrors/db.ts');
  const file = mirrorDbPath(start);
  if (!file) throw new UsageError(`${display(path.resolve(start))} is in no package tree (no pkg/ directory above it); name the database with --db FILE or PKG_MIRROR_DB`);
  return file;
}

async function importCmd(f: Flags): Promise<number> {
  if (f.args.length !== 1) throw new UsageError('name one p2pkgs mirrors file, e.g. peerpkgs mirrors import ../p2pkgs/mirrors/ipfs');
  const [{ readP2pkgsMirrors }, { addMirrorRecords }] = await Promise.all([import('../mirrors/import.ts'), import('../mirrors/db.ts')]);
  const records = readP2pkgsMirrors(path.resolve(f.args[0]!));
  const db = await dbFor(process.cwd(), f.db);
  const added = await addMirrorRecords(db, records);
  process.stdout.write(`${display(db)}: ${added.length} records added, ${records.length - added.length} already there\n`);
  return 0;
}

async function pinCmd(prog: string, db: string | null, fetchFiles: string[]): Promise<number> {
  if (fetchFiles.length === 0) throw new UsageError('name at least one fetch file, e.g. pkg/make/fetch');
  const { usingStore } = await import('../store/roots.ts');
  // a user of the store: gc takes neither a distfile being pinned nor blocks added and not yet pinned
  const onWait = (pid: number) => void process.stderr.write(`waiting for gc (process ${pid}) to finish\n`);
  return usingStore(peerpkgsHome(), () => pinAll(prog, db, fetchFiles), onWait);
}

async function pinAll(prog: string, db: string | null, fetchFiles: string[]): Promise<number> {
  const [{ DistfileStore }, { pinFetchFile }, { ipfsMirrorFor }, { openMirrorNode }, { ipfsHasPeers }] = await Promise.all([
    import('../fetch/store.ts'),
    import('../mirrors/pin.ts'),
    import('../mirrors/source.ts'),
    import('../mirrors/node.ts'),
    import('../mirrors/fetching.ts'),
  ]);
  const home = peerpkgsHome();
  const store = new DistfileStore(home);
  const { ipfsPaths } = await import('../ipfs/config.ts');
  const daemon = fs.existsSync(ipfsPaths(home).socket);
  // one node for every fetch file, started when first needed
  let node: ReturnType<typeof openMirrorNode> | null = null;
  const open = () => (node ??= openMirrorNode(home));
  const failures: unknown[] = [];
  try {
    for (const ff of fetchFiles) {
      const fetchFile = path.resolve(ff);
      const dbFile = await dbFor(path.dirname(fetchFile), db);
      const env = db ? { ...process.env, PKG_MIRROR_DB: dbFile } : process.env;
      const mirror = ipfsHasPeers(home, env) ? ipfsMirrorFor({ packageDir: path.dirname(fetchFile), open, env }) : null;
      try {
        const added = await pinFetchFile(fetchFile, { store, dbFile, node: open, mirror, log: (l) => process.stdout.write(`${l}\n`) });
        if (added.length) process.stdout.write(`${display(dbFile)}: ${added.length} records added\n`);
      } catch (e) {
        if (e instanceof UsageError || fetchFiles.length === 1) throw e;
        process.stderr.write(`${prog}: ${display(fetchFile)}: ${(e as Error).message}\n`);
        failures.push(e);
      }
    }
  } finally {
    if (node)
      await (node as Promise<{ close(): Promise<void> }>).then(
        (n) => n.close(),
        () => undefined,
      );
  }
  if (node && !daemon) {
    process.stderr.write(`${prog}: pinned in ${display(path.dirname(ipfsPaths(home).socket))}, which no daemon serves: run peerpkgs ipfs daemon so that peers can fetch from it\n`);
  }
  if (failures.length) {
    // the status of the first failure: a fetch failure stays a fetch failure (5)
    const first = failures[0] instanceof PeerpkgsError ? failures[0] : null;
    throw new PeerpkgsError(`${failures.length} of ${fetchFiles.length} fetch files could not be pinned (see above)`, first?.exitCode, first?.name);
  }
  return 0;
}

async function pinAllCmd(prog: string, f: Flags): Promise<number> {
  if (f.args.length > 1) throw new UsageError('name at most one tree directory');
  const [{ treeRoot }, { allFetchFiles }] = await Promise.all([import('../mirrors/db.ts'), import('../mirrors/pin.ts')]);
  const start = path.resolve(f.args[0] ?? '.');
  const root = treeRoot(start);
  if (!root) throw new UsageError(`${display(start)} is in no package tree (no pkg/ directory in it or above it)`);
  const files = allFetchFiles(root);
  if (files.length === 0) {
    process.stdout.write(`${display(root)}: no package has a fetch file\n`);
    return 0;
  }
  return pinCmd(prog, f.db, files);
}
