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
 * packages) or empty: `-o ~` must not delete a home directory.
 *
 * Synchronous inside, as merge.ts is, for the same reason.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { planMerge, writeMerged, removeTree, replaceDir, lookup, MergeError, type Output, type Settled, type Strategy } from './merge.ts';

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
if [ $# -eq 0 ]; then
  echo 'usage: venv-run CMD [ARG...]' >&2
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

/** Makes (or replaces) the venv `dir` from `packages`. */
export async function makeVenv(opts: VenvOptions): Promise<VenvResult> {
  const t0 = performance.now();
  const dir = target(opts.dir);
  const plan = planMerge(opts.packages, opts.strategy ?? 'error');
  const bin = lookup(plan, 'bin');
  if (bin !== undefined && bin.type !== 'directory') {
    throw new MergeError(`${opts.packages[bin.pkg]!.name} provides bin as a ${bin.type}; a venv needs a bin directory for bin/venv-run`);
  }
  for (const reserved of ['bin/venv-run', VENV_RECORD]) {
    const n = lookup(plan, reserved);
    if (n !== undefined) throw new MergeError(`${opts.packages[n.pkg]!.name} provides ${reserved}, which a venv keeps for its own`);
  }

  const parent = path.dirname(dir);
  fs.mkdirSync(parent, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(parent, `.${path.basename(dir)}.tmp-`));
  try {
    const written = writeMerged(plan, tmp);
    if (bin === undefined) fs.mkdirSync(path.join(tmp, 'bin'), 0o755);
    fs.writeFileSync(path.join(tmp, 'bin/venv-run'), VENV_RUN, { mode: 0o755 });
    const record = opts.packages.map((p) => `${p.name} ${p.sha256}\n`).join('');
    fs.writeFileSync(path.join(tmp, VENV_RECORD), `${RECORD_HEADER}\n${record}`, { mode: 0o644 });
    fs.chmodSync(tmp, 0o755);
    const replaced = replaceDir(tmp, dir);
    return { dir, entries: plan.entries, ...written, settled: plan.settled, replaced, ms: performance.now() - t0 };
  } catch (e) {
    removeTree(tmp);
    throw e;
  }
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
