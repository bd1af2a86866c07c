/**
 * Stopping the processes a build started, on a signal, so that none of them
 * outlives the build or writes on into what it removes.
 *
 * Signalled all at once, a parent can die before a child that still counts
 * on it. A sandbox is the case that matters: bwrap's outer process clones
 * the sandbox's init, which waits for the outer one to write its uid map
 * and asks to die with its parent (PR_SET_PDEATHSIG) only once its setup is
 * done. An outer bwrap killed in that window leaves the init running on
 * its own, adopted by the system's init and so below us no longer: blocked
 * for ever, or running the build to its end. (Of 200 bwraps stopped 0 to
 * 6 ms into their start, 44 were left so.)
 *
 * So the tree is first frozen and then signalled whole:
 *   1. every process below us is sent SIGSTOP, and looked for again until a
 *      look finds none new and all are stopped: a stopped process starts
 *      none (a fork under way as the signal comes completes first, and its
 *      child is found);
 *   2. each is then remembered by its pid and start time: it stays ours
 *      to stop after its parent is gone;
 *   3. each is sent SIGTERM, or SIGKILL if it is the init of a PID
 *      namespace (a sandbox's): an init takes from outside only SIGKILL,
 *      SIGSTOP and what it has a handler for, and its death ends
 *      everything in its namespace; then all SIGCONT;
 *   4. every 20 ms the tree is frozen again, and what was started meanwhile
 *      is told as in 3; what still runs 2 s after the first SIGTERM is
 *      sent SIGKILL, frozen as well. It resolves once none runs (or 10 s
 *      after the SIGKILL: a process in the kernel for good is left).
 */
const fs = process.getBuiltinModule('node:fs');

interface Proc {
  /** R, S, D, T (stopped), … */
  state: string;
  ppid: number;
  /** the start time in clock ticks since boot: with the pid, names one process */
  start: string;
}

/** Send `signal`; what went wrong, if it did: ESRCH (gone already) or EPERM (not ours to signal). */
export function tryKill(pid: number, signal: NodeJS.Signals = 'SIGTERM'): string | undefined {
  try {
    process.kill(pid, signal);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  }
}

/** Every process running, from /proc; not the zombies waiting to be
 * reaped, which have no children and take no signal. */
function processes(): Map<number, Proc> {
  const all = new Map<number, Proc>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // after the command's name in parentheses: state, ppid, …, start time (field 22)
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      all.set(Number(name), { state: fields[0]!, ppid: Number(fields[1]), start: fields[19]! });
    } catch {
      /* exited while we looked */
    }
  }
  return all;
}

/** The processes below `roots` (children before grandchildren), of `all`. */
function below(all: Map<number, Proc>, roots: Iterable<number>): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, p] of all) {
    const list = children.get(p.ppid) ?? [];
    list.push(pid);
    children.set(p.ppid, list);
  }
  const out: number[] = [];
  const seen = new Set<number>();
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      if (seen.has(c)) continue;
      seen.add(c);
      out.push(c);
      walk(c);
    }
  };
  for (const r of roots) walk(r);
  return out;
}

/** Every process below `root` still running (children before grandchildren). */
export function descendants(root: number): number[] {
  return below(processes(), [root]);
}

/** Whether the process is the init of a PID namespace below ours: its
 * pid there, the last of NSpid, is 1. */
function isNamespaceInit(pid: number): boolean {
  try {
    const line = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    const ids = line?.trim().split(/\s+/) ?? [];
    return ids.length > 1 && ids[ids.length - 1] === '1';
  } catch {
    return false;
  }
}

/** The processes of `ours` still running in the look `all`: the same pid with the same start time. */
function stillOurs(ours: Map<number, string>, all: Map<number, Proc>): number[] {
  return [...ours].filter(([pid, start]) => all.get(pid)?.start === start).map(([pid]) => pid);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Freeze what runs below us, and what of `ours` runs elsewhere, adding what
 * is new to `ours`. A process is frozen once stopped (T), not when sent
 * SIGSTOP: a clone under way as the signal comes (SIGSTOP does not cancel
 * one) adds its child first. And the look that ends it is one begun after
 * all were seen stopped: a look lists the processes before it reads their
 * states, and a child added between the two would not be listed. One
 * continued meanwhile (a nested build's own stop) is sent SIGSTOP again;
 * one we may not signal (EPERM: setuid) goes into `unstoppable` and is not
 * waited for. Bounded by `budgetMs`, for one that waits in the kernel (D)
 * and stops only once out of it. Returns the last look, and the processes
 * new to `ours`.
 */
async function freeze(ours: Map<number, string>, unstoppable: Map<number, string>, budgetMs: number): Promise<{ all: Map<number, Proc>; found: number[] }> {
  const until = performance.now() + budgetMs;
  const found: number[] = [];
  for (let settled = false; ;) {
    const all = processes();
    const fresh = below(all, [process.pid, ...stillOurs(ours, all)]).filter((pid) => ours.get(pid) !== all.get(pid)!.start);
    for (const pid of fresh) {
      ours.set(pid, all.get(pid)!.start);
      found.push(pid);
    }
    const moving = stillOurs(ours, all).filter((pid) => all.get(pid)!.state !== 'T' && all.get(pid)!.state !== 't' && unstoppable.get(pid) !== all.get(pid)!.start);
    for (const pid of moving) if (tryKill(pid, 'SIGSTOP') === 'EPERM') unstoppable.set(pid, all.get(pid)!.start);
    const still = fresh.length === 0 && moving.length === 0;
    if ((still && settled) || performance.now() > until) return { all, found };
    settled = still;
    if (fresh.length === 0 && moving.length > 0) await sleep(1);
  }
}

/**
 * Stop every process this one started, and theirs, as the module's comment
 * says: frozen, then SIGTERM (SIGKILL for a sandbox's init), then SIGKILL
 * for what still runs `graceMs` after the SIGTERM. Each round freezes the
 * tree again before it signals anything, for what a process started
 * meanwhile (one that traps SIGTERM and starts a sandbox) is as young as
 * any at the first. Resolves once none runs, so that what they were
 * writing (a sandboxed build's work directory) can be removed without them
 * writing on; what we may not signal, and what SIGKILL has not ended 10 s
 * on (a process in the kernel for good), it leaves.
 */
export async function stopDescendants(graceMs = 2000): Promise<void> {
  const ours = new Map<number, string>(); // pid → start time
  const unstoppable = new Map<number, string>(); // the same, of those we may not signal
  let told: number | undefined; // when the first SIGTERM went
  for (;;) {
    const since = told === undefined ? 0 : performance.now() - told;
    const { all, found } = await freeze(ours, unstoppable, Math.min(1000, Math.max(100, graceMs - since)));
    const running = stillOurs(ours, all).filter((pid) => unstoppable.get(pid) !== all.get(pid)!.start);
    if (running.length === 0 || since > graceMs + 10_000) return;
    if (since >= graceMs) for (const pid of running) tryKill(pid, 'SIGKILL');
    else for (const pid of found) if (running.includes(pid)) tryKill(pid, isNamespaceInit(pid) ? 'SIGKILL' : 'SIGTERM');
    told ??= performance.now();
    for (const pid of running) tryKill(pid, 'SIGCONT');
    await sleep(20);
  }
}
