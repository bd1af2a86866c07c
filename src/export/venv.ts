/**
 * Venvs, as p2pkgs has them: a directory holding a closure's merged
 * outputs, and bin/venv-run, which runs a command with the venv's top-level
 * directories in place of the host's.
 *
 * A venv is cheap to make because its files are hardlinks into the output
 * store (copies where the venv is on another filesystem), so it is made
 * afresh each time rather than patched: in a temporary sibling, renamed
 * into place over the older venv, which is then removed. A failure leaves
 * the older venv as it was and nothing half-made. A directory is replaced
 * only if it is a venv (it has .peerpkgs-venv, which also lists the
 * packages) or empty: `-o ~` must not delete a home directory. One
 * writer at a time replaces a venv: the lock is a file beside it,
 * `.DIR.lock` (engine/locks.ts), which a killed writer does not hold.
 *
 * Nothing in a venv has a write bit, its own directory and bin/venv-run
 * included: its files are the output store's, and a write through one
 * would change every venv, export and build sharing it. A user who must
 * change one copies it out (or runs `chmod`, which `peerpkgs verify` then
 * reports).
 *
 * Synchronous inside, as merge.ts is, for the same reason.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { ManifestEntry } from '../archive/manifest.ts';
import { storedManifest } from '../store/outputs.ts';
// verify.ts (hashing and streams) is loaded by checkVenv alone: making a
// venv or a profile generation reads no file's content
import type { Damage } from '../store/verify.ts';
import { withLockFile } from '../engine/locks.ts';
import { planMerge, writeMerged, replaceDir, lookup, MergeError, type MergePlan, type Output, type Settled, type Strategy, type Written } from '../archive/merge.ts';
import { removeTreeSync } from '../archive/files.ts';
import { temporaryName, forget } from '../archive/temporary.ts';

/** The venv's record of itself: a format line, then `NAME SHA256` a package, in merge order. */
export const VENV_RECORD = '.peerpkgs-venv';
const RECORD_HEADER = 'peerpkgs-venv 1';

/**
 * DIR/bin/venv-run, the script that runs a command "in" a venv:
 * under bwrap, with the host's root visible and the venv's top-level
 * directories in place of the host's.
 *
 * Why it is built the way it is:
 *
 * - POSIX sh only (dash is /bin/sh on Debian; p2pkgs' bash arrays fail
 *   there). The bwrap arguments are collected in "$@" behind the user's
 *   command, which is then rotated to the end.
 * - It finds its venv from its own path, following symlinks, so a venv can
 *   be moved or its venv-run linked from ~/bin. Nothing but builtins,
 *   readlink (or ls, where readlink is missing) and bwrap runs, all before
 *   the substitution: once the venv's /bin and /usr hide the host's, the
 *   script runs nothing more, it has become bwrap (exec), which execs the
 *   command, so exit statuses reach the caller unchanged (a command killed
 *   by signal N exits 128+N, as a shell reports it).
 * - bwrap starts from an empty root on which each host top-level entry is
 *   bound by itself, not `--bind / /` with the venv's directories bound over
 *   it: on a merged-/usr host /bin is a symlink to usr/bin, and a mount on
 *   /bin would land on the host's /usr/bin. Host symlinks are recreated as
 *   symlinks, so /bin -> usr/bin leads to the venv's /usr when it has one.
 * - The host's entries are bound read-write with their devices and
 *   submounts (--dev-bind), /dev and /proc included: a program writes to
 *   its working directory and finds its terminal (/dev/pts/N) as on the
 *   host. bwrap's fresh --dev would drop the user's terminal and devices,
 *   and a fresh /proc shows the same processes without a PID namespace.
 * - The venv's entries are bound read-only: their files are hardlinks into
 *   the output store, which a program writing to /usr/lib would corrupt for
 *   every venv and build sharing them.
 * - /dev, /proc and /sys are the kernel's and never substituted; nor are
 *   the venv's dot entries (its .peerpkgs-venv record).
 * - The environment, PATH included, and the working directory are kept
 *   (bwrap falls back to $HOME when the directory is hidden by the venv).
 *   Nothing is unshared but the mount namespace (and, for a user without
 *   privileges, the user namespace bwrap needs for it). --die-with-parent:
 *   a signal that kills venv-run (bwrap) kills the command too; ^C reaches
 *   both, as they share the terminal's process group.
 */
export const VENV_RUN = `#!/bin/sh
# venv-run CMD [ARG...]: run CMD with this venv's top-level directories
# (bin, lib, usr, ...) in place of the host's, under bwrap. Made by
# peerpkgs' venv; POSIX sh; runs nothing after the substitution but CMD.
# a leading -- ends venv-run's options (it has none), as for any command
if [ "$1" = -- ]; then shift; fi
if [ $# -eq 0 ]; then
  echo 'usage: venv-run [--] CMD [ARG...]' >&2
  exit 2
fi
if ! command -v bwrap >/dev/null 2>&1; then
  echo 'venv-run: bwrap (bubblewrap) is not on PATH: install it, e.g. apt-get install bubblewrap' >&2
  exit 127
fi

linktarget() {
  if command -v readlink >/dev/null 2>&1; then
    readlink -- "$1"
  else
    t=$(ls -ld -- "$1") && printf '%s\\n' "\${t#* -> }"
  fi
}

# The venv is the parent of the directory this script really lives in.
self=$0
case $self in
*/*) ;;
*) if [ -f "./$self" ]; then self=./$self; else self=$(command -v "$self") || exit 126; fi ;;
esac
hops=0
while [ -L "$self" ]; do
  hops=$((hops + 1))
  if [ $hops -gt 40 ]; then
    echo "venv-run: $0: too many levels of symbolic links" >&2
    exit 126
  fi
  t=$(linktarget "$self") || exit 126
  case $t in
  /*) self=$t ;;
  *) self=\${self%/*}/$t ;;
  esac
done
venv=$(cd -P -- "\${self%/*}/.." && pwd -P) || exit 126

n=$#
substituted() {
  case $1 in
  dev | proc | sys | .*) return 1 ;;
  esac
  [ -e "$venv/$1" ] || [ -L "$venv/$1" ]
}
for e in /* /.[!.]* /..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  name=\${e#/}
  if substituted "$name"; then
    continue
  elif [ -L "$e" ]; then
    set -- "$@" --symlink "$(linktarget "$e")" "$e"
  elif [ -d "$e" ]; then
    set -- "$@" --dev-bind "$e" "$e"
  else
    set -- "$@" --bind "$e" "$e"
  fi
done
for v in "$venv"/*; do
  name=\${v##*/}
  substituted "$name" || continue
  if [ -L "$v" ]; then
    set -- "$@" --symlink "$(linktarget "$v")" "/$name"
  else
    set -- "$@" --ro-bind "$v" "/$name"
  fi
done

# Find the command as the sandbox will (bwrap reports a command it cannot
# run with status 1, where a shell says 127 or 126): each directory is the
# venv's when its top-level entry is. A name leading to a symlink here is
# left to bwrap, which follows it inside, where an absolute target points.
seen() {
  case $1 in
  /*) ;;
  *) set -- "$PWD/$1" ;;
  esac
  t=\${1#/}
  if substituted "\${t%%/*}"; then p=$venv/$t; else p=$1; fi
}
runnable() {
  seen "$1"
  if [ -L "$p" ] && [ ! -e "$p" ]; then return 0; fi
  [ -e "$p" ] || return 127
  [ -f "$p" ] && [ -x "$p" ] || return 126
}
cmd=$1
case $cmd in
*/*) runnable "$cmd"; status=$? ;;
*)
  status=127
  rest=$PATH:
  while [ -n "$rest" ]; do
    d=\${rest%%:*}
    rest=\${rest#*:}
    runnable "\${d:-.}/$cmd"
    s=$?
    if [ $s -eq 0 ]; then status=0; break; fi
    if [ $s -eq 126 ]; then status=126; fi
  done
  ;;
esac
case $status in
127) echo "venv-run: $cmd: command not found" >&2; exit 127 ;;
126) echo "venv-run: $cmd: not an executable file" >&2; exit 126 ;;
esac

set -- "$@" --die-with-parent --
# the command, first in "$@", goes to the end
while [ $n -gt 0 ]; do
  set -- "$@" "$1"
  shift
  n=$((n - 1))
done
exec bwrap "$@"
`;

export interface VenvOptions {
  dir: string;
  /** The closure's unpacked outputs, each after its run-deps. */
  packages: Output[];
  strategy?: Strategy;
  /** Told once when another process is writing the venv and this one waits. */
  onWait?: (pid: number) => void;
}

export interface VenvResult {
  /** Absolute. */
  dir: string;
  /** Paths in the venv (venv-run and the record not counted). */
  entries: number;
  linked: number;
  copied: number;
  /** Conflicts the strategy settled. */
  settled: Settled[];
  /** Whether an older venv was replaced. */
  replaced: boolean;
  ms: number;
}

/** What a merged directory of ours holds besides its packages: its run script and its record, each under bin/ and at the top. */
export interface OwnFiles {
  /** e.g. 'venv-run', made bin/NAME */
  run: string;
  /** e.g. VENV_RECORD */
  record: string;
  /** 'a venv', 'a profile generation': who refuses a package that provides them */
  what: string;
}

/** The script that runs a command in a merged directory, as bin/NAME (VENV_RUN under another name). */
export function runScript(name: string): string {
  return name === 'venv-run' ? VENV_RUN : VENV_RUN.replaceAll('venv-run', name);
}

/**
 * The merge of `packages`, refused when a package takes what the
 * directory keeps for its own (bin as no directory, its run script, its
 * record). `overrides` names a strategy for single paths (a profile's).
 */
export function planMergedDir(packages: Output[], strategy: Strategy, own: OwnFiles, overrides?: ReadonlyMap<string, Strategy>): MergePlan {
  const plan = planMerge(packages, strategy, overrides);
  const bin = lookup(plan, 'bin');
  if (bin !== undefined && bin.type !== 'directory') {
    throw new MergeError(`${packages[bin.pkg]!.name} provides bin as a ${bin.type}; ${own.what} needs a bin directory for bin/${own.run}`);
  }
  for (const reserved of [`bin/${own.run}`, own.record]) {
    const n = lookup(plan, reserved);
    if (n !== undefined) throw new MergeError(`${packages[n.pkg]!.name} provides ${reserved}, which ${own.what} keeps for its own`);
  }
  return plan;
}

/** Writes the plan into the empty directory `tmp`, with bin/RUN and the record: every directory and file without write bits. */
export function writeMergedDir(plan: MergePlan, tmp: string, own: OwnFiles, record: string): Written {
  const written = writeMerged(plan, tmp, { readOnly: true });
  const binDir = path.join(tmp, 'bin');
  if (lookup(plan, 'bin') === undefined) fs.mkdirSync(binDir, 0o555);
  const binMode = fs.statSync(binDir).mode & 0o7777;
  fs.chmodSync(binDir, binMode | 0o200);
  fs.writeFileSync(path.join(binDir, own.run), runScript(own.run), { mode: 0o555 });
  fs.chmodSync(binDir, binMode);
  fs.writeFileSync(path.join(tmp, own.record), record, { mode: 0o444 });
  fs.chmodSync(tmp, 0o555);
  return written;
}

const VENV_FILES: OwnFiles = { run: 'venv-run', record: VENV_RECORD, what: 'a venv' };

/** Makes (or replaces) the venv `dir` from `packages`. */
export async function makeVenv(opts: VenvOptions): Promise<VenvResult> {
  const t0 = performance.now();
  const dir = target(opts.dir);
  const plan = planMergedDir(opts.packages, opts.strategy ?? 'error', VENV_FILES);

  const parent = path.dirname(dir);
  fs.mkdirSync(parent, { recursive: true });
  return withLockFile(path.join(parent, `.${path.basename(dir)}.lock`), opts.onWait ?? (() => {}), () => {
    // a killed writer's temporaries beside DIR are swept when this one is named
    const tmp = temporaryName(dir);
    fs.mkdirSync(tmp);
    try {
      const record = opts.packages.map((p) => `${p.name} ${p.sha256}\n`).join('');
      const written = writeMergedDir(plan, tmp, VENV_FILES, `${RECORD_HEADER}\n${record}`);
      const replaced = replaceDir(tmp, dir);
      return { dir, entries: plan.entries, ...written, settled: plan.settled, replaced, ms: performance.now() - t0 };
    } catch (e) {
      removeTreeSync(tmp);
      throw e;
    } finally {
      forget(tmp); // renamed into place, or removed
    }
  });
}

/** The sha256s of the outputs a venv's record lists; null when `dir` is no venv (any more). */
export function venvOutputs(dir: string): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, VENV_RECORD), 'utf8');
  } catch {
    return null;
  }
  const [header, ...lines] = text.split('\n').filter(Boolean);
  if (header !== RECORD_HEADER) return null;
  return lines.map((l) => l.split(' ')[1] ?? '').filter((sha) => /^[0-9a-f]{64}$/.test(sha));
}

/** The directory to make: through a symlink to an older venv, the venv itself. */
function target(dir: string): string {
  const abs = path.resolve(dir);
  const st = fs.lstatSync(abs, { throwIfNoEntry: false });
  if (st === undefined) return abs;
  const real = st.isSymbolicLink() ? fs.realpathSync(abs) : abs;
  if (!fs.statSync(real).isDirectory()) throw new MergeError(`${dir} exists and is not a directory: remove it or choose another place for the venv`);
  if (!fs.existsSync(path.join(real, VENV_RECORD)) && fs.readdirSync(real).length > 0) {
    throw new MergeError(`${dir} exists and is not a venv (it has no ${VENV_RECORD}): remove it or choose another place for the venv`);
  }
  return real;
}

export interface VenvCheck {
  dir: string;
  damage: Damage[];
  /** Packages of the venv whose manifest the output store does not have: their files were not checked. */
  unknown: string[];
}

/**
 * Checks a venv against the manifests of the outputs its record lists:
 * every path must be one of its packages' (at PATH, or at PATH@PACKAGE
 * when namespaced), as that package has it but with no write bit, and
 * every path of a package must be there, unless a conflict settled it
 * away. Which strategy made the venv is not recorded, so a path is right
 * when any of the packages providing it has it so.
 */
export async function checkVenv(dir: string, outputsDir: string): Promise<VenvCheck> {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, VENV_RECORD), 'utf8');
  } catch {
    throw new MergeError(`${dir} is not a venv (it has no ${VENV_RECORD})`);
  }
  const [header, ...lines] = text.split('\n').filter(Boolean);
  if (header !== RECORD_HEADER) throw new MergeError(`${path.join(dir, VENV_RECORD)}: not a venv record (first line ${JSON.stringify(header)})`);
  const pkgs = lines.map((l) => {
    const [name = '', sha256 = ''] = l.split(' ');
    return { name, manifest: /^[0-9a-f]{64}$/.test(sha256) ? storedManifest(path.join(outputsDir, sha256)) : null };
  });
  const check: VenvCheck = { dir, damage: [], unknown: pkgs.filter((p) => p.manifest === null).map((p) => p.name) };
  const { Hasher, problem, walk } = await import('../store/verify.ts');
  const hasher = new Hasher();
  const bad = (p: string, what: string) => check.damage.push({ path: p, what });

  /** The entries that may be at venv path `p`: each package's at p, and a namespaced NAME@PKG's as PKG's NAME. */
  const candidates = (p: string) => {
    const found: Array<{ e: ManifestEntry; m: ReadonlyMap<string, ManifestEntry> }> = [];
    for (const k of pkgs) {
      const e = k.manifest?.get(p);
      if (e !== undefined) found.push({ e, m: k.manifest! });
    }
    const parts = p.split('/');
    parts.forEach((c, i) => {
      const at = c.lastIndexOf('@');
      const k = at > 0 ? pkgs.find((x) => x.name === c.slice(at + 1)) : undefined;
      const e = k?.manifest?.get([...parts.slice(0, i), c.slice(0, at), ...parts.slice(i + 1)].join('/'));
      if (e !== undefined) found.push({ e, m: k!.manifest! });
    });
    return found;
  };

  const top = fs.statSync(dir);
  if (top.mode & 0o222) bad('', `mode ${(top.mode & 0o7777).toString(8)}, should have no write bits`);
  const run = path.join(dir, 'bin/venv-run');
  const runSt = fs.lstatSync(run, { throwIfNoEntry: false });
  if (runSt === undefined) bad('bin/venv-run', 'missing');
  else if (!runSt.isFile() || (runSt.mode & 0o7777) !== 0o555 || fs.readFileSync(run, 'utf8') !== VENV_RUN) bad('bin/venv-run', 'not the one bin/venv writes');
  for (const p of walk(dir)) {
    if (p === VENV_RECORD || p === 'bin/venv-run') continue;
    const cands = candidates(p);
    if (cands.length === 0) {
      const st = fs.lstatSync(path.join(dir, p));
      // bin is the venv's own when no package has one
      if (p === 'bin' && st.isDirectory()) {
        if (st.mode & 0o222) bad(p, `mode ${(st.mode & 0o7777).toString(8)}, should have no write bits`);
      } else if (!check.unknown.length) {
        bad(p, 'in none of its packages');
      }
      continue;
    }
    const whys = await Promise.all(cands.map((c) => problem(path.join(dir, p), c.e, c.m, hasher)));
    if (!whys.includes(null)) bad(p, whys[whys.length - 1]!);
  }
  // what a package has and the venv lacks, unless a conflict settled it away
  const missing = new Set<string>();
  for (const k of pkgs) {
    for (const p of k.manifest?.keys() ?? []) {
      const parts = p.split('/');
      for (let i = 1; i <= parts.length; i++) {
        const prefix = parts.slice(0, i).join('/');
        const st = fs.lstatSync(path.join(dir, prefix), { throwIfNoEntry: false });
        if (st === undefined) {
          const parent = path.join(dir, path.dirname(prefix));
          const namespaced = fs.readdirSync(parent).some((n) => n.startsWith(`${parts[i - 1]}@`));
          if (!namespaced && !missing.has(prefix)) {
            missing.add(prefix);
            bad(prefix, 'missing');
          }
          break;
        }
        if (!st.isDirectory()) break; // a file, or a symlink, won over a directory
      }
    }
  }
  return check;
}
