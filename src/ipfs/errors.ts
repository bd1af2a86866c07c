/**
 * What can go wrong when asking IPFS for something, as three kinds a caller
 * treats differently: the path is not there (a directory that was reached
 * does not have the name: a cache miss), the blocks could not be had in
 * time (no connected peer has them, or none is connected: a cache that is
 * down), or anything else (bad input, a broken repo). Kept apart from the
 * node so that callers can test for them without loading Helia.
 */
import { PeerpkgsError, EXIT } from '../errors.ts';

/** Any IPFS failure; `message` is one line for the user. */
export class IpfsError extends PeerpkgsError {}

/** The path does not exist in a directory that was reached. */
export class IpfsNotFound extends IpfsError {
  constructor(message: string) {
    super(message, EXIT.ipfsNotFound, 'IpfsNotFound');
  }
}

/** Blocks could not be fetched from any connected peer in time. */
export class IpfsUnreachable extends IpfsError {
  constructor(message: string) {
    super(message, EXIT.ipfsUnreachable, 'IpfsUnreachable');
  }
}

/** Which kind an error is, as the daemon's protocol names it. */
export type ErrorKind = 'notfound' | 'unreachable' | 'error';

export function kindOf(e: unknown): ErrorKind {
  if (e instanceof IpfsNotFound) return 'notfound';
  if (e instanceof IpfsUnreachable) return 'unreachable';
  return 'error';
}

export function errorOfKind(kind: string, message: string): IpfsError {
  if (kind === 'notfound') return new IpfsNotFound(message);
  if (kind === 'unreachable') return new IpfsUnreachable(message);
  return new IpfsError(message);
}
