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
 * for ever, or running the build to its end. (Stopping bwraps at random
 * moments of their start left a third of them so.)
 *
 * So the tree is first frozen and then signalled whole:
 *   1. every process below us is sent SIGSTOP, and looked for again until a
 *      look finds none new and all are stopped: a stopped process starts
 *      none (a fork under way as the signal comes completes first, and its
 *      child is found);
 *   2. each is then remembered by its pid and start time: it stays ours
 *      to stop after its parent is gone;
 *   3. each is sent SIGTERM, or SIGKILL if it is the init of a PID
 *      namespace (a sandbox's), which no other signal from outside reaches
 *      and whose death ends everything in its namespace; then all SIGCONT;
 *   4. what still runs 2 s later, of those and of anything they started
 *      meanwhile, is sent SIGKILL; it resolves once none runs.
 */
const fs = process.getBuiltinModule('node:fs');

interface Proc {
  /** R, S, D, T (stopped), … */
  state: string;
  ppid: number;
  /** the start time in clock ticks since boot: with the pid, names one process */
  start: string;
}

export function tryKill(pid: number, signal: NodeJS.Signals = 'SIGTERM'): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone already */
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

/**
 * Stop every process this one started, and theirs, as the module's comment
 * says: frozen, then SIGTERM (SIGKILL for a sandbox's init), then SIGKILL
 * for what still runs after `graceMs`. Resolves once none runs, so that
 * what they were writing (a sandboxed build's work directory) can be
 * removed without them writing on.
 */
export async function stopDescendants(graceMs = 2000): Promise<void> {
  const ours = new Map<number, string>(); // pid → start time
  const stillOurs = (all: Map<number, Proc>) => [...ours].filter(([pid, start]) => all.get(pid)?.start === start).map(([pid]) => pid);
  const signal = (pid: number, sig: NodeJS.Signals) => tryKill(pid, sig === 'SIGTERM' && isNamespaceInit(pid) ? 'SIGKILL' : sig);
  // 1 and 2: freeze what runs below us, and remember it. A process is
  // frozen once stopped (T), not when sent SIGSTOP: a clone under way as
  // the signal comes (SIGSTOP does not cancel one) adds its child first.
  // Bounded, for one that cannot be stopped (setuid) or waits in the kernel.
  const freezing = Date.now() + graceMs;
  // the look that ends it is one begun after all were seen stopped: a look
  // lists the processes before it reads their states, and a child added
  // between the two would not be listed
  for (let stopped = false; ;) {
    const all = processes();
    const found = below(all, [process.pid, ...stillOurs(all)]).filter((pid) => ours.get(pid) !== all.get(pid)!.start);
    for (const pid of found) {
      ours.set(pid, all.get(pid)!.start);
      tryKill(pid, 'SIGSTOP');
    }
    const moving = stillOurs(all).some((pid) => all.get(pid)!.state !== 'T' && all.get(pid)!.state !== 't');
    if ((found.length === 0 && !moving && stopped) || Date.now() > freezing) break;
    stopped = found.length === 0 && !moving;
    if (found.length === 0 && moving) await new Promise((r) => setTimeout(r, 1));
  }
  // 3: the whole tree told at once, then let run to act on it
  for (const pid of ours.keys()) signal(pid, 'SIGTERM');
  for (const pid of ours.keys()) tryKill(pid, 'SIGCONT');
  // 4: what they start meanwhile is told too; after the grace, all is killed
  for (let waited = 0; ; waited += 20) {
    const all = processes();
    for (const pid of below(all, [process.pid, ...stillOurs(all)])) {
      if (ours.get(pid) === all.get(pid)!.start) continue;
      ours.set(pid, all.get(pid)!.start);
      signal(pid, 'SIGTERM');
    }
    const running = stillOurs(all);
    if (running.length === 0) return;
    if (waited >= graceMs) for (const pid of running) tryKill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 20));
  }
}
