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
 */
const crypto = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { homeLayout } from '../home.ts';
import { settings } from '../settings.ts';
import { temporaryName, forget, removeTemporaryFile } from '../archive/temporary.ts';
import { namesIn } from '../archive/files.ts';

const LOG = /^(\d{8}T\d{9}Z)-(ok|failed)\.log\.gz$/;
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

/** The log of one build, written as its lines come. */
export class BuildLog {
  private readonly dir: string;
  private readonly tmp: string;
  private readonly gzip = zlib.createGzip();
  private readonly written: Promise<void>;

  constructor(home: string, pkgDir: string) {
    this.dir = logDir(home, pkgDir);
    fs.mkdirSync(this.dir, { recursive: true });
    recordPackage(this.dir, pkgDir);
    this.tmp = temporaryName(path.join(this.dir, 'log.gz'));
    this.written = pipeline(this.gzip, fs.createWriteStream(this.tmp));
    this.written.catch(() => {}); // said by end()
  }

  /** A line of the build's output, without its newline. */
  line(bytes: Buffer): void {
    this.gzip.write(bytes);
    this.gzip.write(NEWLINE);
  }

  /** The build ended (`ok` or not): the log takes its place as the last
   * one, and the oldest beyond the retention go. */
  async end(ok: boolean): Promise<string> {
    this.gzip.end();
    try {
      await this.written;
      const name = `${stamp(new Date())}-${ok ? 'ok' : 'failed'}.log.gz`;
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

/** Remove all but the newest `keep` logs in `dir`. */
function prune(dir: string, keep: number): void {
  const logs = fs
    .readdirSync(dir)
    .filter((n) => LOG.test(n))
    .sort();
  for (const n of logs.slice(0, Math.max(0, logs.length - keep))) fs.rmSync(path.join(dir, n), { force: true });
}

/** 2026-11-30T20:30:00.123Z as 20261130T203000123Z: sorts as it reads. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:.]/g, '');
}

function parseStamp(s: string): Date {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\d{3})Z$/.exec(s)!;
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}
