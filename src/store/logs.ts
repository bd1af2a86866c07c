/**
 * Kept build logs: the output of every package build (its stdout and
 * stderr as the bytes came), gzip-compressed, a directory a package:
 *
 *   $PEERPKGS_HOME/logs/NAME-HASH/       HASH: of the package directory's real path
 *     20261130T203000123Z-ok.log.gz      a build's, named by when it ended and how
 *     20261130T203512456Z-failed.log.gz
 *     last -> 20261130T203512456Z-failed.log.gz
 *
 * A log is written under a temporary name and renamed into place when the
 * build ends, and `last` is replaced by a rename: a crash never leaves a
 * half log as the last one (the sweep removes it). Only the newest
 * PKG_LOG_KEEP logs of a package are kept.
 *
 * Beside each log, its times (`…-ok.times.gz`, renamed into place before
 * the log): a first line naming the build's phases as the engine timed
 * them, `# sandbox=MS sources=MS build=MS pack=MS` (assembling the
 * sandbox's root, laying out the sources, running the build script,
 * packing the output), then one line a log line: the milliseconds from the
 * build script's start to when that line came. `peerpkgs log --times`
 * prints them beside the lines, and `--phases` adds them up by step.
 */
const crypto = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { homeLayout } from '../home.ts';
import { settings } from '../settings.ts';
import { temporaryName, forget, removeTemporaryFile, withTemporaryFile } from '../archive/temporary.ts';
import { namesIn } from '../archive/files.ts';

const LOG = /^(\d{8}T\d{9}Z)-(ok|failed)\.log\.gz$/;
const TIMES = /^(\d{8}T\d{9}Z-(?:ok|failed))\.times\.gz$/;
const NEWLINE = Buffer.from('\n');

/** The directory of the logs of the package in `pkgDir`. */
export function logDir(home: string, pkgDir: string): string {
  let real: string;
  try {
    real = fs.realpathSync(pkgDir);
  } catch {
    real = path.resolve(pkgDir);
  }
  const hash = crypto.createHash('sha256').update(real).digest('hex').slice(0, 12);
  return path.join(homeLayout.logs(home), `${path.basename(real)}-${hash}`);
}

export interface KeptLog {
  file: string;
  /** when the build ended */
  when: Date;
  ok: boolean;
}

/** The kept logs of the package in `pkgDir`, oldest first. */
export function listLogs(home: string, pkgDir: string): KeptLog[] {
  const dir = logDir(home, pkgDir);
  const names = namesIn(dir);
  return names
    .map((n) => ({ n, m: LOG.exec(n) }))
    .filter((x) => x.m)
    .sort((a, b) => (a.n < b.n ? -1 : 1))
    .map(({ n, m }) => ({ file: path.join(dir, n), when: parseStamp(m![1]!), ok: m![2] === 'ok' }));
}

/** The log of the package's last build, or null when none was kept. */
export function lastLog(home: string, pkgDir: string): string | null {
  const last = path.join(logDir(home, pkgDir), 'last');
  try {
    return path.join(path.dirname(last), fs.readlinkSync(last));
  } catch {
    return null;
  }
}

/** Write the log `file` decompressed to `out`. */
export async function printLog(file: string, out: NodeJS.WritableStream): Promise<void> {
  await pipeline(fs.createReadStream(file), zlib.createGunzip(), out, { end: false });
}

/** The engine's phases of one build, in milliseconds (see the top of this file). */
export interface BuildPhases {
  sandbox: number;
  sources: number;
  build: number;
  pack?: number;
}

/** A kept log's times: the phases and, a log line, when it came (ms from the build script's start). */
export interface LogTimes {
  phases: Partial<BuildPhases>;
  lines: number[];
}

/** The times kept beside the log `file`, or null when it has none (a log from before they were kept). */
export function logTimes(file: string): LogTimes | null {
  let text: string;
  try {
    text = zlib.gunzipSync(fs.readFileSync(file.replace(/\.log\.gz$/, '.times.gz'))).toString();
  } catch {
    return null;
  }
  const [head = '', ...rest] = text.split('\n');
  const phases: Partial<BuildPhases> = {};
  for (const m of head.matchAll(/(\w+)=(\d+)/g)) (phases as Record<string, number>)[m[1]!] = Number(m[2]);
  return { phases, lines: rest.filter((l) => l !== '').map(Number) };
}

/** The lines of the log `file`, decompressed, each as its bytes came (latin1: one char a byte). */
export function logLines(file: string): string[] {
  return zlib.gunzipSync(fs.readFileSync(file)).toString('latin1').split('\n');
}

/** The log of one build, written as its lines come. */
export class BuildLog {
  private readonly dir: string;
  private readonly tmp: string;
  private readonly gzip = zlib.createGzip();
  private readonly written: Promise<void>;
  /** when the build script started (began()), and when each line came after it */
  private t0 = performance.now();
  private readonly times: number[] = [];

  constructor(home: string, pkgDir: string) {
    this.dir = logDir(home, pkgDir);
    fs.mkdirSync(this.dir, { recursive: true });
    recordPackage(this.dir, pkgDir);
    this.tmp = temporaryName(path.join(this.dir, 'log.gz'));
    this.written = pipeline(this.gzip, fs.createWriteStream(this.tmp));
    this.written.catch(() => {}); // said by end()
  }

  /** The build script starts now: its lines are timed from here. */
  began(): void {
    this.t0 = performance.now();
  }

  /** A line of the build's output, without its newline. */
  line(bytes: Buffer): void {
    this.times.push(Math.round(performance.now() - this.t0));
    this.gzip.write(bytes);
    this.gzip.write(NEWLINE);
  }

  /** The build ended (`ok` or not): the log takes its place as the last
   * one, its times beside it, and the oldest beyond the retention go. */
  async end(ok: boolean, phases: Partial<BuildPhases> = {}): Promise<string> {
    this.gzip.end();
    try {
      await this.written;
      const base = `${stamp(new Date())}-${ok ? 'ok' : 'failed'}`;
      const name = `${base}.log.gz`;
      const head = `# ${Object.entries(phases)
        .map(([k, v]) => `${k}=${Math.round(v)}`)
        .join(' ')}\n`;
      // before the log: a log in place has its times
      withTemporaryFile(path.join(this.dir, `${base}.times.gz`), (tmp) => {
        fs.writeFileSync(tmp, zlib.gzipSync(head + this.times.map((t) => `${t}\n`).join('')));
        fs.renameSync(tmp, path.join(this.dir, `${base}.times.gz`));
      });
      fs.renameSync(this.tmp, path.join(this.dir, name));
      forget(this.tmp);
      const link = temporaryName(path.join(this.dir, 'last'));
      fs.symlinkSync(name, link);
      fs.renameSync(link, path.join(this.dir, 'last'));
      forget(link);
      prune(this.dir, settings().logKeep);
      return path.join(this.dir, name);
    } finally {
      removeTemporaryFile(this.tmp);
    }
  }
}

/** The link `package` in a package's log directory names the package
 * directory its logs are of: gc keeps the logs of packages of registered
 * trees, and can tell them only by this. */
export const PACKAGE_LINK = 'package';

function recordPackage(dir: string, pkgDir: string): void {
  const link = path.join(dir, PACKAGE_LINK);
  if (fs.existsSync(link)) return;
  let real: string;
  try {
    real = fs.realpathSync(pkgDir);
  } catch {
    real = path.resolve(pkgDir);
  }
  const tmp = temporaryName(link);
  fs.symlinkSync(real, tmp);
  fs.renameSync(tmp, link);
  forget(tmp);
}

/** Remove all but the newest `keep` logs in `dir`, and the times of logs that are gone. */
function prune(dir: string, keep: number): void {
  const names = fs.readdirSync(dir);
  const logs = names.filter((n) => LOG.test(n)).sort();
  for (const n of logs.slice(0, Math.max(0, logs.length - keep))) fs.rmSync(path.join(dir, n), { force: true });
  const kept = new Set(logs.slice(-keep));
  for (const n of names) {
    const m = TIMES.exec(n);
    if (m && !kept.has(`${m[1]}.log.gz`)) fs.rmSync(path.join(dir, n), { force: true });
  }
}

/** 2026-11-30T20:30:00.123Z as 20261130T203000123Z: sorts as it reads. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:.]/g, '');
}

function parseStamp(s: string): Date {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\d{3})Z$/.exec(s)!;
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}
