/**
 * Where peerpkgs keeps its state: $PEERPKGS_HOME, or ~/.cache/peerpkgs.
 * Every layer asks here, so that one variable moves the whole store (a
 * test, a CI cache, a second user) and nothing is written outside it.
 */
import * as os from 'node:os';
import * as path from 'node:path';

export function peerpkgsHome(env: NodeJS.ProcessEnv = process.env): string {
  // resolved now: a relative value must not change meaning when a build cds
  return env.PEERPKGS_HOME ? path.resolve(env.PEERPKGS_HOME) : path.join(os.homedir(), '.cache', 'peerpkgs');
}
