/**
 * `peerpkgs log [--list | --times] PKGDIR`: the kept log of the package's
 * last build (store/logs.ts), decompressed, as the build wrote it; with
 * --list, the kept logs, oldest first; with --times, each line after the
 * seconds from the build script's start to when it came.
 *
 * `peerpkgs log --phases [--json] PKGDIR...`: where the last build of each
 * took its time (store/log-phases.ts), and the sum over all of them.
 */
import { PeerpkgsError } from '../errors.ts';
import { printLog, lastLog, listLogs, logLines, logTimes, type KeptLog } from '../store/logs.ts';
import { buildTime, STEPS, type BuildTime } from '../store/log-phases.ts';
import { peerpkgsHome } from '../home.ts';
import { EXIT, UsageError, parse, packageDirs, rel } from './frame.ts';

export async function logCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { list: { type: 'boolean' }, times: { type: 'boolean' }, phases: { type: 'boolean' }, json: { type: 'boolean' } });
  if ([values.list, values.times, values.phases].filter(Boolean).length > 1) throw new UsageError('choose one of --list, --times and --phases');
  if (values.json && !values.phases) throw new UsageError('--json goes with --phases');
  if (values.phases) return phases(positionals, values.json === true);
  if (positionals.length !== 1) throw new UsageError('name one package directory, e.g. ./pkg/make');
  const dir = packageDirs(positionals)[0]!;
  const home = peerpkgsHome();
  const logs = listLogs(home, dir);
  const last = lastOf(home, dir, logs);
  if (values.list) {
    for (const l of logs) process.stdout.write(`${l.when.toISOString()}  ${l.ok ? 'ok    ' : 'failed'}  ${l.file}\n`);
    return EXIT.ok;
  }
  try {
    if (values.times) printTimed(last, dir);
    else await printLog(last, process.stdout);
  } catch (e) {
    // `peerpkgs log … | head`: the reader had enough
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
  return EXIT.ok;
}

/** The package's last kept log; an error when there is none. */
function lastOf(home: string, dir: string, logs: KeptLog[]): string {
  const last = lastLog(home, dir);
  if (!last || !logs.some((l) => l.file === last)) {
    throw new PeerpkgsError(`${rel(dir)}: no build of it is logged (not built here yet, substituted from a cache, or a seed taken by its .do)`, EXIT.notFound);
  }
  return last;
}

function printTimed(file: string, dir: string): void {
  const times = logTimes(file);
  if (!times) throw new PeerpkgsError(`${rel(dir)}: its last log was kept without times (by an older peerpkgs): build it again`, EXIT.notFound);
  const lines = logLines(file);
  const out: string[] = [];
  times.lines.forEach((ms, i) => out.push(`${(ms / 1000).toFixed(3).padStart(9)}  ${lines[i] ?? ''}\n`));
  process.stdout.write(Buffer.from(out.join(''), 'latin1'));
}

const COLUMNS = ['sandbox', 'sources', ...STEPS, 'pack'] as const;

function phases(positionals: string[], json: boolean): number {
  if (positionals.length === 0) throw new UsageError('name the package directories, e.g. ./pkg/*/');
  const home = peerpkgsHome();
  const rows: Array<{ pkg: string; time: BuildTime }> = [];
  const missing: string[] = [];
  for (const dir of packageDirs(positionals)) {
    const last = lastLog(home, dir);
    const time = last ? buildTime(last) : null;
    if (time) rows.push({ pkg: rel(dir), time });
    else missing.push(rel(dir));
  }
  if (rows.length === 0)
    throw new PeerpkgsError(`no build of ${positionals.length === 1 ? 'it' : 'them'} is logged with its times (not built here, or by an older peerpkgs)`, EXIT.notFound);
  const sum = (pick: (t: BuildTime) => number) => rows.reduce((a, r) => a + pick(r.time), 0);
  const cell = (t: BuildTime, c: (typeof COLUMNS)[number]): number => (c === 'sandbox' || c === 'sources' || c === 'pack' ? t[c] : t.steps[c]);
  const total = Object.fromEntries(COLUMNS.map((c) => [c, sum((t) => cell(t, c))])) as Record<(typeof COLUMNS)[number], number>;
  const all = sum((t) => t.total);
  if (json) {
    const ms = (t: BuildTime) => ({ total: Math.round(t.total), ...Object.fromEntries(COLUMNS.map((c) => [c, Math.round(cell(t, c))])) });
    process.stdout.write(
      JSON.stringify({ packages: rows.map((r) => ({ package: r.pkg, ms: ms(r.time) })), total: { total: Math.round(all), ...total }, notLogged: missing }, null, 2) + '\n',
    );
    return EXIT.ok;
  }
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const width = Math.max(7, ...rows.map((r) => r.pkg.length));
  const line = (name: string, cells: string[]) => process.stdout.write(name.padEnd(width) + cells.map((c) => c.padStart(10)).join('') + '\n');
  line('', ['total s', ...COLUMNS]);
  for (const r of rows) line(r.pkg, [s(r.time.total), ...COLUMNS.map((c) => s(cell(r.time, c)))]);
  if (rows.length > 1) {
    line('all', [s(all), ...COLUMNS.map((c) => s(total[c]))]);
  }
  line('share', ['100%', ...COLUMNS.map((c) => `${((100 * total[c]) / (all || 1)).toFixed(1)}%`)]);
  for (const m of missing) process.stderr.write(`peerpkgs log: ${m}: no build of it is logged with its times; left out\n`);
  return EXIT.ok;
}
