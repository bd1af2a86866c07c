/**
 * The one error of the package model, and how it names files.
 *
 * A TreeError is a mistake in the package tree a user must fix by editing a
 * file, so its message starts with `file:line:` and carries no stack. It is
 * a PeerpkgsError with the bad-tree exit status; the package rules turn one
 * into a RuleError, so that a build which meets one fails with that line
 * alone and passes that status on.
 */
import * as path from 'node:path';
import { errorClass, EXIT } from '../errors.ts';

// the exit status of a bad tree, whether a command or a build meets it
export class TreeError extends errorClass('TreeError', EXIT.badTree) {}

/** A path as the user would type it: relative to the cwd when under it. */
export function display(p: string): string {
  const rel = path.relative(process.cwd(), p);
  const outside = rel === '..' || rel.startsWith('../') || path.isAbsolute(rel);
  return rel && !outside ? rel : p;
}

/** `file:line: message` with the file shown as display() does. */
export function at(file: string, line: number, message: string): TreeError {
  return new TreeError(`${display(file)}:${line}: ${message}`);
}
