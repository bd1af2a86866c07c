/**
 * A job's environment: what a job's `export -p` says, how it differs from
 * the engine's, and the shell that applies the difference. A .do that
 * exports a variable before `redo-ifchange x` passes it on to x's .do, as
 * separate processes would.
 */

/** `s` as one word of shell. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Variables a job's environment always differs in, which are not passed on. */
const OWN_VARS = new Set(['PWD', 'OLDPWD', 'SHLVL', '_', 'REDO_JOB', 'REDO_DEPTH', 'REDO_TARGET']);

/** Parse `export -p` output (dash, bash --posix): name → value, or null for
 * a variable exported without a value. */
export function parseExports(text: string): Map<string, string | null> {
  const vars = new Map<string, string | null>();
  let i = 0;
  const n = text.length;
  while (i < n) {
    if (text.startsWith('export ', i)) i += 7;
    else if (text.startsWith('declare -x ', i)) i += 11;
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 256));
    if (!m) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    const name = m[0];
    i += name.length;
    if (text[i] !== '=') {
      vars.set(name, null);
      i = text.indexOf('\n', i) < 0 ? n : text.indexOf('\n', i) + 1;
      continue;
    }
    i++;
    let value = '';
    while (i < n && text[i] !== '\n') {
      const c = text[i]!;
      if (c === "'") {
        const end = text.indexOf("'", i + 1);
        value += text.slice(i + 1, end < 0 ? n : end);
        i = end < 0 ? n : end + 1;
      } else if (c === '"') {
        i++;
        while (i < n && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < n) i++;
          value += text[i++];
        }
        i++;
      } else if (c === '\\' && i + 1 < n) {
        value += text[i + 1];
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    i++;
    vars.set(name, value);
  }
  return vars;
}

/** What `now` sets or unsets compared with `base`, ignoring the variables
 * every job has of its own. */
export function envChanges(base: Map<string, string | null>, now: Map<string, string | null>): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const [k, v] of now) if (!OWN_VARS.has(k) && v !== null && base.get(k) !== v) out.set(k, v);
  for (const [k, v] of base) if (!OWN_VARS.has(k) && v !== null && !now.has(k)) out.set(k, null);
  return out;
}

/** Shell that applies `changes`: `export A='x'; unset B`. */
export function envScript(changes: Map<string, string | null>): string {
  const parts: string[] = [];
  for (const [k, v] of changes) parts.push(v === null ? `unset ${k}` : `export ${k}=${shQuote(v)}`);
  return parts.join('; ');
}
