/**
 * What a package build shows (the engine's Log for the commands that build
 * packages): a line a package as its build begins, as it is built,
 * substituted or fails, each after [done/total] and the run's elapsed
 * time; for a failure, the last lines of its log and the commands that
 * look into it; at the end, what was done. A build's own lines go to its
 * kept log (store/logs.ts) and, with -v, to the terminal too, each after
 * its package's name. On a terminal a status line under them says what is
 * building now, and how much of each archive coming from a cache has come,
 * redrawn in place; anywhere else (CI, a pipe, a file) plain
 * lines only, without a control code.
 *
 * One engine process runs every rule of a run (a .do's redo-ifchange is a
 * request to it, over engine/protocol.ts), so this one object hears of
 * every package and alone writes the lines the run shows.
 */
import * as path from 'node:path';
import { Log, plural, printable } from '../engine/log.ts';
import { RunContext, type ProgressOutput } from '../engine/rules.ts';
import { packageGraph } from './package-rules.ts';
import { formatBytes, type Transfer } from '../fetch/progress.ts';

/** Lines of a failed build shown with its failure. */
export const TAIL_LINES = 20;
const TARGET = '.pkg.tar.gz';

interface Building {
  began?: number;
  /** made by a .do on the host, which writes to the terminal itself, and keeps no log */
  host?: boolean;
  substituted?: boolean;
  /** its archive coming from a cache: bytes come of total */
  fetch?: { bytes: number; total: number };
  /** the last lines of its output, escaped */
  tail: string[];
}

export class PackageLog extends Log {
  protected override readonly who = 'peerpkgs';
  private readonly verbose: boolean;
  /** where the lines go: process.stderr, or what a test gives */
  private readonly stream: ProgressOutput;
  private readonly live: boolean;
  private readonly t0 = Date.now();
  private total: number | null = null;
  /** the packages whose state is known, for [done/total] */
  private readonly done = new Set<string>();
  /** the packages whose job runs */
  private readonly jobs = new Map<string, Building>();
  private readonly counts = { built: 0, substituted: 0, failed: 0, notBuilt: 0, upToDate: 0 };
  /** the packages that failed, by directory: the target */
  private readonly failedDirs = new Map<string, string>();
  private drawn = false;
  private timer: NodeJS.Timeout | null = null;

  /** the run whose package graph the rules read: the engine's (EngineOptions.run) */
  private readonly run: RunContext;

  constructor(startDir: string, base: string, opts: { verbose?: boolean; stream?: ProgressOutput; run?: RunContext } = {}) {
    const stream = opts.stream ?? process.stderr;
    const tty = stream.isTTY === true;
    super(startDir, base, (s) => void stream.write(s), tty && !process.env.NO_COLOR);
    this.stream = stream;
    this.live = tty;
    this.verbose = opts.verbose === true;
    this.run = opts.run ?? new RunContext();
  }

  /** The packages of `dirs` and everything they depend on: the run's total. */
  expect(dirs: string[]): void {
    try {
      const g = packageGraph(this.run);
      const seen = new Set<string>();
      const visit = (d: string): void => {
        const dir = g.load(d).dir;
        if (seen.has(dir)) return;
        seen.add(dir);
        for (const dep of g.deps(dir)) visit(dep);
      };
      for (const d of dirs) visit(d);
      this.total = seen.size;
    } catch {
      // a bad tree: the build says what is wrong with it, and no total is shown
    }
  }

  override start(t: string, depth: number, to?: string, rule?: string): void {
    if (!isPackage(t)) {
      if (this.verbose) super.start(t, depth, to, rule);
      return;
    }
    this.jobs.set(t, { tail: [] });
    // a seed's .do: its work begins now, on the host, writing to our stderr itself
    if (rule && !rule.startsWith('builtin:')) {
      this.jobs.get(t)!.host = true;
      this.began(t);
    }
  }

  /** A rule's notes (a sandbox reused, an output's sha256) are for -v;
   * a warning (a cache that failed, so the package is built) is for all. */
  override note(_depth: number, line: string, _to?: string, t?: string): void {
    if (this.verbose || line.startsWith('warning: ')) this.print(`${t ? `${this.name(t)}: ` : ''}${printable(line)}\n`);
  }

  /** A download's lines, plain: the status line is ours. */
  override progressOutput(): ProgressOutput {
    return { write: (s) => this.print(s) };
  }

  override began(t: string): void {
    const job = this.jobs.get(t);
    if (job) job.began = Date.now();
    this.timer ??= setInterval(() => this.draw(), 1000).unref();
    this.line(t, 'building');
  }

  override output(t: string, line: Buffer): void {
    const text = printable(line.toString(), false, true);
    const job = this.jobs.get(t);
    if (job) {
      job.tail.push(text);
      if (job.tail.length > TAIL_LINES) job.tail.shift();
    }
    if (this.verbose) this.print(`${this.name(t)}| ${text}\n`);
  }

  override substituted(t: string, _depth: number, how: string): void {
    const job = this.jobs.get(t);
    if (job) job.substituted = true;
    this.counts.substituted++;
    this.done.add(t);
    this.line(t, `substituted ${printable(how)}`);
  }

  /** A cache's archive coming for `t`: its bytes in the status line, redrawn at most ten times a second. */
  override transfer(t: string, total: number): Transfer {
    const job = this.jobs.get(t);
    if (!job) return super.transfer(t, total);
    const fetch = { bytes: 0, total };
    job.fetch = fetch;
    this.timer ??= setInterval(() => this.draw(), 1000).unref();
    this.draw();
    let drawn = Date.now();
    const end = () => {
      if (job.fetch === fetch) job.fetch = undefined;
      this.draw();
    };
    return {
      advance: (n) => {
        fetch.bytes += n;
        if (Date.now() - drawn < 100) return;
        drawn = Date.now();
        this.draw();
      },
      done: end,
      abort: end,
    };
  }

  override settled(t: string, ok: boolean): void {
    if (!isPackage(t)) return;
    const job = this.jobs.get(t);
    this.jobs.delete(t);
    if (!job && ok) this.counts.upToDate++;
    this.done.add(t);
    if (job && ok && !job.substituted) {
      this.counts.built++;
      this.line(t, job.began ? `built in ${duration(Date.now() - job.began)}` : 'built');
    }
    this.draw();
  }

  override failed(t: string, status: number, why?: string, to?: string): void {
    if (!isPackage(t)) return super.failed(t, status, why, to);
    const job = this.jobs.get(t);
    this.done.add(t);
    const dir = this.dirOf(t);
    const cause = job?.began ? undefined : this.failedDependency(dir);
    this.failedDirs.set(dir, t);
    if (cause) {
      // its own lines would say no more than that
      this.counts.notBuilt++;
      this.line(t, `not built: ${this.name(cause)} failed`);
      return;
    }
    this.counts.failed++;
    const after = job?.began ? ` after ${duration(Date.now() - job.began)}` : '';
    this.line(t, `${this.paint('31', 'failed')} (${printable(why ?? `exit ${status}`)})${after}`);
    if (!job?.began || job.host) return; // it never ran (the line above it says why), or ran no sandbox
    const pkg = this.name(t);
    const arg = pkg.startsWith('.') || pkg.startsWith('/') ? pkg : `./${pkg}`;
    const tail = job.tail.length ? [`  the last ${plural(job.tail.length, 'line')} of its log:`, ...job.tail.map((l) => `  | ${l}`)] : ['  its build printed nothing'];
    this.print([...tail, `  peerpkgs log ${arg}      its whole log`, `  peerpkgs shell ${arg}    a shell in its sandbox, where it failed`, ''].join('\n'));
  }

  /** The last word: what the run did, then which targets failed. */
  override summary(failures: ReadonlyArray<{ target: string; status: number }>): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
    const c = this.counts;
    const did = (
      [
        [c.built, 'built'],
        [c.substituted, 'substituted'],
        [c.failed, 'failed'],
        [c.notBuilt, 'not built'],
      ] as const
    ).filter(([n]) => n > 0);
    if (did.length) {
      // "1 package built", "2 packages built, 1 substituted"
      const words = did.map(([n, what], i) => `${i === 0 ? plural(n, 'package') : n} ${what}`);
      if (c.upToDate) words.push(`${c.upToDate} up to date`);
      this.print(`${words.join(', ')} in ${duration(Date.now() - this.t0)}\n`);
    }
    super.summary(failures);
  }

  /** A line that stays, above the status line. */
  protected override print(s: string): void {
    this.stream.write(this.drawn ? `\r\x1b[K${s}` : s);
    this.drawn = false;
    this.draw();
  }

  private line(t: string, what: string): void {
    this.print(`${this.prefix()} ${this.paint('1', this.name(t))}: ${what}\n`);
  }

  private prefix(): string {
    const total = this.total === null ? '' : `/${Math.max(this.total, this.done.size)}`;
    return `[${this.done.size}${total} ${clock(Date.now() - this.t0)}]`;
  }

  /** The status line, on a terminal: what is building now. */
  private draw(): void {
    if (!this.live || this.timer === null) return;
    const now = Date.now();
    const building = [...this.jobs].filter(([, j]) => j.began).map(([t, j]) => `${this.name(t)} ${duration(now - j.began!)}`);
    const fetching = [...this.jobs].filter(([, j]) => j.fetch).map(([t, j]) => `${this.name(t)} ${formatBytes(j.fetch!.bytes)}/${formatBytes(j.fetch!.total)}`);
    const doing = [...(building.length ? [`building ${building.join(', ')}`] : []), ...(fetching.length ? [`fetching ${fetching.join(', ')}`] : [])];
    // a .do's lines reach the terminal without us: no line of ours to write them over
    if (!doing.length || [...this.jobs.values()].some((j) => j.host)) {
      if (this.drawn) this.stream.write('\r\x1b[K');
      this.drawn = false;
      return;
    }
    const text = `${this.prefix()} ${doing.join('; ')}`;
    // a pty without a size (script(1) on a pipe) says 0 columns
    const width = Math.max((this.stream.columns || 80) - 1, 20);
    this.stream.write(`\r${text.slice(0, width)}\x1b[K`);
    this.drawn = true;
  }

  protected override showTarget(t: string): string {
    return isPackage(t) ? this.name(t) : super.showTarget(t);
  }

  /** The package directory of target `t`, as the package graph names it. */
  private dirOf(t: string): string {
    const dir = path.resolve(this.base, path.dirname(t));
    try {
      return packageGraph(this.run).load(dir).dir;
    } catch {
      return dir;
    }
  }

  /** A package `dir` depends on whose build failed in this run, if one did. */
  private failedDependency(dir: string): string | undefined {
    try {
      for (const d of packageGraph(this.run).deps(dir)) {
        const t = this.failedDirs.get(d);
        if (t) return t;
      }
    } catch {
      /* a bad tree: said by the build */
    }
    return undefined;
  }

  /** The package of target `t`, as the user names it. */
  private name(t: string): string {
    return this.show(path.dirname(t));
  }
}

function isPackage(t: string): boolean {
  return path.basename(t) === TARGET;
}

function duration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(ms / 60_000)}m${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}s`;
}

/** The run's elapsed time, as a clock: 0:42, 12:05, 1:02:05. */
function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  const mmss = `${Math.floor(s / 60) % 60}:${String(s % 60).padStart(2, '0')}`;
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mmss.padStart(5, '0')}` : mmss;
}
