/**
 * The daemon's API, shared by the server (daemon.ts) and the client
 * (remote.ts): HTTP/1.1 over the unix socket $PEERPKGS_HOME/ipfs/api.sock,
 * one request an operation, arguments in the query string.
 *
 *   GET  /v1/id                                  → NodeId
 *   POST /v1/add?path=P&cidVersion=&rawLeaves=&pin=&hidden=&chunkSize=   → {cid}
 *                                                  (P is read by the daemon: same machine, same user)
 *   POST /v1/add-bytes?cidVersion=&…  body: the bytes → {cid}
 *   GET  /v1/cat?path=&timeoutMs=                 → the bytes, streamed
 *   GET  /v1/stat?path=&timeoutMs=                → Entry
 *   GET  /v1/ls?path=&timeoutMs=                  → Entry[]
 *   POST /v1/pin?cid=&timeoutMs=                  → {}
 *   POST /v1/publish?cid=&key=&lifetimeMs=        → {name}
 *   POST /v1/gc?dryRun=                           → CollectedBlocks (the blocks no pin reaches, removed)
 *   GET  /v1/resolve?name=&timeoutMs=             → {cid}
 *   POST /v1/connect   body: {"addrs": [...]}     → {failed: [{addr, error}]}
 *   POST /v1/gateways  body: {"urls": [...]}      → {}  (asks these gateways too)
 *
 * Errors: 404 (not found), 504 (unreachable) or 400 (anything else) with
 * {"kind": "notfound"|"unreachable"|"error", "message": "..."}. A cat that
 * fails after its first bytes were sent ends with the same JSON in the
 * `X-Ipfs-Error` trailer (URI-encoded), so a client never mistakes a cut
 * stream for a whole file. A client that goes away aborts its operation.
 */
import { errorOfKind, kindOf, type IpfsError } from './errors.ts';

export const ERROR_TRAILER = 'x-ipfs-error';

export function statusOf(e: unknown): number {
  const k = kindOf(e);
  return k === 'notfound' ? 404 : k === 'unreachable' ? 504 : 400;
}

export function encodeError(e: unknown): string {
  return JSON.stringify({ kind: kindOf(e), message: (e as Error)?.message ?? String(e) });
}

export function decodeError(text: string, fallback: string): IpfsError {
  try {
    const j = JSON.parse(text) as { kind?: string; message?: string };
    if (typeof j.message === 'string') return errorOfKind(j.kind ?? 'error', j.message);
  } catch {
    // not ours
  }
  return errorOfKind('error', fallback);
}
