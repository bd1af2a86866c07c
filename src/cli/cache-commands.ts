/**
 * `bin/add-to-package-cache` and `peerpkgs key`: argument parsing and what
 * the user sees. Publishing is cache/publish.ts, keys are cache/keys.ts.
 *
 * Both return an exit status (0 ok, 1 failed, 2 usage) and print their
 * own errors; errors of the package tree (TreeError) are left to the
 * caller, which maps them to their own status.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { recordedSha256 } from '../store/outputs.ts';
import { peerpkgsHome } from '../home.ts';
import { PackageGraph } from '../tree/pkghash.ts';
import { display, TreeError } from '../tree/errors.ts';
import { PeerpkgsError } from '../errors.ts';
import { UsageError, parse, report, stdio, type CommandIO } from './frame.ts';
import { addToCache, publishable } from '../cache/publish.ts';
import type { CatalogFields } from '../cache/catalog.ts';
import { parseInfo } from '../cache/info.ts';
import { generateKey, listSigningKeys, loadSigningKey, loadTrustedKeys, trustKeys, trustedKeysFile, keysDir, type SigningKey } from '../cache/keys.ts';

export const ADD_HELP = `usage: add-to-package-cache -o DIR [--sign-key NAME] [--expires Nd] [--ipfs] [--ipns KEY] PKGDIR...

Copies the built outputs of each package and of its run closure into the
cache directory DIR, as <pkghash>.tar.gz with a <pkghash>.info and a
<pkghash>.provenance beside it (signed with the key NAME from
$PEERPKGS_HOME/keys if given), skipping entries already there, then
DIR/catalog, every entry of DIR by name, signed with the same key, its
generation one more than the last, expiring in 30 days (--expires Nd: in N
days). Serve DIR over HTTP, or use it as file://DIR, in PKG_CACHE_URL. With --ipfs, DIR is then added to IPFS (pinned) and
ipfs://CID printed; with --ipns KEY also published under the IPNS key KEY
(made on first use) and ipns://NAME printed: hand either to others for
their PKG_CACHE_URL.
`;

export const KEY_HELP = `usage: peerpkgs key generate NAME     make a signing key in $PEERPKGS_HOME/keys
       peerpkgs key list              signing keys and trusted keys
       peerpkgs key trust KEY|FILE... trust public keys (ed25519:... or .pub files)

A key is not trusted because it was made here: trust is listed in
$PEERPKGS_HOME/trusted-keys and PKG_TRUSTED_KEYS.
`;

/** `add-to-package-cache -o DIR [--sign-key NAME] PKGDIR...` */
export async function addToPackageCache(argv: string[], io: CommandIO = stdio): Promise<number> {
  const prog = 'add-to-package-cache';
  try {
    const { values, positionals: args } = parse(argv, {
      output: { type: 'string', short: 'o' },
      'sign-key': { type: 'string' },
      ipfs: { type: 'boolean' },
      ipns: { type: 'string' },
      expires: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.out(ADD_HELP);
      return 0;
    }
    for (const [flag, v] of [
      ['-o', values.output],
      ['--sign-key', values['sign-key']],
      ['--ipns', values.ipns],
    ] as const)
      if (v === '') throw new UsageError(`${flag} needs a value`);
    const { output: dir, 'sign-key': signKeyName, ipfs: toIpfs, ipns: ipnsKey } = values;
    if (!dir) throw new UsageError('name the cache directory with -o DIR');
    if (args.length === 0) throw new UsageError('name at least one package directory, e.g. ./pkg/make');
    const expiresDays = values.expires === undefined ? undefined : days(values.expires);
    const home = peerpkgsHome(io.env);
    const key: SigningKey | undefined = signKeyName ? loadSigningKey(home, signKeyName) : undefined;

    const { packages, problems } = publishable(new PackageGraph(), args, recordedSha256);
    if (problems.length) {
      for (const p of problems) io.err(`${prog}: ${p}\n`);
      return 1;
    }
    const names = new Map(packages.map((p) => [p.pkghash, display(path.dirname(p.archive))]));
    const onWait = (pid: number) => io.err(`${prog}: waiting for ${dir}: process ${pid} is writing to it\n`);
    let status = 0;
    await addToCache({ dir: path.resolve(dir), packages, signKey: key, onWait, expiresDays }, async (r) => {
      for (const h of r.added) io.out(`added ${names.get(h)} ${h}\n`);
      for (const h of r.added) {
        const origin = r.provenance.get(h);
        if (origin === 'carried') io.out(`provenance of ${names.get(h)}: carried along from the cache it was substituted from, signed by its builder\n`);
        if (origin === null) io.out(`no provenance for ${names.get(h)}: no record of its build here (built by its own .do or an older peerpkgs, or substituted without one)\n`);
      }
      // what is there, which another run may have signed with another key
      for (const h of r.skipped) io.out(`already there ${names.get(h)} ${h} (${signer(path.join(dir, `${h}.info`))})\n`);
      const signed = r.added.length === 0 ? '' : key ? `, signed by ${key.id} (${key.name})` : ', unsigned';
      io.out(`${r.added.length} added${signed}; ${r.skipped.length} already in ${dir}\n`);
      io.out(catalogLine(r.catalog));
      if (toIpfs || ipnsKey) status = await toIpfsOrReport(prog, dir, ipnsKey, undefined, io);
    });
    return status;
  } catch (e) {
    return failed(prog, e, io);
  }
}

/** `peerpkgs cache publish DIR`: the catalog written anew, then DIR added to IPFS (pinned), and named under an IPNS key if asked. */
export async function cachePublish(argv: string[], io: CommandIO = stdio): Promise<number> {
  const prog = 'peerpkgs cache publish';
  try {
    const { values, positionals } = parse(argv, {
      'sign-key': { type: 'string' },
      expires: { type: 'string' },
      ipns: { type: 'string' },
      'cid-version': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    // what it does is peerpkgs-main.ts's help of `cache publish`, which answers --help before this runs
    if (values.help) {
      io.out('usage: peerpkgs cache publish DIR [--sign-key NAME] [--expires Nd] [--ipns KEY] [--cid-version 0|1]\n');
      return 0;
    }
    for (const [flag, v] of [
      ['--sign-key', values['sign-key']],
      ['--ipns', values.ipns],
    ] as const)
      if (v === '') throw new UsageError(`${flag} needs a value`);
    if (positionals.length !== 1) throw new UsageError('name one cache directory');
    const dir = positionals[0]!;
    const cv = values['cid-version'];
    if (cv !== undefined && cv !== '0' && cv !== '1') throw new UsageError('--cid-version must be 0 or 1');
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new PeerpkgsError(`${dir}: not a directory`);
    const expiresDays = values.expires === undefined ? undefined : days(values.expires);
    const home = peerpkgsHome(io.env);
    const key = values['sign-key'] ? loadSigningKey(home, values['sign-key']) : undefined;
    const onWait = (pid: number) => io.err(`${prog}: waiting for ${dir}: process ${pid} is writing to it\n`);
    let status = 0;
    await addToCache({ dir: path.resolve(dir), packages: [], signKey: key, onWait, expiresDays }, async (r) => {
      io.out(catalogLine(r.catalog));
      status = await toIpfsOrReport(prog, dir, values.ipns, cv === undefined ? undefined : (Number(cv) as 0 | 1), io);
    });
    return status;
  } catch (e) {
    return failed(prog, e, io);
  }
}

function catalogLine(c: CatalogFields): string {
  return `catalog: generation ${c.generation}, ${c.entries.length} entries, expires ${c.expires}\n`;
}

/** DIR added to IPFS (and named under `ipnsKey`), its URLs printed; an IPFS failure is reported here, as the command's own exit status. */
async function toIpfsOrReport(prog: string, dir: string, ipnsKey: string | undefined, cidVersion: 0 | 1 | undefined, io: CommandIO): Promise<number> {
  // loaded here: only a publish to IPFS pays for the node
  const { publishCacheDir } = await import('./ipfs-commands.ts');
  try {
    await publishCacheDir(dir, ipnsKey, cidVersion, io);
    return 0;
  } catch (e) {
    if (!(e instanceof PeerpkgsError)) throw e;
    return report(prog, e, io);
  }
}

/** `peerpkgs key generate|list|trust` */
export async function key(argv: string[], io: CommandIO = stdio): Promise<number> {
  const prog = 'peerpkgs key';
  const [sub, ...args] = argv;
  try {
    const home = peerpkgsHome(io.env);
    switch (sub) {
      case 'generate': {
        if (args.length !== 1) throw new UsageError('name the key: peerpkgs key generate NAME');
        const k = generateKey(home, args[0]!);
        const pub = path.join(keysDir(home), `${k.name}.pub`);
        io.out(
          `made key ${k.name}: ${k.id}\n` +
            `  private: ${path.join(keysDir(home), `${k.name}.key`)} (keep it secret)\n` +
            `  public:  ${pub}\n` +
            `it is not trusted yet, not even here; to trust it: peerpkgs key trust ${pub}\n` +
            `sign with it: add-to-package-cache --sign-key ${k.name} -o DIR ./pkg/NAME\n`,
        );
        return 0;
      }
      case 'list': {
        if (args.length) throw new UsageError('peerpkgs key list takes no arguments');
        const names = listSigningKeys(home);
        io.out(names.length ? 'signing keys:\n' : 'signing keys: none\n');
        for (const n of names) {
          const k = loadSigningKey(home, n);
          io.out(`  ${k.name} ${k.id}\n`);
        }
        const trusted = loadTrustedKeys(home, io.env);
        io.out(trusted.size ? 'trusted keys:\n' : `trusted keys: none (${trustedKeysFile(home)}, PKG_TRUSTED_KEYS)\n`);
        for (const t of trusted.list()) io.out(`  ${t.id}${t.comment ? ` ${t.comment}` : ''} (${t.from})\n`);
        return 0;
      }
      case 'trust': {
        if (args.length === 0) throw new UsageError('name public keys (ed25519:...) or .pub files: peerpkgs key trust KEY|FILE...');
        for (const k of trustKeys(home, args)) io.out(`${k.already ? 'already trusted' : 'trusted'}: ${k.id}${k.comment ? ` ${k.comment}` : ''}\n`);
        return 0;
      }
      case undefined:
      case '-h':
      case '--help':
        io.out(KEY_HELP);
        return sub ? 0 : 2;
      default:
        throw new UsageError(`unknown subcommand ${sub}`);
    }
  } catch (e) {
    // each subcommand has its own --help (peerpkgs-main.ts)
    if (e instanceof UsageError && (sub === 'generate' || sub === 'list' || sub === 'trust')) e.command ??= `${prog} ${sub}`;
    return failed(prog, e, io);
  }
}

/** `30d`: a number of days. */
function days(v: string): number {
  const m = /^(\d+)d$/.exec(v);
  if (!m) throw new UsageError(`--expires takes a number of days, as 30d, not ${JSON.stringify(v)}`);
  return Number(m[1]);
}

/** Who signed the .info `file`, as the user is told. */
function signer(file: string): string {
  try {
    const keyId = parseInfo(fs.readFileSync(file)).keyId;
    return keyId === null ? 'unsigned' : `signed by ${keyId}`;
  } catch (e) {
    return `unreadable: ${(e as Error).message}`;
  }
}

function failed(prog: string, e: unknown, io: CommandIO): number {
  // a bad tree is left to the caller; what is neither ours nor a system call's is a bug
  if (e instanceof TreeError) throw e;
  if (!(e instanceof PeerpkgsError) && !((e as NodeJS.ErrnoException)?.code && 'syscall' in (e as object))) throw e;
  return report(prog, e, io);
}
