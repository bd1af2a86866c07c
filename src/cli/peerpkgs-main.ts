/**
 * `peerpkgs <command>`, and the p2pkgs-named entry points in bin/ that are
 * links to it (build-packages-ifchange, do-fetch, new-package): argument
 * parsing and what the user sees. The work is done in build/, tree/, fetch/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine, findBase } from '../engine/engine.ts';
import { Log, printable } from '../engine/log.ts';
import { loadRules } from '../engine/plugins.ts';
import { packageRules, isPackageDir } from '../build/rules.ts';
import { TreeError } from '../tree/errors.ts';
import { peerpkgsHome } from '../fetch/home.ts';
import { settings } from '../settings.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
import type { ManifestEntry } from '../archive/manifest.ts';
// The rest is imported by the commands that use it: the archive and fetch
// layers (tar-stream, zlib, http, tls) cost a no-op build tens of ms.
import type { Strategy, Settled } from '../archive/merge.ts';

export const EXIT = {
  ok: 0,
  failed: 1, // a build failed (a failing build's own status is passed on instead)
  usage: 2,
  badTree: 4, // a package directory, dependency list or fetch file is wrong
  fetch: 5, // a source could be had from no source
  notReproducible: 6, // peerpkgs check: two builds differ; seed reproduce: two generations differ
  damaged: 9, // peerpkgs verify: an output or venv is not as its manifest says
  interrupted: 130,
} as const;

class UsageError extends Error {}

const HELP = `usage: peerpkgs COMMAND [ARGS]

  build [-j N] [-k] PKGDIR...    build what changed (also: build-packages-ifchange)
  fetch [-o DIR] FETCHFILE       fetch one package's sources (also: do-fetch)
  new PKGDIR                     make a new package from a template (also: new-package)
  graph PKGDIR...                print the dependency tree
  info PKGDIR...                 pkghash, closure, sources (with their IPFS mirrors)
                                 and output of a package
  check [-j N] PKGDIR...         build again and compare, naming files that differ
  distfiles add FILE...          put local files in the distfile store, by their sha256
  verify [--repair] [VENVDIR...] rehash the output store (or venvs) against the
                                 archives' manifests, naming each damaged file;
                                 --repair restores the store's from the archives
  venv [-o DIR] [-j N] [STRATEGY] PKGDIR...
                                 build, then merge the packages and their run closures
                                 into DIR (default ./venv); DIR/bin/venv-run CMD runs
                                 CMD with DIR's top-level directories over the host's
                                 (also: venv)
  export tarball -o FILE [-j N] [STRATEGY] PKGDIR...
                                 the same merge as one reproducible .tar.gz
  export oci -o PATH [--entrypoint CMD] [--cmd ARG]... [--env K=V]... [--tag NAME[:TAG]]
             [-j N] [STRATEGY] PKGDIR...
                                 the same merge as a reproducible OCI image, a layer
                                 a package: an image layout directory, or an
                                 oci-archive when PATH ends in .tar
  sbom [--format spdx|cyclonedx] [-o FILE] [-j N] PKGDIR...
                                 build, then write an SPDX 2.3 (default) or CycloneDX
                                 1.6 JSON SBOM of the packages and their run and
                                 build closures
  cache add -o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] [-j N] PKGDIR...
                                 build, then copy the packages and their run closures
                                 into a binary cache directory with signed .info files
                                 (also: add-to-package-cache); --ipfs adds DIR to IPFS,
                                 --ipns KEY also publishes it under the IPNS key KEY
  cache publish DIR [--ipns KEY] add a cache directory to IPFS (pinned), print ipfs://CID
                                 (and ipns://NAME)
  ipfs COMMAND                   the IPFS node: daemon, add, cat, get, ls, pin, publish,
                                 resolve (see peerpkgs ipfs --help)
  key generate NAME | list | trust KEY|FILE...
                                 signing keys and the keys trusted for caches
  seed reproduce [-j N] [-o FILE]
                                 rebuild the seed from the tree, then the tree with
                                 that seed, and compare the two generations bit for
                                 bit (see peerpkgs seed --help)
  mirrors import [--db FILE] P2PKGS-MIRRORS-FILE
                                 add a p2pkgs mirrors/ipfs file to the mirror database
  mirrors pin [--db FILE] FETCHFILE...
                                 fetch, add to IPFS, pin and record each source
                                 (also: ipfs-pin-fetch-file)
  mirrors pin-all [--db FILE] [TREEDIR]
                                 the same for every package of the tree
                                 (also: ipfs-pin-all-fetch-files)

  STRATEGY, for a path two packages provide differently (default: an error):
  --prefer-existing (the earlier package's), --prefer-new (the later one's),
  --namespaced (each package's as PATH@PACKAGE). Packages are merged in the
  order named, each after its run-deps.

Environment: PEERPKGS_HOME (default ~/.cache/peerpkgs) holds distfiles,
unpacked outputs and sandbox roots. PKG_MIRROR_DB names the source mirror
database (default: mirrors/ipfs.csv beside the tree's pkg/); PKG_MIRROR_IPFS=no
fetches from the urls only; PKG_IPFS_TIMEOUT (seconds, default 30) gives up
an IPFS transfer that brings no data. Downloads are bounded by
PKG_MAX_DOWNLOAD_SIZE, PKG_DOWNLOAD_BASE_TIME, PKG_DOWNLOAD_MIN_RATE and
PKG_MAX_UNPACK_SIZE (see the README); a variable that does not parse is exit 2.
PKG_SANDBOX_TMP_SIZE (default 4G) bounds a build's /tmp and /dev/shm.
Exit status: 0 ok, 1 a build failed, 2 usage, 4 bad package tree, 5 fetch
failed, 6 not reproducible, 7 not found in IPFS, 8 IPFS unreachable,
9 damaged (verify), 130 interrupted.
`;

const ALIASES: Record<string, string> = {
  'build-packages-ifchange': 'build',
  'do-fetch': 'fetch',
  'new-package': 'new',
  'add-to-package-cache': 'cache-add',
  'ipfs-pin-fetch-file': 'mirrors-pin',
  'ipfs-pin-all-fetch-files': 'mirrors-pin-all',
  venv: 'venv',
};

interface BuildFlags {
  jobs?: number;
  keepGoing: boolean;
  args: string[];
}

function buildFlags(argv: string[]): BuildFlags {
  const f: BuildFlags = { keepGoing: false, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const j = /^-j(\d*)$/.exec(a) ?? (a === '--jobs' ? ['', ''] : null);
    if (j) {
      const v = j[1] || argv[++i];
      f.jobs = Number(v);
      if (!Number.isInteger(f.jobs) || f.jobs < 1) throw new UsageError(`-j needs a positive whole number, not ${JSON.stringify(v ?? '')}`);
    } else if (a === '-k' || a === '--keep-going') f.keepGoing = true;
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
    else f.args.push(a);
  }
  return f;
}

function packageDirs(args: string[]): string[] {
  if (args.length === 0) throw new UsageError('name at least one package directory, e.g. ./pkg/make');
  return args.map((a) => {
    const dir = path.resolve(a);
    if (!isPackageDir(dir)) throw new TreeError(`${a}: not a package directory (no build script or .pkg.tar.gz.do)`);
    return dir;
  });
}

async function engineFor(flags: BuildFlags): Promise<Engine> {
  return new Engine({
    jobs: flags.jobs,
    keepGoing: flags.keepGoing,
    rules: [...packageRules, ...(await loadRules())],
    startDir: process.cwd(),
    log: new Log(process.cwd(), findBase(process.cwd())),
  });
}

async function withEngine(flags: BuildFlags, f: (e: Engine) => Promise<number>): Promise<number> {
  const engine = await engineFor(flags);
  const stop = () => void engine.interrupt().finally(() => process.exit(EXIT.interrupted));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.once('SIGHUP', stop); // a closed terminal: its temporaries must go too
  try {
    const rc = await f(engine);
    engine.log.summary(engine.failures);
    return rc;
  } finally {
    await engine.close();
  }
}

async function build(argv: string[]): Promise<number> {
  const flags = buildFlags(argv);
  const dirs = packageDirs(flags.args);
  return withEngine(flags, (e) => e.build(dirs.map((d) => path.join(d, '.pkg.tar.gz')), false));
}

async function fetchCmd(argv: string[]): Promise<number> {
  let out: string | null = null;
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-o') {
      out = argv[++i] ?? null;
      if (!out) throw new UsageError('-o needs a directory');
    } else args.push(argv[i]!);
  }
  if (args.length !== 1) throw new UsageError('name one fetch file');
  if (out && fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new UsageError(`-o ${out}: not a directory`);
  const { readFetch } = await import('../tree/package.ts');
  const { DistfileStore } = await import('../fetch/store.ts');
  const { fetchAll } = await import('../fetch/fetchfile.ts');
  const { fetchWithMirror } = await import('../mirrors/fetching.ts');
  const fetchFile = path.resolve(args[0]!);
  const entries = readFetch(fetchFile);
  const home = peerpkgsHome();
  const store = new DistfileStore(home);
  const got = await fetchWithMirror(path.dirname(fetchFile), home, (sourcesFor) => fetchAll(entries, { store, sourcesFor }));
  // like mkdir -p, so that `do-fetch -o DIR` works on a fresh DIR
  if (out) fs.mkdirSync(out, { recursive: true });
  for (const [file, stored] of got) {
    if (out) {
      // a copy, not a link: what is made of it must not share the store's inode
      const dest = path.join(out, file);
      withTemporaryFile(path.resolve(dest), (tmp) => {
        fs.copyFileSync(stored, tmp, fs.constants.COPYFILE_FICLONE);
        fs.chmodSync(tmp, 0o644);
        fs.renameSync(tmp, dest);
      });
    }
  }
  return EXIT.ok;
}

const BUILD_TEMPLATE = `#!/bin/sh
# Runs in the sandbox, in /home/build (the fetched sources and files/ are
# here), with the build closure as its root. Install into $DESTDIR.
set -eu
mkdir -p "$DESTDIR/bin"
`;

function newPackage(argv: string[]): number {
  if (argv.length !== 1) throw new UsageError('name the new package directory, e.g. ./pkg/hello');
  const dir = path.resolve(argv[0]!);
  if (fs.existsSync(dir)) throw new UsageError(`${argv[0]} already exists`);
  const seed = path.join(path.dirname(dir), 'seed');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'build'), BUILD_TEMPLATE, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'build-deps'), isPackageDir(seed) ? '../seed\n' : '');
  fs.writeFileSync(path.join(dir, 'run-deps'), '');
  fs.writeFileSync(
    path.join(dir, 'fetch'),
    '# One record a source file, records separated by blank lines\n# (peerpkgs distfiles add FILE prints its sha256 and size):\n# url: https://example.org/hello-1.0.tar.gz\n# sha256: <64 hex digits>\n# size: <bytes>\n',
  );
  process.stdout.write(`${argv[0]}: edit build, build-deps, run-deps and fetch, then: bin/build-packages-ifchange ${argv[0]}\n`);
  return EXIT.ok;
}

function rel(p: string): string {
  return path.relative(process.cwd(), p) || '.';
}

async function graphCmd(argv: string[]): Promise<number> {
  const { PackageGraph } = await import('../tree/pkghash.ts');
  const g = new PackageGraph();
  const lines: string[] = [];
  const walk = (dir: string, depth: number, kind: string, seen: Set<string>) => {
    const pkg = g.load(dir);
    const again = seen.has(pkg.dir);
    lines.push(`${'  '.repeat(depth)}${kind}${rel(pkg.dir)}${again ? ' (see above)' : ''}`);
    if (again) return;
    seen.add(pkg.dir);
    for (const d of pkg.buildDeps) walk(d, depth + 1, 'build: ', seen);
    for (const d of pkg.runDeps) walk(d, depth + 1, 'run: ', seen);
  };
  for (const dir of packageDirs(argv)) {
    g.pkghash(dir); // refuses cycles, naming them
    walk(dir, 0, '', new Set());
  }
  process.stdout.write(lines.map((l) => printable(l)).join('\n') + '\n');
  return EXIT.ok;
}

async function infoCmd(argv: string[]): Promise<number> {
  const { PackageGraph } = await import('../tree/pkghash.ts');
  const { DistfileStore } = await import('../fetch/store.ts');
  const { recordedSha256, builtFromPkghash } = await import('../build/outputs.ts');
  const { MirrorDb, mirrorDbPath } = await import('../mirrors/db.ts');
  const g = new PackageGraph();
  const store = new DistfileStore(peerpkgsHome());
  const out: string[] = [];
  for (const dir of packageDirs(argv)) {
    const pkg = g.load(dir);
    out.push(`package:   ${rel(pkg.dir)}`);
    out.push(`pkghash:   ${g.pkghash(dir)}`);
    out.push(`closure:   ${g.closure(dir).map(rel).join(' ') || '(none)'}`);
    out.push(`bclosure:  ${g.bclosure(dir).map(rel).join(' ') || '(none)'}`);
    const dbFile = pkg.fetch.length ? mirrorDbPath(dir) : null;
    const mirrors = dbFile ? MirrorDb.load(dbFile) : null;
    for (const f of pkg.fetch) {
      out.push(`source:    ${f.file} ${f.sha256} ${store.has(f.sha256) ? '(in store)' : '(not fetched)'}`);
      for (const r of mirrors?.lookup(f.sha256) ?? []) out.push(`             ipfs://${r.cid}`);
      for (const u of f.urls) out.push(`             ${u}`);
    }
    const archive = path.join(dir, '.pkg.tar.gz');
    const st = fs.statSync(archive, { throwIfNoEntry: false });
    const sha = st ? recordedSha256(archive) : null;
    out.push(st ? `output:    ${rel(archive)} ${st.size} bytes${sha ? `, sha256 ${sha}` : ''}` : 'output:    not built');
    const from = st ? builtFromPkghash(archive) : '';
    const fix = `build-packages-ifchange ${rel(pkg.dir)} rebuilds it`;
    if (from === null) out.push(`             out of date: no record of the build that made it (state lost, or the file replaced); ${fix}`);
    else if (from && from !== g.pkghash(dir)) out.push(`             out of date: built from pkghash ${from}, not the current one; ${fix}`);
    out.push('');
  }
  process.stdout.write(out.map((l) => printable(l)).join('\n'));
  return EXIT.ok;
}

/** What differs between two manifests, one line a path. */
export function manifestDiff(a: ManifestEntry[], b: ManifestEntry[]): string[] {
  const key = (e: ManifestEntry) => `${e.type} ${e.mode.toString(8)} ${e.size} ${e.sha256 ?? e.target ?? ''}`;
  const am = new Map(a.map((e) => [e.path, e]));
  const bm = new Map(b.map((e) => [e.path, e]));
  const diffs: string[] = [];
  for (const p of [...new Set([...am.keys(), ...bm.keys()])].sort()) {
    const x = am.get(p);
    const y = bm.get(p);
    if (!x) diffs.push(`only in the second build: ${p}`);
    else if (!y) diffs.push(`only in the first build: ${p}`);
    else if (key(x) !== key(y)) diffs.push(`differs: ${p} (${key(x)} / ${key(y)})`);
  }
  return diffs;
}

async function check(argv: string[]): Promise<number> {
  const flags = buildFlags(argv);
  const dirs = packageDirs(flags.args);
  const { readManifest } = await import('../archive/manifest.ts');
  const { recordedSha256 } = await import('../build/outputs.ts');
  const { checkOutput } = await import('../build/verify.ts');
  const outputsDir = path.join(peerpkgsHome(), 'outputs');
  return withEngine(flags, async (engine) => {
    const targets = dirs.map((d) => path.join(d, '.pkg.tar.gz'));
    const rc = await engine.build(targets, false);
    if (rc !== 0) return rc;
    const first = await Promise.all(targets.map((t) => readManifest(t)));
    const firstSha = targets.map((t) => recordedSha256(t));
    const rc2 = await engine.build(targets, true);
    if (rc2 !== 0) return rc2;
    let bad = 0;
    let damaged = 0;
    for (let i = 0; i < targets.length; i++) {
      const sha = recordedSha256(targets[i]!);
      const diffs = manifestDiff(first[i]!, await readManifest(targets[i]!));
      if (sha && sha === firstSha[i] && diffs.length === 0) {
        // what venvs, roots and exports are made from is the unpacked copy, not the archive
        const stored = fs.existsSync(path.join(outputsDir, sha)) ? await checkOutput(outputsDir, sha) : null;
        const harm = stored?.damage.length ? `, but its unpacked copy ${stored.dir} is damaged (${stored.damage.length} paths: peerpkgs verify names them, verify --repair restores them)` : '';
        if (harm) damaged++;
        process.stdout.write(`${rel(dirs[i]!)}: reproducible, output sha256 ${sha}${harm}\n`);
      } else {
        bad++;
        process.stdout.write(`${rel(dirs[i]!)}: NOT reproducible: ${firstSha[i]} then ${sha}\n`);
        for (const d of diffs.length ? diffs : ['(the files are the same; the archives differ)']) process.stdout.write(`  ${d}\n`);
      }
    }
    return bad ? EXIT.notReproducible : damaged ? EXIT.damaged : EXIT.ok;
  });
}

/** Build the packages (as `build` does), then publish them. */
async function cacheAdd(argv: string[]): Promise<number> {
  const rest: string[] = [];
  const passOn: string[] = [];
  let jobs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o' || a === '--sign-key' || a === '--ipns') passOn.push(a, argv[++i] ?? '');
    else if (a === '-j') jobs = ['-j', argv[++i] ?? ''];
    else if (/^-j\d+$/.test(a)) jobs = [a];
    else if (a.startsWith('-')) passOn.push(a);
    else rest.push(a);
  }
  if (rest.length) {
    const rc = await build([...jobs, ...rest]);
    if (rc !== 0) return rc;
  }
  const { addToPackageCache } = await import('./cache-commands.ts');
  return addToPackageCache([...passOn, ...rest]);
}

async function distfiles(argv: string[]): Promise<number> {
  if (argv[0] !== 'add' || argv.length < 2) throw new UsageError('usage: peerpkgs distfiles add FILE...');
  const { DistfileStore } = await import('../fetch/store.ts');
  const store = new DistfileStore(peerpkgsHome());
  // each file's fetch record, but for its urls: what to paste into pkg/NAME/fetch
  const records: string[] = [];
  for (const f of argv.slice(1)) {
    const sha = await store.add(f);
    records.push(`# ${path.basename(f)}\nsha256: ${sha}\nsize: ${fs.statSync(store.path(sha)).size}\n`);
  }
  process.stdout.write(records.join('\n'));
  return EXIT.ok;
}

/** -o, the strategy flags, and the build's flags in the rest. */
function exportFlags(argv: string[]): BuildFlags & { out: string | null; strategy: Strategy } {
  let out: string | null = null;
  let strategy: Strategy = 'error';
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      out = argv[++i] ?? null;
      if (!out) throw new UsageError('-o needs a path');
    } else if (a === '--prefer-existing' || a === '--prefer-new' || a === '--namespaced') {
      strategy = a.slice(2) as Strategy;
    } else rest.push(a);
  }
  return { ...buildFlags(rest), out, strategy };
}

function tellSettled(name: string, settled: Settled[]): void {
  for (const c of settled) process.stderr.write(`${name}: ${c.path}: ${c.packages[0]} and ${c.packages[1]} differ; kept ${c.kept}\n`);
}

async function venvCmd(argv: string[]): Promise<number> {
  const flags = exportFlags(argv);
  const dirs = packageDirs(flags.args);
  return withEngine(flags, async (engine) => {
    const rc = await engine.build(dirs.map((d) => path.join(d, '.pkg.tar.gz')), false);
    if (rc !== 0) return rc;
    // imported here: no other command should pay for loading them
    const [{ closureOutputs }, { makeVenv }] = await Promise.all([import('../export/closure.ts'), import('../export/venv.ts')]);
    const packages = await closureOutputs(dirs, peerpkgsHome());
    const out = flags.out ?? 'venv';
    const onWait = (pid: number) => void process.stderr.write(`venv: waiting for ${out}: process ${pid} is writing it\n`);
    const v = await makeVenv({ dir: out, packages, strategy: flags.strategy, onWait });
    tellSettled('venv', v.settled);
    return EXIT.ok;
  });
}

async function exportCmd(argv: string[]): Promise<number> {
  if (argv[0] === 'oci') return ociCmd(argv.slice(1));
  if (argv[0] !== 'tarball') throw new UsageError('usage: peerpkgs export tarball|oci -o PATH [-j N] [STRATEGY] PKGDIR...');
  const flags = exportFlags(argv.slice(1));
  if (!flags.out) throw new UsageError('export tarball: name the file to write with -o FILE');
  const out = flags.out;
  const dirs = packageDirs(flags.args);
  return withEngine(flags, async (engine) => {
    const rc = await engine.build(dirs.map((d) => path.join(d, '.pkg.tar.gz')), false);
    if (rc !== 0) return rc;
    const [{ closureOutputs }, { exportTarball }] = await Promise.all([import('../export/closure.ts'), import('../export/tarball.ts')]);
    const packages = await closureOutputs(dirs, peerpkgsHome());
    const t = await exportTarball({ out, packages, strategy: flags.strategy });
    tellSettled('export', t.settled);
    process.stdout.write(`${t.compressedSha256}  ${out}\n`);
    return EXIT.ok;
  });
}

/** Takes the value of each `--NAME VALUE` of `names` out of `argv`, in order. */
function takeOptions(argv: string[], names: string[]): { values: Map<string, string[]>; rest: string[] } {
  const values = new Map<string, string[]>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!names.includes(a)) {
      rest.push(a);
      continue;
    }
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`${a} needs a value`);
    values.set(a, [...(values.get(a) ?? []), v]);
  }
  return { values, rest };
}

async function ociCmd(argv: string[]): Promise<number> {
  const { values, rest } = takeOptions(argv, ['--entrypoint', '--cmd', '--env', '--tag']);
  const flags = exportFlags(rest);
  if (!flags.out) throw new UsageError('export oci: name the image layout directory or FILE.tar to write with -o PATH');
  for (const once of ['--entrypoint', '--tag']) if ((values.get(once)?.length ?? 0) > 1) throw new UsageError(`${once} may be given once`);
  const out = flags.out;
  const tag = values.get('--tag')?.[0];
  const env = values.get('--env');
  const [{ closureOutputs }, { exportOci, parseTag, imageEnv }] = await Promise.all([import('../export/closure.ts'), import('../export/oci.ts')]);
  try {
    if (tag !== undefined) parseTag(tag);
    imageEnv(env);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const dirs = packageDirs(flags.args);
  return withEngine(flags, async (engine) => {
    const rc = await engine.build(dirs.map((d) => path.join(d, '.pkg.tar.gz')), false);
    if (rc !== 0) return rc;
    const packages = await closureOutputs(dirs, peerpkgsHome());
    const img = await exportOci({ out, packages, strategy: flags.strategy, entrypoint: values.get('--entrypoint'), cmd: values.get('--cmd'), env, tag });
    tellSettled('export', img.settled);
    process.stdout.write(`${img.digest}  ${out}\n`);
    return EXIT.ok;
  });
}

async function sbomCmd(argv: string[]): Promise<number> {
  const { values, rest } = takeOptions(argv, ['--format', '-o']);
  const flags = buildFlags(rest);
  const format = values.get('--format')?.at(-1) ?? 'spdx';
  if (format !== 'spdx' && format !== 'cyclonedx') throw new UsageError(`--format ${format}: spdx or cyclonedx`);
  const out = values.get('-o')?.at(-1);
  const dirs = packageDirs(flags.args);
  const { sbom, fullClosure, documentDate } = await import('../export/sbom.ts');
  documentDate(process.env); // a bad SOURCE_DATE_EPOCH is said before any build
  const { PackageGraph } = await import('../tree/pkghash.ts');
  // every package the document lists has its output's sha256 in it
  const all = fullClosure(dirs, new PackageGraph());
  return withEngine(flags, async (engine) => {
    const rc = await engine.build(all.map((d) => path.join(d, '.pkg.tar.gz')), false);
    if (rc !== 0) return rc;
    const text = sbom(dirs, format);
    if (out === undefined) {
      process.stdout.write(text);
      return EXIT.ok;
    }
    const tmp = `${out}.tmp-${process.pid}`;
    try {
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, out);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    return EXIT.ok;
  });
}

async function main(argv: string[]): Promise<number> {
  const name = path.basename(argv[0] ?? 'peerpkgs');
  let cmd: string | undefined;
  let args: string[];
  if (ALIASES[name]) {
    cmd = ALIASES[name];
    args = argv.slice(1);
  } else {
    cmd = argv[1];
    args = argv.slice(2);
  }
  if (cmd === 'seed' && (args.includes('--help') || args.includes('-h'))) {
    const { SEED_HELP } = await import('./seed-commands.ts');
    process.stdout.write(SEED_HELP);
    return EXIT.ok;
  }
  if (cmd === 'verify' && (args.includes('--help') || args.includes('-h'))) {
    const { VERIFY_HELP } = await import('./verify-command.ts');
    process.stdout.write(VERIFY_HELP);
    return EXIT.ok;
  }
  // the mirror commands have their own help
  if (cmd === 'mirrors' || cmd === 'mirrors-pin' || cmd === 'mirrors-pin-all') {
    const { mirrorsCommand } = await import('./mirror-commands.ts');
    return cmd === 'mirrors' ? mirrorsCommand(name, args[0], args.slice(1)) : mirrorsCommand(name, cmd.slice(8), args);
  }
  // these parse their own --help
  if (cmd === 'ipfs') {
    const { ipfsCommand } = await import('./ipfs-commands.ts');
    return ipfsCommand(args);
  }
  if (cmd === 'cache' && args[0] === 'publish') {
    const { cachePublish } = await import('./ipfs-commands.ts');
    return cachePublish(args.slice(1));
  }
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help' || args.includes('--help') || args.includes('-h')) {
    process.stdout.write(HELP);
    return cmd ? EXIT.ok : EXIT.usage;
  }
  switch (cmd) {
    case 'build':
      return build(args);
    case 'fetch':
      return fetchCmd(args);
    case 'new':
      return newPackage(args);
    case 'graph':
      return graphCmd(args);
    case 'info':
      return infoCmd(args);
    case 'check':
      return check(args);
    case 'distfiles':
      return distfiles(args);
    case 'verify': {
      const { verifyCommand } = await import('./verify-command.ts');
      const damaged = await verifyCommand(args, peerpkgsHome(), (s) => void process.stdout.write(s), (m) => new UsageError(m));
      return damaged ? EXIT.damaged : EXIT.ok;
    }
    case 'cache':
      if (args[0] !== 'add') throw new UsageError('usage: peerpkgs cache add -o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] PKGDIR... | cache publish DIR [--ipns KEY]');
      return cacheAdd(args.slice(1));
    case 'cache-add':
      return cacheAdd(args);
    case 'key': {
      const { key } = await import('./cache-commands.ts');
      return key(args);
    }
    case 'venv':
      return venvCmd(args);
    case 'export':
      return exportCmd(args);
    case 'sbom':
      return sbomCmd(args);
    case 'seed': {
      const { seedCommand, SeedUsageError } = await import('./seed-commands.ts');
      try {
        return await seedCommand(args);
      } catch (e) {
        if (e instanceof SeedUsageError) throw new UsageError(e.message);
        throw e;
      }
    }
    default:
      throw new UsageError(`unknown command ${cmd}`);
  }
}

export async function run(argv: string[]): Promise<void> {
  const name = path.basename(argv[0] ?? 'peerpkgs');
  // the .do files a build runs (a seed's do-fetch) start in other directories
  if (process.env.PKG_MIRROR_DB) process.env.PKG_MIRROR_DB = path.resolve(process.env.PKG_MIRROR_DB);
  try {
    settings(); // every variable checked before any work, whichever the command reads
    process.exitCode = await main(argv);
  } catch (e) {
    const msg = printable((e as Error).message, true);
    const exitCode = (e as { exitCode?: unknown }).exitCode;
    if (e instanceof UsageError) {
      process.stderr.write(`${name}: ${msg} (see ${name} --help)\n`);
      process.exitCode = EXIT.usage;
    } else if (e instanceof TreeError) {
      process.stderr.write(`${name}: ${msg}\n`);
      process.exitCode = EXIT.badTree;
    } else if ((e as Error).name === 'FetchError') {
      process.stderr.write(`${name}: ${msg}\n`);
      process.exitCode = EXIT.fetch;
    } else if (typeof exitCode === 'number') {
      // bad input that says its own status: a variable (settings.ts), a trust list
      process.stderr.write(`${name}: ${msg}\n`);
      process.exitCode = exitCode;
    } else {
      process.stderr.write(`${name}: ${msg}\n`);
      process.exitCode = EXIT.failed;
    }
  }
}
