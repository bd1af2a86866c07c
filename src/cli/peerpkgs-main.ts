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
import { EXIT, UsageError, parse, parseJobs, wantsHelp, report, onSignals, type Options } from './frame.ts';
import { peerpkgsHome } from '../fetch/home.ts';
import { settings } from '../settings.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
// The rest is imported by the commands that use it: the archive and fetch
// layers (tar-stream, zlib, http, tls) cost a no-op build tens of ms.
import type { Strategy, Settled } from '../export/merge.ts';

const BUILD_OPTIONS = {
  jobs: { type: 'string', short: 'j' },
  'keep-going': { type: 'boolean', short: 'k' },
} as const;

const STRATEGIES = ['prefer-existing', 'prefer-new', 'namespaced'] as const;

const EXPORT_OPTIONS = {
  ...BUILD_OPTIONS,
  output: { type: 'string', short: 'o' },
  ...Object.fromEntries(STRATEGIES.map((s) => [s, { type: 'boolean' }])),
} as const;

interface BuildFlags {
  jobs?: number;
  keepGoing: boolean;
  args: string[];
}

function buildFlags(argv: string[]): BuildFlags {
  const { values, positionals } = parse(argv, BUILD_OPTIONS);
  return { jobs: parseJobs(values.jobs), keepGoing: values['keep-going'] ?? false, args: positionals };
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
  onSignals(() => engine.interrupt());
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
  const { values, positionals: args } = parse(argv, { output: { type: 'string', short: 'o' } });
  const out = values.output ?? null;
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

async function newPackage(argv: string[]): Promise<number> {
  if (argv.length !== 1) throw new UsageError('name the new package directory, e.g. ./pkg/hello');
  const dir = path.resolve(argv[0]!);
  if (fs.existsSync(dir)) throw new UsageError(`${argv[0]} already exists`);
  const { writePackageTemplate } = await import('../tree/template.ts');
  writePackageTemplate(dir, isPackageDir(path.join(path.dirname(dir), 'seed')));
  process.stdout.write(`${argv[0]}: edit build, build-deps, run-deps and fetch, then: bin/build-packages-ifchange ${argv[0]}\n`);
  return EXIT.ok;
}

function rel(p: string): string {
  return path.relative(process.cwd(), p) || '.';
}

async function graphCmd(argv: string[]): Promise<number> {
  const [{ PackageGraph }, { dependencyTree }] = await Promise.all([import('../tree/pkghash.ts'), import('../tree/walk.ts')]);
  const g = new PackageGraph();
  const lines: string[] = [];
  for (const dir of packageDirs(parse(argv, {}).positionals)) {
    for (const l of dependencyTree(g, dir)) lines.push(`${'  '.repeat(l.depth)}${l.kind && `${l.kind}: `}${rel(l.dir)}${l.again ? ' (see above)' : ''}`);
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
  for (const dir of packageDirs(parse(argv, {}).positionals)) {
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

async function check(argv: string[]): Promise<number> {
  const flags = buildFlags(argv);
  const dirs = packageDirs(flags.args);
  const { rebuildAndCompare, reproduced } = await import('../build/reproducible.ts');
  const outputsDir = path.join(peerpkgsHome(), 'outputs');
  const targets = dirs.map((d) => path.join(d, '.pkg.tar.gz'));
  return withEngine(flags, async (engine) => {
    const results = await rebuildAndCompare(targets, outputsDir, (again) => engine.build(targets, again));
    if (typeof results === 'number') return results;
    for (const r of results) {
      const pkg = rel(path.dirname(r.target));
      if (reproduced(r)) {
        const harm = r.damaged ? `, but its unpacked copy ${r.damaged.dir} is damaged (${r.damaged.damage.length} paths: peerpkgs verify names them, verify --repair restores them)` : '';
        process.stdout.write(`${pkg}: reproducible, output sha256 ${r.second}${harm}\n`);
      } else {
        process.stdout.write(`${pkg}: NOT reproducible: ${r.first} then ${r.second}\n`);
        for (const d of r.diffs.length ? r.diffs : ['(the files are the same; the archives differ)']) process.stdout.write(`  ${d}\n`);
      }
    }
    return results.some((r) => !reproduced(r)) ? EXIT.notReproducible : results.some((r) => r.damaged) ? EXIT.damaged : EXIT.ok;
  });
}

/** Build the packages (as `build` does), then publish them. */
async function cacheAdd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { jobs: BUILD_OPTIONS.jobs, output: { type: 'string', short: 'o' }, 'sign-key': { type: 'string' }, ipfs: { type: 'boolean' }, ipns: { type: 'string' } });
  if (positionals.length) {
    const rc = await withEngine({ jobs: parseJobs(values.jobs), keepGoing: false, args: [] }, (e) => e.build(packageDirs(positionals).map((d) => path.join(d, '.pkg.tar.gz')), false));
    if (rc !== 0) return rc;
  }
  const { addToPackageCache } = await import('./cache-commands.ts');
  const passOn = [
    ...(values.output !== undefined ? ['-o', values.output] : []),
    ...(values['sign-key'] !== undefined ? ['--sign-key', values['sign-key']] : []),
    ...(values.ipfs ? ['--ipfs'] : []),
    ...(values.ipns !== undefined ? ['--ipns', values.ipns] : []),
  ];
  return addToPackageCache([...passOn, ...positionals]);
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

/** -o, the strategy flags (the last one named wins), and the build's flags. */
function exportFlags<O extends Options>(argv: string[], more?: O) {
  const { values, positionals } = parse(argv, { ...EXPORT_OPTIONS, ...more });
  const named = argv.filter((a) => STRATEGIES.some((s) => a === `--${s}`)).at(-1);
  const strategy = (named?.slice(2) ?? 'error') as Strategy;
  const flags: BuildFlags = { jobs: parseJobs(values.jobs as string | undefined), keepGoing: (values['keep-going'] as boolean | undefined) ?? false, args: positionals };
  return { ...flags, out: (values.output as string | undefined) ?? null, strategy, values };
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

async function ociCmd(argv: string[]): Promise<number> {
  const many = { type: 'string', multiple: true } as const;
  const flags = exportFlags(argv, { entrypoint: many, cmd: many, env: many, tag: many });
  const values = flags.values as { entrypoint?: string[]; cmd?: string[]; env?: string[]; tag?: string[] };
  if (!flags.out) throw new UsageError('export oci: name the image layout directory or FILE.tar to write with -o PATH');
  for (const once of ['entrypoint', 'tag'] as const) if ((values[once]?.length ?? 0) > 1) throw new UsageError(`--${once} may be given once`);
  const out = flags.out;
  const tag = values.tag?.[0];
  const env = values.env;
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
    const img = await exportOci({ out, packages, strategy: flags.strategy, entrypoint: values.entrypoint, cmd: values.cmd, env, tag });
    tellSettled('export', img.settled);
    process.stdout.write(`${img.digest}  ${out}\n`);
    return EXIT.ok;
  });
}

async function sbomCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...BUILD_OPTIONS, format: { type: 'string' }, output: { type: 'string', short: 'o' } });
  const flags: BuildFlags = { jobs: parseJobs(values.jobs), keepGoing: values['keep-going'] ?? false, args: positionals };
  const format = values.format ?? 'spdx';
  if (format !== 'spdx' && format !== 'cyclonedx') throw new UsageError(`--format ${format}: spdx or cyclonedx`);
  const out = values.output;
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

/** A peerpkgs command: its usage line, its own help, and what runs it. */
interface Command {
  /** what follows the command's name in its usage line */
  usage: string;
  /** the rest of its --help: what it does, its options */
  help: string;
  /** the variables it reads, beside those every command does */
  env?: string[];
  run(args: string[], prog: string): Promise<number> | number;
}

const JOBS_HELP = `  -j N, --jobs N     build N things at once
  -k, --keep-going   keep building other packages after one fails
`;
const STRATEGY_HELP = `STRATEGY, for a path two packages provide differently (default: an error):
--prefer-existing (the earlier package's), --prefer-new (the later one's),
--namespaced (each package's as PATH@PACKAGE). Packages are merged in the
order named, each after its run-deps.
`;
const BUILD_ENV = ['PEERPKGS_HOME', 'PKG_CACHE_URL', 'PKG_FORCE_BINARY', 'PKG_TRUSTED_KEYS', 'PKG_MIRROR_DB', 'PKG_MIRROR_IPFS', 'PKG_IPFS_TIMEOUT', 'PKG_SANDBOX_TMP_SIZE', 'PKG_MAX_DOWNLOAD_SIZE', 'PKG_MAX_UNPACK_SIZE', 'PKG_DOWNLOAD_BASE_TIME', 'PKG_DOWNLOAD_MIN_RATE'];
const FETCH_ENV = ['PEERPKGS_HOME', 'PKG_MIRROR_DB', 'PKG_MIRROR_IPFS', 'PKG_IPFS_PEERS', 'PKG_IPFS_TIMEOUT', 'PKG_MAX_DOWNLOAD_SIZE', 'PKG_DOWNLOAD_BASE_TIME', 'PKG_DOWNLOAD_MIN_RATE'];

/** Every PKG_* and PEERPKGS_* variable (settings.ts reads them all), as --help lists them. */
const VARIABLES: Record<string, string> = {
  PEERPKGS_HOME: 'where distfiles, unpacked outputs, sandbox roots, logs and keys live (default ~/.cache/peerpkgs)',
  PKG_CACHE_URL: 'binary caches to substitute from, in order (file://, http(s)://, ipfs://, ipns://)',
  PKG_FORCE_BINARY: 'yes: a package no cache has is an error, not a build',
  PKG_TRUSTED_KEYS: 'keys caches must be signed by, beside $PEERPKGS_HOME/trusted-keys',
  PKG_MIRROR_DB: "the source mirror database (default: mirrors/ipfs.csv beside the tree's pkg/)",
  PKG_MIRROR_IPFS: 'no: fetch sources from their urls only',
  PKG_IPFS_PEERS: 'multiaddrs of IPFS peers to dial, each ending in /p2p/<peer id>',
  PKG_IPFS_LISTEN: "the IPFS node's listen multiaddrs (default /ip4/127.0.0.1/tcp/0)",
  PKG_IPFS_TIMEOUT: 'seconds an IPFS transfer may bring no data (default 30)',
  PKG_SANDBOX_TMP_SIZE: "bytes a build's /tmp and /dev/shm may hold (default 4G)",
  PKG_MAX_DOWNLOAD_SIZE: 'bytes a source without a size: field may have',
  PKG_MAX_UNPACK_SIZE: 'bytes a cached package without output-size may unpack to',
  PKG_DOWNLOAD_BASE_TIME: 'seconds an HTTP download may take besides its bytes\' share',
  PKG_DOWNLOAD_MIN_RATE: 'bytes a second below which a download is too slow to wait for',
};

const EXIT_HELP = `Exit status: 0 ok, 1 a build failed, 2 usage, 4 bad package tree, 5 fetch
failed, 6 not reproducible, 7 not found in IPFS, 8 IPFS unreachable,
9 damaged (verify), 129 hangup, 130 interrupted, 143 terminated.
`;

const subcommand = (load: () => Promise<(args: string[]) => Promise<number>>) => async (args: string[]) => (await load())(args);

const COMMANDS: Record<string, Command> = {
  build: {
    usage: '[-j N] [-k] PKGDIR...',
    help: `Build what changed of each package and its dependencies (also: build-packages-ifchange).\n\n${JOBS_HELP}`,
    env: BUILD_ENV,
    run: build,
  },
  fetch: {
    usage: '[-o DIR] FETCHFILE',
    help: "Fetch one package's sources into the distfile store; with -o, copy them into DIR\n(also: do-fetch).\n",
    env: FETCH_ENV,
    run: fetchCmd,
  },
  new: { usage: 'PKGDIR', help: 'Make a new package from a template (also: new-package).\n', run: newPackage },
  graph: { usage: 'PKGDIR...', help: 'Print the dependency tree of each package.\n', run: graphCmd },
  info: {
    usage: 'PKGDIR...',
    help: 'The pkghash, closure, sources (with their IPFS mirrors) and output of each package.\n',
    env: ['PEERPKGS_HOME', 'PKG_MIRROR_DB'],
    run: infoCmd,
  },
  check: {
    usage: '[-j N] [-k] PKGDIR...',
    help: `Build again and compare, naming the files that differ. Exit status 6 when a package\nis not reproducible.\n\n${JOBS_HELP}`,
    env: BUILD_ENV,
    run: check,
  },
  distfiles: {
    usage: 'add FILE...',
    help: 'Put local files in the distfile store, by their sha256, and print their fetch records.\n',
    env: ['PEERPKGS_HOME'],
    run: distfiles,
  },
  verify: {
    usage: '[--repair] [VENVDIR...]',
    help: '',
    env: ['PEERPKGS_HOME'],
    run: async (args) => {
      const { verifyCommand } = await import('./verify-command.ts');
      const damaged = await verifyCommand(args, peerpkgsHome(), (s) => void process.stdout.write(s));
      return damaged ? EXIT.damaged : EXIT.ok;
    },
  },
  venv: {
    usage: '[-o DIR] [-j N] [STRATEGY] PKGDIR...',
    help: `Build, then merge the packages and their run closures into DIR (default ./venv);\nDIR/bin/venv-run CMD runs CMD with DIR's top-level directories over the host's.\n\n${JOBS_HELP}\n${STRATEGY_HELP}`,
    env: BUILD_ENV,
    run: venvCmd,
  },
  export: {
    usage: 'tarball -o FILE [-j N] [STRATEGY] PKGDIR...\n       peerpkgs export oci -o PATH [--entrypoint CMD] [--cmd ARG]... [--env K=V]... [--tag NAME[:TAG]] [-j N] [STRATEGY] PKGDIR...',
    help: `tarball: the same merge as venv, as one reproducible .tar.gz.\noci: the same merge as a reproducible OCI image, a layer a package: an image\nlayout directory, or an oci-archive when PATH ends in .tar.\n\n${JOBS_HELP}\n${STRATEGY_HELP}`,
    env: BUILD_ENV,
    run: exportCmd,
  },
  sbom: {
    usage: '[--format spdx|cyclonedx] [-o FILE] [-j N] PKGDIR...',
    help: `Build, then write an SPDX 2.3 (default) or CycloneDX 1.6 JSON SBOM of the packages\nand their run and build closures.\n\n${JOBS_HELP}`,
    env: [...BUILD_ENV, 'SOURCE_DATE_EPOCH'],
    run: sbomCmd,
  },
  cache: {
    usage: 'add -o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] [-j N] PKGDIR...\n       peerpkgs cache publish DIR [--ipns KEY] [--cid-version 0|1]',
    help: 'add: build, then copy the packages and their run closures into a binary cache\ndirectory with signed .info files (also: add-to-package-cache); --ipfs adds DIR\nto IPFS, --ipns KEY also publishes it under the IPNS key KEY.\npublish: add a cache directory to IPFS (pinned), print ipfs://CID (and ipns://NAME).\n',
    env: [...BUILD_ENV, 'PKG_IPFS_PEERS', 'PKG_IPFS_LISTEN'],
    run: async (args) => {
      if (args[0] === 'publish') return (await import('./ipfs-commands.ts')).cachePublish(args.slice(1));
      if (args[0] !== 'add') throw new UsageError('usage: peerpkgs cache add -o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] PKGDIR... | cache publish DIR [--ipns KEY]');
      return cacheAdd(args.slice(1));
    },
  },
  key: {
    usage: 'generate NAME | list | trust KEY|FILE...',
    help: 'Signing keys and the keys trusted for caches.\n',
    env: ['PEERPKGS_HOME', 'PKG_TRUSTED_KEYS'],
    run: subcommand(async () => (await import('./cache-commands.ts')).key),
  },
  ipfs: {
    usage: 'COMMAND [ARGS]',
    help: '',
    run: subcommand(async () => (await import('./ipfs-commands.ts')).ipfsCommand),
  },
  seed: {
    usage: 'reproduce [-j N] [-o FILE] [--tree DIR] [--components A,B...]',
    help: '',
    env: BUILD_ENV,
    run: subcommand(async () => (await import('./seed-commands.ts')).seedCommand),
  },
  mirrors: {
    usage: 'import|pin|pin-all [--db FILE] ...',
    help: '',
    run: async (args, prog) => (await import('./mirror-commands.ts')).mirrorsCommand(prog, args[0], args.slice(1)),
  },
};

/** The p2pkgs-named links in bin/: each runs one command, and has its own usage. */
const LINKS: Record<string, Command> = {
  'build-packages-ifchange': COMMANDS.build!,
  'do-fetch': COMMANDS.fetch!,
  'new-package': COMMANDS.new!,
  venv: COMMANDS.venv!,
  'add-to-package-cache': {
    ...COMMANDS.cache!,
    usage: '-o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] [-j N] PKGDIR...',
    help: '',
    run: cacheAdd,
  },
  'ipfs-pin-fetch-file': { usage: '', help: '', run: async (args, prog) => (await import('./mirror-commands.ts')).mirrorsCommand(prog, 'pin', args) },
  'ipfs-pin-all-fetch-files': { usage: '', help: '', run: async (args, prog) => (await import('./mirror-commands.ts')).mirrorsCommand(prog, 'pin-all', args) },
};

// commands whose help is their own module's, and that answer --help themselves
const OWN_HELP = new Set(['ipfs', 'mirrors', 'ipfs-pin-fetch-file', 'ipfs-pin-all-fetch-files']);

async function helpOf(name: string, prog: string, c: Command): Promise<string> {
  let text = c.help;
  if (name === 'verify') text = (await import('./verify-command.ts')).VERIFY_HELP;
  else if (name === 'seed') text = (await import('./seed-commands.ts')).SEED_HELP;
  else if (name === 'add-to-package-cache') text = (await import('./cache-commands.ts')).ADD_HELP;
  else if (name === 'key') text = (await import('./cache-commands.ts')).KEY_HELP;
  else text = `usage: ${prog} ${c.usage}\n\n${text}`;
  const env = c.env?.length ? `\nEnvironment: ${c.env.join(', ')} (see peerpkgs --help).\n` : '';
  return text + env;
}

function mainHelp(): string {
  const lines = ['usage: peerpkgs COMMAND [ARGS]   (peerpkgs COMMAND --help: its options)', ''];
  for (const [name, c] of Object.entries(COMMANDS)) {
    const [first, ...more] = c.usage.split('\n');
    lines.push(`  ${name} ${first}`, ...more.map((m) => `  ${m.trim().replace(/^peerpkgs /, '')}`));
  }
  lines.push('', 'p2pkgs names: ' + Object.keys(LINKS).join(', ') + ' (each NAME --help)', '', 'Environment (a variable that does not parse is exit 2):');
  for (const [v, what] of Object.entries(VARIABLES)) lines.push(`  ${v.padEnd(23)} ${what}`);
  return lines.join('\n') + '\n\n' + EXIT_HELP;
}

async function main(argv: string[]): Promise<number> {
  const name = path.basename(argv[0] ?? 'peerpkgs');
  const link = LINKS[name];
  const cmd = link ? name : argv[1];
  const args = argv.slice(link ? 1 : 2);
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(mainHelp());
    return cmd ? EXIT.ok : EXIT.usage;
  }
  const c = link ?? COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command ${cmd}`);
  const prog = link ? name : `peerpkgs ${cmd}`;
  if (!OWN_HELP.has(cmd) && wantsHelp(args)) {
    process.stdout.write(await helpOf(cmd, prog, c));
    return EXIT.ok;
  }
  try {
    return await c.run(args, name);
  } catch (e) {
    // the usage error names this command's own --help
    if (e instanceof UsageError) e.command ??= prog;
    throw e;
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
    process.exitCode = report(name, e);
  }
}
