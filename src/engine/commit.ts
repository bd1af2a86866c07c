/**
 * Committing a finished job: its output ($3, or what it wrote to stdout)
 * takes the target's name in one step, and the record of what the target
 * was made from goes to the state, with the identity its dependents see.
 *
 * Files redo makes carry a mark in their mtime: the microseconds are set to
 * GENERATED_US. When the state directory is lost, a marked file with a rule
 * is known to be an output and is rebuilt, while a file without the mark is
 * a source and is never overwritten (a default.do may match sources).
 */
import type { Stats } from 'node:fs';
const fs = process.getBuiltinModule('node:fs');
import { statSig, sameSig, hashFile, type Dep, type Sig, type State, type TargetRecord } from './state.ts';

const GENERATED_US = 777;

function markGenerated(abs: string, st: Stats): void {
  const secs = Math.floor(st.mtimeMs / 1000);
  fs.utimesSync(abs, st.atime, secs + GENERATED_US / 1e6);
}

export function isMarkedGenerated(st: Stats): boolean {
  return st.isFile() && Math.round((st.mtimeMs % 1000) * 1000) === GENERATED_US;
}

/** What commit needs of the job that ran. */
export interface FinishedJob {
  target: string; // base-relative
  rule: string;
  deps: Dep[];
  stamp: string | null;
  keep?: boolean;
}

/** Where the job's output may be. */
export interface Outputs {
  abs: string; // the target
  tmp3: string; // $3
  stdout: string | null; // the file holding what it wrote to stdout
  before: Stats | undefined; // lstat of the target before it ran
}

/** The identity recorded, or why the output was refused (an exit status
 * and a reason), $3 removed. */
export type Committed = { ok: true; id: string } | { ok: false; status: number; why: string };

/** Move the output into place and record what it was made from. */
export function commit(state: State, job: FinishedJob, o: Outputs): Committed {
  const { abs, tmp3, stdout, before } = o;
  const t = job.target;
  const st3 = fs.lstatSync(tmp3, { throwIfNoEntry: false });
  const stOut = stdout ? fs.statSync(stdout, { throwIfNoEntry: false }) : undefined;
  const wroteStdout = stOut !== undefined && stOut.size > 0;
  const refuse = (status: number, why: string): Committed => {
    rmTmp(tmp3);
    return { ok: false, status, why };
  };
  if (st3 && wroteStdout) return refuse(207, 'wrote to both $3 and stdout');
  const now = fs.lstatSync(abs, { throwIfNoEntry: false });
  const touched = now && !now.isDirectory() && (!before || !sameSig(now, statSig(before)));
  if (touched) return refuse(206, 'the .do wrote to $1 (the target) itself; write to $3 or stdout');
  let out: 'f' | 'd' | 'n' = 'n';
  let sig: Sig | null = null;
  let oh: string | undefined;
  const seqId = () => 'r:' + state.nextSeq();
  let id: string;
  const prev = state.targets.get(t);
  const prevHash = prev?.out === 'f' ? (prev.oh ?? (prev.id.startsWith('h:') ? prev.id.slice(2) : '')) : '';
  // the old output, untouched since it was recorded
  const intact = prevHash !== '' && now?.isFile() === true && sameSig(now, prev!.sig);
  if (!st3 && !wroteStdout && job.keep && now?.isFile()) {
    // the rule says the target as it stands is its output
    out = 'f';
    sig = intact ? prev!.sig : statSig(now);
    oh = intact ? prevHash : hashFile(abs);
    id = 'h:' + oh;
  } else if (
    (st3?.isFile() || (!st3 && wroteStdout)) &&
    intact &&
    (st3 ?? stOut)!.size === now!.size &&
    ((st3 ?? stOut)!.mode & 0o7777) === (now!.mode & 0o7777) &&
    hashFile(st3 ? tmp3 : stdout!) === prevHash
  ) {
    // the same bytes as before: keep the old file (and its mtime, and
    // the cost of renaming over it, which journalled file systems make
    // wait for the new data to reach the disk)
    if (st3) rmTmp(tmp3);
    out = 'f';
    sig = prev!.sig;
    oh = prevHash;
    id = 'h:' + oh;
  } else if (st3 || wroteStdout) {
    const isDir = st3?.isDirectory() ?? false;
    if (isDir) {
      fs.rmSync(abs, { recursive: true, force: true });
    } else {
      const old = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (old?.isDirectory()) fs.rmSync(abs, { recursive: true, force: true });
    }
    const from = st3 ? tmp3 : stdout!;
    const stFrom = st3 ?? stOut!;
    // marked before it takes the target's name (the mark: see above)
    if (stFrom.isFile()) markGenerated(from, stFrom);
    try {
      if (st3) fs.renameSync(tmp3, abs);
      else moveInto(stdout!, abs, tmp3);
    } catch (e) {
      return refuse(209, `cannot put the output in place: ${(e as Error).message}`);
    }
    const st = fs.statSync(abs, { throwIfNoEntry: false });
    if (isDir) {
      out = 'd';
      id = seqId();
    } else if (st) {
      out = 'f';
      sig = statSig(st);
      oh = hashFile(abs);
      id = 'h:' + oh;
    } else {
      id = seqId(); // a dangling symlink
    }
  } else if (now?.isDirectory()) {
    // the .do made (or kept) the target as a directory of its own
    out = 'd';
    id = seqId();
  } else {
    // wrote nothing: there is no target file (a previous one is removed)
    if (now) fs.rmSync(abs, { force: true });
    id = seqId();
  }
  if (job.stamp !== null) id = 's:' + job.stamp;
  else oh = undefined; // the id holds it
  const rec: Omit<TargetRecord, 'seq'> = {
    t,
    rule: job.rule,
    deps: job.deps,
    out,
    sig,
    id,
  };
  if (oh) rec.oh = oh;
  state.recordTarget(rec);
  return { ok: true, id };
}

/** Rename `from` onto `to`; across file systems, copy next to `to` first
 * (as `via`) so that the target still appears in one step. */
function moveInto(from: string, to: string, via: string): void {
  try {
    fs.renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    fs.copyFileSync(from, via);
    fs.renameSync(via, to);
    fs.rmSync(from, { force: true });
  }
}

/** Remove `p`, file or directory, if it is there. */
export function rmTmp(p: string): void {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (st) fs.rmSync(p, { recursive: st.isDirectory(), force: true });
}
