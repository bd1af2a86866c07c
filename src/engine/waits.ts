/**
 * Waiting and cycle detection: which target is waiting for which, while a
 * run builds them. A request that would close a loop of waits is a
 * dependency cycle; the slot scheduler (slots.ts) asks the same graph
 * whether a build is one a blocked job waits for.
 */
export class Waits {
  /** target -> targets it is waiting for, each with how many of its requests wait for it (two may, at once) */
  private readonly waits = new Map<string, Map<string, number>>();
  private readonly grew: (from: string, to: string) => void;

  /** @param grew told of each new wait, as it is made: what `reaches`
   * answers may have changed (the slot scheduler must look again) */
  constructor(grew: (from: string, to: string) => void = () => {}) {
    this.grew = grew;
  }

  /** `from` waits for `t` until `p` settles. */
  waitFor<T>(from: string, t: string, p: Promise<T>): Promise<T> {
    let w = this.waits.get(from);
    if (!w) this.waits.set(from, (w = new Map()));
    const n = w.get(t) ?? 0;
    w.set(t, n + 1);
    if (n === 0) this.grew(from, t);
    return p.finally(() => {
      const left = w.get(t)! - 1;
      if (left > 0) w.set(t, left);
      else w.delete(t);
    });
  }

  /** If `to` (transitively) waits for `from`, the path from→to→…→from. */
  cycleThrough(from: string, to: string): string[] | null {
    if (from === to) return [from, to];
    const seen = new Set<string>();
    const walk = (n: string, trail: string[]): string[] | null => {
      if (n === from) return trail;
      if (seen.has(n)) return null;
      seen.add(n);
      for (const m of this.waits.get(n)?.keys() ?? []) {
        const r = walk(m, [...trail, m]);
        if (r) return r;
      }
      return null;
    };
    return walk(to, [from, to]);
  }

  /** Does `from` (transitively) wait for `to`? */
  reaches(from: string, to: string): boolean {
    const seen = new Set<string>();
    const stack = [from];
    while (stack.length) {
      const n = stack.pop()!;
      for (const m of this.waits.get(n)?.keys() ?? []) {
        if (m === to) return true;
        if (!seen.has(m)) {
          seen.add(m);
          stack.push(m);
        }
      }
    }
    return false;
  }
}
