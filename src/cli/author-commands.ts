/**
 * The commands of a package author's loop, beside `build`: `shell`, which
 * enters a package's sandbox as its build did (pkgrules/package-sandbox.ts
 * sets it up for both), and `why`, which says why a package would be
 * rebuilt (tree/pkghash-diff.ts, on the texts store/pkghash-texts.ts keeps).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { printable } from '../engine/log.ts';
import { JobServer } from '../engine/jobserver.ts';
import { removeOwnTemporaries, removeTemporary } from '../archive/temporary.ts';
import { peerpkgsHome } from '../home.ts';
import { PackageGraph } from '../tree/pkghash.ts';
import { withEngine } from './build-commands.ts';
import { EXIT, UsageError, parse, parseJobs, onSignals, packageDirs, rel } from './frame.ts';

export async function shellCmd(argv: string[]): Promise<number> {
  const end = argv.indexOf('--');
  const { values, positionals } = parse(end < 0 ? argv : argv.slice(0, end), { jobs: { type: 'string', short: 'j' } });
  const cmd = end < 0 ? [] : argv.slice(end + 1);
  if (positionals.length !== 1) throw new UsageError('name one package directory, e.g. ./pkg/make (and -- CMD... to run a command)');
  const jobs = parseJobs(values.jobs);
  const [dir] = packageDirs(positionals) as [string];
  const sandbox = await import('../pkgrules/package-sandbox.ts');
  const g = new PackageGraph();
  const pkg = g.load(dir);
  if (!pkg.buildScript) throw new UsageError(`${rel(dir)} is made by its .pkg.tar.gz.do on the host, not built in a sandbox: there is none to enter`);
  // a closure with no shell is said before anything is built for it
  const deps = sandbox.buildClosure(g, dir);
  const built = await withEngine({ jobs, keepGoing: false, args: [] }, (e) =>
    e.build(
      deps.map((d) => path.join(d, '.pkg.tar.gz')),
      false,
    ),
  );
  if (built !== EXIT.ok) return built;

  const home = peerpkgsHome();
  const root = await sandbox.packageRoot(g, dir, home);
  const kept = sandbox.lastFailedWorkDir(pkg, home);
  const interactive = cmd.length === 0;
  const stopSignals = onSignals(() => removeOwnTemporaries());
  // a fresh directory holds nothing a new one would not: it goes with the
  // shell, where a failed build's stays until the package builds
  const work = kept ?? (await sandbox.makeWorkDir(pkg, home));
  const slots = new JobServer(jobs ?? 1);
  try {
    if (interactive) {
      const where = kept
        ? `the files of its failed build (${kept.at.toISOString()}: ${kept.message}), kept in ${kept.dir}`
        : `a fresh directory with its sources and files/ (nothing run), removed on exit`;
      process.stderr.write(printable(`shell: ${rel(dir)}: in ${where}\n`, true));
    }
    const r = await sandbox.runPackageSandbox({
      root: root.root,
      work,
      argv: sandbox.shellArgv(cmd),
      jobserver: slots.forChild(),
      terminal: interactive ? 'interactive' : 'command',
    });
    return r.status;
  } finally {
    slots.close();
    if (!kept) await removeTemporary(work.dir);
    stopSignals();
  }
}

export async function whyCmd(argv: string[]): Promise<number> {
  const dirs = packageDirs(parse(argv, {}).positionals);
  const [{ builtFromPkghash }, { recordedText }, { diffPkghashTexts }, { findBuilt }] = await Promise.all([
    import('../store/outputs.ts'),
    import('../store/pkghash-texts.ts'),
    import('../tree/pkghash-diff.ts'),
    import('../store/built.ts'),
  ]);
  const home = peerpkgsHome();
  const g = new PackageGraph();
  const out: string[] = [];
  for (const dir of dirs) {
    const name = rel(g.load(dir).dir);
    const archive = path.join(dir, '.pkg.tar.gz');
    const st = fs.statSync(archive, { throwIfNoEntry: false });
    const from = st ? builtFromPkghash(archive) : null;
    const now = g.pkghash(dir);
    const when = st
      ? st.mtime
          .toISOString()
          .replace('T', ' ')
          .replace(/\.\d+Z$/, ' UTC')
      : '';
    if (!st) out.push(`${name} would be built: never built (no ${rel(archive)})`);
    else if (from === null) out.push(`${name} would be rebuilt: no record of the build that made ${rel(archive)} (state lost, or the file replaced)`);
    else if (from === '') out.push(`${name} is made by its .pkg.tar.gz.do, not from a pkghash: redo-ood lists it when the files that .do read change`);
    else if (from === now) out.push(`${name} would not be rebuilt: pkghash ${now} unchanged since ${when}`);
    else {
      out.push(`${name} would be rebuilt: its pkghash was ${from} when built (${when}), and is now ${now}`);
      const today = g.pkghashTexts(dir);
      const textOf = (hash: string) => today.get(hash) ?? recordedText(home, hash);
      const old = recordedText(home, from);
      if (old === null) out.push(`  (the text of pkghash ${from} was not recorded: built before peerpkgs kept them, or removed)`);
      else out.push(...diffPkghashTexts(old, today.get(now)!, textOf).map((l) => `  ${l}`));
    }
    const stored = from !== now && from !== '' ? findBuilt(home, now) : null;
    if (stored) out.push(`  but a build of pkghash ${now} is in this store (${stored.archive}): it would be taken from there`);
  }
  process.stdout.write(out.map((l) => printable(l)).join('\n') + '\n');
  return EXIT.ok;
}
