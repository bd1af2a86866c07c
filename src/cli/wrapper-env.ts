/**
 * What bin/peerpkgs sets for this process alone, taken back out of the
 * environment that what it runs inherits: glibc's malloc settings, put
 * before the user's own GLIBC_TUNABLES (glibc reads them once, as the
 * process starts). A .do script, a program under venv-run or a tool a
 * build starts gets the user's GLIBC_TUNABLES as the user set it.
 */
export function restoreWrapperEnv(env: NodeJS.ProcessEnv = process.env): void {
  const ours = env.PEERPKGS_MALLOC;
  if (ours === undefined) return;
  delete env.PEERPKGS_MALLOC;
  const all = env.GLIBC_TUNABLES ?? '';
  if (all !== ours && !all.startsWith(`${ours}:`)) return; // changed since: not ours to undo
  const user = all.slice(ours.length + 1);
  if (user) env.GLIBC_TUNABLES = user;
  else delete env.GLIBC_TUNABLES;
}
