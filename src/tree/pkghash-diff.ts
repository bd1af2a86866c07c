/**
 * What changed between two pkghash texts (format in the README), line by
 * line, and down through each dependency whose pkghash changed, into that
 * dependency's own lines: what `peerpkgs why` prints, the nix-diff of this
 * tree. The texts of dependencies are found by pkghash through `textOf`.
 */

/** The item a line is about, its keyword and name (`script "build"`,
 * `build-dep "a"`): an item in both texts whose line differs changed. */
function itemOf(line: string): string {
  const m = /^(script|fetch|file|build-dep|run-dep) ("(?:[^"\\]|\\.)*")/.exec(line);
  return m ? `${m[1]} ${m[2]}` : line.split(' ', 1)[0]!;
}

const DEP = /^(?:build|run)-dep "(?:[^"\\]|\\.)*" ([0-9a-f]{64})$/;

const linesOf = (text: string) => text.split('\n').filter(Boolean);

/**
 * The lines that differ, `- ` for the old text's, `+ ` for today's, each
 * item's old line before its new one; under a changed dependency, indented,
 * the lines of its own that differ.
 */
export function diffPkghashTexts(old: string, now: string, textOf: (pkghash: string) => string | null): string[] {
  const out: string[] = [];
  const shown = new Set<string>();
  const walk = (a: string, b: string, indent: string): void => {
    const before = linesOf(a);
    const after = linesOf(b);
    const removed = before.filter((l) => !after.includes(l));
    const added = after.filter((l) => !before.includes(l));
    const items = [...new Set([...removed, ...added].map(itemOf))];
    for (const item of items) {
      const was = removed.filter((l) => itemOf(l) === item);
      const is = added.filter((l) => itemOf(l) === item);
      for (const l of was) out.push(`${indent}- ${l}`);
      for (const l of is) out.push(`${indent}+ ${l}`);
      const from = DEP.exec(was[0] ?? '')?.[1];
      const to = DEP.exec(is[0] ?? '')?.[1];
      if (was.length === 1 && is.length === 1 && from && to) dependency(from, to, `${indent}    `);
    }
  };
  const dependency = (from: string, to: string, indent: string): void => {
    const pair = `${from} ${to}`;
    if (shown.has(pair)) return void out.push(`${indent}(as above)`);
    shown.add(pair);
    const a = textOf(from);
    const b = textOf(to);
    if (a === null) return void out.push(`${indent}(the text of pkghash ${from} was not recorded)`);
    if (b === null) return void out.push(`${indent}(the text of pkghash ${to} is not known)`);
    walk(a, b, indent);
  };
  walk(old, now, '');
  return out;
}
