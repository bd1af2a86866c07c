/**
 * The commands that build, then do something with what was built: build,
 * check, venv, export, sbom and cache add. Each parses its options with
 * frame.ts's parser and runs one engine under the signal policy; the work
 * is build/'s, export/'s and cache/'s.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { Engine, findBase } from '../engine/engine.ts';
import { PackageLog } from '../pkgrules/progress.ts';
import { loadRules } from '../engine/plugins.ts';
import { RunContext } from '../engine/rules.ts';
import { packageRules } from '../pkgrules/rules.ts';
import { homeLayout, peerpkgsHome } from '../home.ts';
import { EXIT, UsageError, parse, parseJobs, onSignals, packageDirs, rel, type Options } from './frame.ts';
// The rest is imported by the commands that use it: the archive and fetch
// layers (tar-stream, zlib, http, tls) cost a no-op build tens of ms.
import type { Output, Strategy, Settled } from '../archive/merge.ts';
import type { PackageGraph } from '../tree/pkghash.ts';

const BUILD_OPTIONS = {
  jobs: { type: 'string', short: 'j' },
  'keep-going': { type: 'boolean', short: 'k' },
  verbose: { type: 'boolean', short: 'v' },
} as const;

const STRATEGIES = ['prefer-existing', 'prefer-new', 'namespaced'] as const;

const EXPORT_OPTIONS = {
  ...BUILD_OPTIONS,
  output: { type: 'string', short: 'o' },
  ...Object.fromEntries(STRATEGIES.map((s) => [s, { type: 'boolean' }])),
} as const;

export interface BuildFlags {
  jobs?: number;
  keepGoing: boolean;
  /** -v: every build's lines on the terminal, after its package's name */
  verbose?: boolean;
  args: string[];
}

function buildFlags(argv: string[]): BuildFlags {
  const { values, positionals } = parse(argv, BUILD_OPTIONS);
  return { jobs: parseJobs(values.jobs), keepGoing: values['keep-going'] ?? false, verbose: values.verbose, args: positionals };
}

async function engineFor(flags: BuildFlags): Promise<Engine> {
  // the progress lines read the package graph of the rules' run
  const run = new RunContext();
  return new Engine({
    jobs: flags.jobs,
    keepGoing: flags.keepGoing,
    rules: [...packageRules, ...(await loadRules())],
    startDir: process.cwd(),
    log: new PackageLog(process.cwd(), findBase(process.cwd()), { verbose: flags.verbose, run }),
    run,
  });
}

/** Build the packages in `dirs` (`again`: even if up to date), counting their closure for the progress lines. */
function buildPackages(engine: Engine, dirs: string[], again = false): Promise<number> {
  (engine.log as PackageLog).expect(dirs);
  return engine.build(
    dirs.map((d) => path.join(d, '.pkg.tar.gz')),
    again,
  );
}

/**
 * Runs `f` with an engine, as a user of the store (no gc meanwhile), the
 * trees of the packages named registered for gc (their fetch files name
 * the distfiles to keep).
 */
export async function withEngine(flags: BuildFlags, f: (e: Engine) => Promise<number>): Promise<number> {
  const home = peerpkgsHome();
  const { usingStore, register } = await import('../store/roots.ts');
  const { treeRoot } = await import('../tree/package.ts');
  for (const a of flags.args) {
    const tree = treeRoot(a);
    if (tree !== null) register(home, 'trees', tree);
  }
  const onWait = (pid: number) => void process.stderr.write(`waiting for gc (process ${pid}) to finish\n`);
  return usingStore(home, () => engineRun(flags, f), onWait);
}

async function engineRun(flags: BuildFlags, f: (e: Engine) => Promise<number>): Promise<number> {
  const engine = await engineFor(flags);
  // what was done so far is said, and a status line on the terminal goes
  const signals = onSignals(() => engine.interrupt().finally(() => engine.log.summary(engine.failures)));
  try {
    return await f(engine);
  } finally {
    engine.log.summary(engine.failures);
    await engine.close();
    signals(); // what runs after (a package shell) has its own
  }
}

export async function build(argv: string[]): Promise<number> {
  const flags = buildFlags(argv);
  const dirs = packageDirs(flags.args);
  return withEngine(flags, (e) => buildPackages(e, dirs));
}

export async function check(argv: string[]): Promise<number> {
  const flags = buildFlags(argv);
  const dirs = packageDirs(flags.args);
  const { rebuildAndCompare, reproduced } = await import('../pkgrules/reproducible.ts');
  const outputsDir = homeLayout.outputs(peerpkgsHome());
  const targets = dirs.map((d) => path.join(d, '.pkg.tar.gz'));
  return withEngine(flags, async (engine) => {
    const results = await rebuildAndCompare(targets, outputsDir, (again) => buildPackages(engine, dirs, again));
    if (typeof results === 'number') return results;
    for (const r of results) {
      const pkg = rel(path.dirname(r.target));
      if (reproduced(r)) {
        const harm = r.damaged
          ? `, but its unpacked copy ${r.damaged.dir} is damaged (${r.damaged.damage.length} paths: peerpkgs verify names them, verify --repair restores them)`
          : '';
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
export async function cacheAdd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    jobs: BUILD_OPTIONS.jobs,
    output: { type: 'string', short: 'o' },
    'sign-key': { type: 'string' },
    ipfs: { type: 'boolean' },
    ipns: { type: 'string' },
    expires: { type: 'string' },
  });
  if (positionals.length) {
    const rc = await withEngine({ jobs: parseJobs(values.jobs), keepGoing: false, args: [] }, (e) => buildPackages(e, packageDirs(positionals)));
    if (rc !== 0) return rc;
  }
  const { addToPackageCache } = await import('./cache-commands.ts');
  const passOn = [
    ...(values.output !== undefined ? ['-o', values.output] : []),
    ...(values['sign-key'] !== undefined ? ['--sign-key', values['sign-key']] : []),
    ...(values.ipfs ? ['--ipfs'] : []),
    ...(values.ipns !== undefined ? ['--ipns', values.ipns] : []),
    ...(values.expires !== undefined ? ['--expires', values.expires] : []),
  ];
  return addToPackageCache([...passOn, ...positionals]);
}

/** -o, the strategy flags (the last one named wins), and the build's flags. */
export function exportFlags<O extends Options>(argv: string[], more?: O) {
  const { values, positionals } = parse(argv, { ...EXPORT_OPTIONS, ...more });
  const named = argv.filter((a) => STRATEGIES.some((s) => a === `--${s}`)).at(-1);
  const strategy = (named?.slice(2) ?? 'error') as Strategy;
  const flags: BuildFlags = {
    jobs: parseJobs(values.jobs as string | undefined),
    keepGoing: (values['keep-going'] as boolean | undefined) ?? false,
    verbose: values.verbose as boolean | undefined,
    args: positionals,
  };
  return { ...flags, out: (values.output as string | undefined) ?? null, strategy, values };
}

/**
 * Builds the packages, then hands their outputs and their run closures'
 * (in merge order) to `f`, with the package graph the build read: the
 * pkghashes the outputs were checked against, not a second reading of
 * the tree (which would cost an export as much again).
 */
export async function withOutputs(flags: BuildFlags, dirs: string[], f: (packages: Output[], graph: PackageGraph) => Promise<number> | number): Promise<number> {
  return withEngine(flags, async (engine) => {
    const rc = await buildPackages(engine, dirs);
    if (rc !== 0) return rc;
    // imported here: no other command should pay for loading them
    const [{ closureOutputs }, { packageGraph }] = await Promise.all([import('../export/closure.ts'), import('../pkgrules/package-rules.ts')]);
    const graph = packageGraph(engine.run);
    return f(await closureOutputs(dirs, peerpkgsHome(), graph), graph);
  });
}

export function tellSettled(name: string, settled: Settled[]): void {
  for (const c of settled) process.stderr.write(`${name}: ${c.path}: ${c.packages[0]} and ${c.packages[1]} differ; kept ${c.kept}\n`);
}

export async function venvCmd(argv: string[]): Promise<number> {
  const flags = exportFlags(argv);
  const dirs = packageDirs(flags.args);
  return withOutputs(flags, dirs, async (packages) => {
    const { makeVenv } = await import('../export/venv.ts');
    const out = flags.out ?? 'venv';
    const onWait = (pid: number) => void process.stderr.write(`venv: waiting for ${out}: process ${pid} is writing it\n`);
    const v = await makeVenv({ dir: out, packages, strategy: flags.strategy, onWait });
    // a root of gc's while it lasts
    (await import('../store/roots.ts')).register(peerpkgsHome(), 'venvs', v.dir);
    tellSettled('venv', v.settled);
    return EXIT.ok;
  });
}

export async function exportCmd(argv: string[]): Promise<number> {
  if (argv[0] === 'oci') return ociCmd(argv.slice(1));
  if (argv[0] !== 'tarball') throw new UsageError('usage: peerpkgs export tarball|oci -o PATH [-j N] [STRATEGY] PKGDIR...');
  const flags = exportFlags(argv.slice(1));
  if (!flags.out) throw new UsageError('export tarball: name the file to write with -o FILE');
  const out = flags.out;
  const dirs = packageDirs(flags.args);
  return withOutputs(flags, dirs, async (packages) => {
    const { exportTarball } = await import('../export/tarball.ts');
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
  const { exportOci, parseTag, imageEnv } = await import('../export/oci.ts');
  try {
    if (tag !== undefined) parseTag(tag);
    imageEnv(env);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const dirs = packageDirs(flags.args);
  return withOutputs(flags, dirs, async (packages) => {
    const img = await exportOci({ out, packages, strategy: flags.strategy, entrypoint: values.entrypoint, cmd: values.cmd, env, tag });
    tellSettled('export', img.settled);
    process.stdout.write(`${img.digest}  ${out}\n`);
    return EXIT.ok;
  });
}

export async function sbomCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...BUILD_OPTIONS, format: { type: 'string' }, output: { type: 'string', short: 'o' } });
  const flags: BuildFlags = { jobs: parseJobs(values.jobs), keepGoing: values['keep-going'] ?? false, verbose: values.verbose, args: positionals };
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
    const rc = await buildPackages(engine, all);
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
