/**
 * `peerpkgs seed reproduce`: arguments and what the user sees. The work is
 * seed/reproduce.ts's.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { Engine, findBase } from '../engine/engine.ts';
import { Log } from '../engine/log.ts';
import { loadRules } from '../engine/plugins.ts';
import { packageRules } from '../pkgrules/rules.ts';
import { peerpkgsHome } from '../home.ts';
import { SEED_COMPONENTS, GenerationFailed, reproduceSeed, type ReproduceResult } from '../seed/reproduce.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
import { UsageError, parse, parseJobs, onSignals } from './frame.ts';

export const SEED_HELP = `usage: peerpkgs seed reproduce [-j N] [-o FILE] [--tree DIR] [--components A,B...]

Rebuilds the seed from the package tree and shows that the rebuild is exact.
Generation 1: pkg/${SEED_COMPONENTS.join(', pkg/')} built with the bootstrap
seed (pkg/seed), packed as a seed. Generation 2: the same packages built, in a
temporary copy of the tree, with generation 1's seed as pkg/seed. Prints both
generations' output sha256 for each package and for the packed seeds; where
they differ, the files that differ.

  -j N              build N things at once
  -o FILE           also write generation 1's seed to FILE (it is put in the
                    distfile store in any case, by its sha256)
  --tree DIR        the directory that holds pkg/ (default: .)
  --components A,B  the packages that make the seed (default: ${SEED_COMPONENTS.join(',')})

Exit status: 0 the two generations are identical (a fixpoint), 6 they are not,
1 a build failed, 2 usage, 4 bad package tree, 5 a source could not be fetched.
`;

interface Flags {
  jobs?: number;
  out?: string;
  tree: string;
  components: string[];
}

function flags(argv: string[]): Flags {
  const { values, positionals } = parse(argv, {
    jobs: { type: 'string', short: 'j' },
    output: { type: 'string', short: 'o' },
    tree: { type: 'string' },
    components: { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`unknown argument ${positionals[0]}`);
  const f: Flags = { tree: values.tree ?? '.', components: values.components?.split(',').filter(Boolean) ?? SEED_COMPONENTS, jobs: parseJobs(values.jobs), out: values.output };
  if (!f.components.length) throw new UsageError('--components names no package');
  return f;
}

export async function seedCommand(argv: string[]): Promise<number> {
  if (argv[0] !== 'reproduce') throw new UsageError('usage: peerpkgs seed reproduce [-j N] [-o FILE] [--tree DIR] [--components A,B...]');
  const f = flags(argv.slice(1));
  const tree = path.resolve(f.tree);
  if (!fs.existsSync(path.join(tree, 'pkg', 'seed'))) throw new UsageError(`${f.tree}: holds no pkg/seed: name the directory of the package tree with --tree DIR`);
  // found out now, not after minutes of building
  if (f.out && !fs.statSync(path.dirname(path.resolve(f.out)), { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`-o ${f.out}: no directory ${path.dirname(f.out)} to write it in`);
  }
  const rules = [...packageRules, ...(await loadRules())];
  let current: Engine | null = null;
  const offSignals = onSignals(() => current?.interrupt());
  const say = (line: string) => process.stderr.write(`seed reproduce: ${line}\n`);
  let r: ReproduceResult;
  try {
    r = await reproduceSeed({
      tree,
      components: f.components,
      home: peerpkgsHome(),
      log: say,
      engine: async (base, afresh) => {
        const start = base ?? process.cwd();
        current = new Engine({
          jobs: f.jobs,
          afresh,
          rules,
          base: base ?? findBase(process.cwd()),
          startDir: start,
          log: new Log(start, base ?? findBase(process.cwd())),
        });
        return current;
      },
    });
  } catch (e) {
    if (e instanceof GenerationFailed) {
      say(e.message);
      return e.status;
    }
    throw e;
  } finally {
    offSignals();
  }
  const out = f.out;
  if (out) {
    withTemporaryFile(path.resolve(out), (tmp) => {
      fs.copyFileSync(r.seed1.file, tmp);
      fs.chmodSync(tmp, 0o644);
      fs.renameSync(tmp, out);
    });
  }
  process.stdout.write(report(r));
  return r.fixpoint ? 0 : 6;
}

/** The table of both generations' hashes, and what differs. */
export function report(r: ReproduceResult): string {
  const lines: string[] = [];
  const width = Math.max(...r.components.map((c) => c.name.length), 'seed (archive)'.length);
  const row = (name: string, a: string, b: string) =>
    lines.push(`${name.padEnd(width)}  ${a === b ? 'identical' : 'DIFFERENT'}\n${' '.repeat(width)}  generation 1 ${a}\n${' '.repeat(width)}  generation 2 ${b}`);
  for (const c of r.components) {
    row(c.name, c.gen1, c.gen2);
    for (const d of c.diffs) lines.push(`${' '.repeat(width)}    ${d.path}: ${d.what}`);
  }
  row('seed', r.seed1.sha256, r.seed2.sha256);
  for (const d of r.seedDiffs) lines.push(`${' '.repeat(width)}    ${d.path}: ${d.what}`);
  row('seed (archive)', r.seed1.compressedSha256, r.seed2.compressedSha256);
  lines.push(`generation 1 took ${r.seconds[0].toFixed(0)} s, generation 2 ${r.seconds[1].toFixed(0)} s`);
  if (r.fixpoint) {
    lines.push(`fixpoint: the seed the tree builds builds itself again, bit for bit; it is in the distfile store as ${path.basename(r.seed1.file)}`);
  } else {
    const bad = r.components.filter((c) => c.gen1 !== c.gen2).map((c) => c.name);
    const what = bad.length ? `${bad.join(', ')} ${bad.length === 1 ? 'differs' : 'differ'}` : 'the packed seeds differ';
    lines.push(`NOT reproduced: ${what} between the generations; generation 2's tree is kept in ${r.tree2}`);
  }
  return lines.join('\n') + '\n';
}
