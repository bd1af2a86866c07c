/**
 * The dependency database: what redo knows about every target it has built
 * and every file whose content it has hashed.
 *
 * Layout under the state directory (`.redo/` at the top of the tree):
 *   db              snapshot, one JSON record a line
 *   journal/NAME    one append-only journal per running engine process
 *
 * An engine appends a line to its own journal as each target completes, so a
 * crash loses nothing that finished and two engines never write one file.
 * Loading reads the snapshot and then every journal; a later record for the
 * same path wins (records carry a sequence number). At exit an engine folds
 * the journals of finished processes into a new snapshot, renamed into place.
 *
 * A line that does not parse is skipped: the target it described is then
 * unknown and gets rebuilt, never wrongly taken as up to date.
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { Hash } from 'node:crypto';
import { crypto } from './lazy.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
import { namesIn } from '../archive/files.ts';

/** A dependency of a target, as recorded when the target was built. */
export type Dep =
  | { k: 'c'; p: string; id: string } // redo-ifchange: identity of p when used
  | { k: 'n'; p: string } // redo-ifcreate: p did not exist
  | { k: 'a' }; // redo-always

export interface TargetRecord {
  t: string; // path relative to the base directory
  seq: number; // when it was built (monotonic across engines)
  rule: string; // the .do file (base-relative) or "builtin:NAME"
  deps: Dep[];
  out: 'f' | 'd' | 'n'; // produced a file, a directory, or nothing
  sig: Sig | null; // stat signature of the output right after the build
  id: string; // identity dependents compare: "s:stamp", "h:sha256", "r:seq"
  oh?: string; // digest of the output file when `id` is a stamp, to tell a hand edit from a touch
}

/** The last build of `t` failed: rebuild it whatever its dependencies say. */
export interface IntentRecord {
  b: string;
  seq: number;
}

/** Content hash of a file, valid while its stat signature is unchanged. */
export interface FileRecord {
  f: string;
  sig: Sig | null; // null: written too recently to trust the signature
  h: string;
  seq: number;
}

/** `t` is no longer a target: its .do is gone and its output is a source. */
export interface ForgetRecord {
  x: string;
  seq: number;
}

type AnyRecord = TargetRecord | IntentRecord | FileRecord | ForgetRecord;

export class StateError extends Error {}

/** Stat signature: cheap proof that a file has not changed since hashed:
 * size, mtime, ctime (moves on any write, chmod or rename) and inode. */
export type Sig = [number, number, number, number];

export function statSig(st: Stats): Sig {
  return [st.size, st.mtimeMs, st.ctimeMs, st.ino];
}

/** Compared field by field: no string is built on the no-op path. */
export function sameSig(st: Stats, sig: Sig | null | undefined): boolean {
  return sig != null && sig[0] === st.size && sig[1] === st.mtimeMs && sig[2] === st.ctimeMs && sig[3] === st.ino;
}

/** Kernel timestamps are coarse: a file written within this many ms of the
 * stat may change again without its mtime moving, so its hash is not cached. */
const RACY_MS = 50;

/** one read buffer for every hash: allocating 64 KB per file made a build
 * of 2000 small targets hold tens of MB of garbage at its peak */
let hashBuf: Buffer | null = null;

export function hashFile(abs: string): string {
  const h = crypto().createHash('sha256');
  const fd = fs.openSync(abs, 'r');
  try {
    const buf = (hashBuf ??= Buffer.allocUnsafe(1 << 16));
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return digest(h);
}

/** Identity of content: SHA-256 cut to 128 bits, base64url. Plenty to tell
 * versions of one file apart, and it keeps the database small. */
export function digest(h: Hash): string {
  return h.digest().subarray(0, 16).toString('base64url');
}

export class State {
  readonly dir: string;
  readonly targets = new Map<string, TargetRecord>();
  readonly intents = new Map<string, number>();
  readonly files = new Map<string, FileRecord>();
  /** some record could not be read: targets may have been forgotten */
  damaged = false;
  /** targets another process recorded since our load, as a refresh read them: built there while we ran */
  readonly builtElsewhere = new Set<string>();
  private journalFd = -1;
  private pending: string[] = [];
  private journalPath = '';
  private seqLast = 0;
  /** bytes of each journal already read, so a reload reads only what is new */
  private readOffsets = new Map<string, number>();

  constructor(stateDir: string) {
    this.dir = stateDir;
  }

  /** Read snapshot and journals. A journal that vanishes while we read was
   * folded into the snapshot by another engine: start again. */
  load(): void {
    for (let attempt = 0; ; attempt++) {
      this.targets.clear();
      this.intents.clear();
      this.files.clear();
      this.readOffsets.clear();
      try {
        const journals = this.listJournals();
        this.readRecords(path.join(this.dir, 'db'), null);
        for (const j of journals) this.readRecords(j, j, true);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 5) continue;
        throw e;
      }
    }
  }

  /** Read what other engines appended since the last load or refresh. */
  refresh(): void {
    let journals: string[];
    try {
      journals = this.listJournals();
    } catch {
      return;
    }
    for (const j of journals) {
      if (j === this.journalPath) continue;
      try {
        this.readRecords(j, j, true, true);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        // folded into the snapshot meanwhile: reread everything
        this.load();
        return;
      }
    }
  }

  private listJournals(): string[] {
    const jdir = path.join(this.dir, 'journal');
    return namesIn(jdir)
      .filter((n) => !n.startsWith('.'))
      .sort()
      .map((n) => path.join(jdir, n));
  }

  private readRecords(file: string, key: string | null, mustExist = false, others = false): void {
    let data: string;
    const from = key ? (this.readOffsets.get(key) ?? 0) : 0;
    try {
      if (from === 0) {
        data = fs.readFileSync(file, 'utf8');
      } else {
        const fd = fs.openSync(file, 'r');
        try {
          const size = fs.fstatSync(fd).size;
          if (size <= from) return;
          const buf = Buffer.allocUnsafe(size - from);
          const n = fs.readSync(fd, buf, 0, buf.length, from);
          data = buf.subarray(0, n).toString('utf8');
        } finally {
          fs.closeSync(fd);
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !mustExist) return;
      throw e;
    }
    // only whole lines count; a torn last line is left for the next read
    const end = data.lastIndexOf('\n');
    if (end < 0) return;
    if (key) this.readOffsets.set(key, from + Buffer.byteLength(data.slice(0, end + 1)));
    // one native parse for the whole file; line by line only if it is damaged
    let recs: AnyRecord[] | null;
    try {
      recs = JSON.parse('[' + data.slice(0, end).replaceAll('\n', ',') + ']') as AnyRecord[];
    } catch {
      recs = null;
    }
    if (recs) {
      for (const rec of recs) this.apply(rec, others);
      return;
    }
    this.damaged = true;
    let start = 0;
    while (start < end) {
      const nl = data.indexOf('\n', start);
      const line = data.slice(start, nl);
      start = nl + 1;
      if (!line) continue;
      let rec: AnyRecord;
      try {
        rec = JSON.parse(line) as AnyRecord;
      } catch {
        continue;
      }
      this.apply(rec, others);
    }
  }

  private apply(rec: AnyRecord, others = false): void {
    if (typeof rec !== 'object' || rec === null || typeof rec.seq !== 'number') return;
    if (rec.seq > this.seqLast) this.seqLast = rec.seq;
    if ('t' in rec && typeof rec.t === 'string' && Array.isArray(rec.deps)) {
      const old = this.targets.get(rec.t);
      if (old && old.seq > rec.seq) return;
      this.targets.set(rec.t, rec);
      if (others) this.builtElsewhere.add(rec.t);
      const intent = this.intents.get(rec.t);
      if (intent !== undefined && intent < rec.seq) this.intents.delete(rec.t);
    } else if ('b' in rec && typeof rec.b === 'string') {
      const old = this.targets.get(rec.b);
      if (old && old.seq > rec.seq) return;
      this.intents.set(rec.b, rec.seq);
    } else if ('x' in rec && typeof rec.x === 'string') {
      const old = this.targets.get(rec.x);
      if (old && old.seq < rec.seq) this.targets.delete(rec.x);
    } else if ('f' in rec && typeof rec.f === 'string') {
      const old = this.files.get(rec.f);
      if (old && old.seq > rec.seq) return;
      this.files.set(rec.f, rec);
    }
  }

  nextSeq(): number {
    // microseconds since the epoch, forced monotonic: orders records of
    // several engines, which take turns on a target through its lock
    const now = Date.now() * 1000;
    this.seqLast = now > this.seqLast ? now : this.seqLast + 1;
    return this.seqLast;
  }

  /**
   * Records wait in memory and are written in batches: losing the last ones
   * to a crash only costs rebuilds, since every output redo renames into
   * place carries redo's mark (commit.ts, markGenerated) and a marked file
   * whose record is missing or stale is rebuilt, not taken for a hand edit.
   */
  private append(rec: AnyRecord): void {
    this.pending.push(JSON.stringify(rec));
    if (this.pending.length >= 256) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    // the state directory was removed under us: start a new journal
    if (this.journalFd >= 0 && !fs.existsSync(this.journalPath)) {
      fs.closeSync(this.journalFd);
      this.journalFd = -1;
    }
    if (this.journalFd < 0) {
      const jdir = path.join(this.dir, 'journal');
      fs.mkdirSync(jdir, { recursive: true });
      const name = `${Date.now().toString().padStart(15, '0')}-${process.pid}`;
      this.journalPath = path.join(jdir, name);
      this.journalFd = fs.openSync(this.journalPath, 'a');
    }
    fs.writeSync(this.journalFd, this.pending.join('\n') + '\n');
    this.pending = [];
  }

  /** The last build of `t` failed: rebuild it next time, whatever else. */
  markFailed(t: string): void {
    const seq = this.nextSeq();
    this.intents.set(t, seq);
    this.append({ b: t, seq });
  }

  recordTarget(rec: Omit<TargetRecord, 'seq'>): TargetRecord {
    const full: TargetRecord = { ...rec, seq: this.nextSeq() };
    this.targets.set(full.t, full);
    this.intents.delete(full.t);
    this.append(full);
    return full;
  }

  recordFile(f: string, sig: Sig | null, h: string): void {
    const rec: FileRecord = { f, sig, h, seq: this.nextSeq() };
    this.files.set(f, rec);
    this.append(rec);
  }

  /** Forget a target entirely (its output is gone and it is a source now). */
  forgetTarget(t: string): void {
    this.targets.delete(t);
    this.append({ x: t, seq: this.nextSeq() });
  }

  /**
   * Content hash of the file `rel` (absolute path `abs`), from the cache when
   * its stat signature is unchanged. Returns null if it does not exist.
   */
  fileHash(rel: string, abs: string, st: Stats): string {
    const cached = this.files.get(rel);
    if (cached && sameSig(st, cached.sig)) return cached.h;
    const h = st.isDirectory() ? 'dir' : hashFile(abs);
    const racy = Date.now() - st.mtimeMs < RACY_MS;
    if (!cached || cached.h !== h || !racy) this.recordFile(rel, racy ? null : statSig(st), h);
    return h;
  }

  /**
   * Fold finished journals into the snapshot. Only one engine compacts at a
   * time (a lock file); journals of live engines are left alone.
   */
  compact(isAlive: (pid: number) => boolean): void {
    this.flush();
    if (this.journalFd >= 0) {
      fs.closeSync(this.journalFd);
      this.journalFd = -1;
    }
    const lock = path.join(this.dir, 'compact.lock');
    let fd = -1;
    for (let attempt = 0; fd < 0 && attempt < 2; attempt++) {
      try {
        fd = fs.openSync(lock, 'wx');
      } catch {
        // another engine is at it, unless it died doing it
        let owner = NaN;
        try {
          owner = Number(fs.readFileSync(lock, 'utf8'));
        } catch {
          /* gone meanwhile */
        }
        if (owner && isAlive(owner)) return;
        fs.rmSync(lock, { force: true });
      }
    }
    if (fd < 0) return;
    try {
      fs.writeSync(fd, String(process.pid));
      const journals = this.listJournals();
      const done = journals.filter((j) => {
        const pid = Number(path.basename(j).split('-')[1]);
        return pid === process.pid || !isAlive(pid);
      });
      // rewriting the snapshot costs a read and a write of all of it: only
      // worth it once the journals are a good part of its size
      const size = (f: string) => fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0;
      const pending = done.reduce((n, j) => n + size(j), 0);
      if (done.length === 0 || (done.length < 64 && pending < Math.max(256 << 10, size(path.join(this.dir, 'db')) / 3))) return;
      // what other engines wrote since we loaded; then memory holds the
      // snapshot and every journal, and is written out as the new snapshot
      this.refresh();
      const lines: string[] = [];
      for (const r of this.targets.values()) lines.push(JSON.stringify(r));
      for (const [b, seq] of this.intents) lines.push(JSON.stringify({ b, seq }));
      for (const r of this.files.values()) lines.push(JSON.stringify(r));
      withTemporaryFile(path.join(this.dir, 'db'), (tmp) => {
        fs.writeFileSync(tmp, lines.length ? lines.join('\n') + '\n' : '');
        fs.renameSync(tmp, path.join(this.dir, 'db'));
      });
      for (const j of done) fs.rmSync(j, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    } finally {
      fs.closeSync(fd);
      fs.rmSync(lock, { force: true });
    }
  }

  close(): void {
    this.flush();
    if (this.journalFd >= 0) {
      fs.closeSync(this.journalFd);
      this.journalFd = -1;
    }
  }
}
