/**
 * Where peerpkgs keeps its state: $PEERPKGS_HOME, or ~/.cache/peerpkgs.
 * Every layer asks here, so that one variable moves the whole store (a
 * test, a CI cache, a second user) and nothing is written outside it.
 */
import { settings } from '../settings.ts';

export function peerpkgsHome(env: NodeJS.ProcessEnv = process.env): string {
  return settings(env).home;
}
