/**
 * HTTP over libp2p streams, as libp2p's HTTP specification runs it on the
 * protocol `/http/1.1`: one HTTP/1.1 exchange on a stream, with no TCP
 * connection, TLS or address of its own (the stream is the connection,
 * Noise-encrypted and authenticated by the peer id).
 *
 * The daemon serves its trustless gateway (gateway.ts) this way to every
 * connected peer, and a node reading a whole file asks its connected peers
 * for the file's CAR this way before it asks them block by block over
 * bitswap (node.ts): one stream, flow-controlled by Yamux, instead of a
 * want-list round trip for every few blocks. Nothing a peer sends is
 * trusted more than a gateway's: every block of the CAR is hashed against
 * its CID (car-fetch.ts).
 *
 * A libp2p stream is made a Node stream (streamSocket) so that Node's own
 * HTTP server and client run on it unchanged: the server is given it as a
 * connection, the client gets it from an Agent's createConnection.
 */
import type * as Http from 'node:http';
import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';
import type { Stream } from '@libp2p/interface';

const http = createRequire(import.meta.url)('node:http') as typeof Http;

export const HTTP_PROTOCOL = '/http/1.1';

/**
 * What a paused stream may hold before libp2p resets it. A pause only
 * stops Yamux granting the sender more window: what was granted still
 * arrives. The node caps a stream's window at 4 MiB (node.ts); with
 * Yamux's 16 MiB a CAR read more slowly than it came held 16 MiB here and
 * 16 more in the socket, where libp2p's default of 4 MiB reset it mid-way.
 */
const READ_BUFFER = 16 * 2 ** 20;
/** what the Node side holds before the stream is paused: enough for a few frames, so it is not paused and resumed at every one */
const SOCKET_BUFFER = 2 ** 20;

/** `stream` as a Node Duplex with the socket methods Node's HTTP code calls: setTimeout as a socket's, the others no-ops (a stream has no socket options). */
export function streamSocket(stream: Stream): Duplex {
  // as a socket's: 'timeout' once nothing has come or gone for `ms` (0: never), which Node's HTTP client turns into the request's
  let idleMs = 0;
  let idle: NodeJS.Timeout | undefined;
  const active = () => {
    clearTimeout(idle);
    if (idleMs > 0 && !socket.destroyed) idle = setTimeout(() => socket.emit('timeout'), idleMs).unref();
  };
  let ended = false;
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, READ_BUFFER);
  const end = () => {
    if (!ended) {
      ended = true;
      socket.push(null);
    }
  };
  const socket = new Duplex({
    readableHighWaterMark: SOCKET_BUFFER,
    write(chunk: Buffer, _enc, cb) {
      active();
      try {
        if (stream.send(chunk)) cb();
        else stream.onDrain().then(() => cb(), cb);
      } catch (e) {
        cb(e as Error);
      }
    },
    final(cb) {
      stream.close().then(() => cb(), cb);
    },
    read() {
      if (stream.readStatus === 'paused') stream.resume();
    },
    destroy(err, cb) {
      if (stream.status === 'open') stream.abort(err ?? new Error('closed'));
      cb(err);
    },
  });
  // paused after the resume that dispatched the message, not during it: a
  // pause inside resume() is undone by the window update resume() sends
  // after dispatching, and the sender would go on unchecked
  let pausing = false;
  const pauseSoon = () => {
    if (pausing) return;
    pausing = true;
    queueMicrotask(() => {
      pausing = false;
      if (socket.readableLength >= socket.readableHighWaterMark && stream.readStatus === 'readable') stream.pause();
    });
  };
  stream.addEventListener('message', (e) => {
    // a list's parts one by one: its subarray() would join them into a copy
    let more = true;
    for (const b of e.data instanceof Uint8Array ? [e.data] : e.data) more = socket.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    if (!more) pauseSoon();
  });
  stream.addEventListener('end', end);
  stream.addEventListener('close', (e) => {
    if (e.error) socket.destroy(e.error);
    else end();
  });
  stream.addEventListener('message', active);
  socket.on('close', () => clearTimeout(idle));
  return Object.assign(socket, {
    setTimeout: (ms: number, cb?: () => void) => {
      idleMs = ms;
      if (cb) socket.once('timeout', cb);
      active();
      return socket;
    },
    setNoDelay: () => socket,
    setKeepAlive: () => socket,
    ref: () => socket,
    unref: () => socket,
  });
}

/** Serves `server`'s requests on every stream of HTTP_PROTOCOL; the server itself listens nowhere. */
export function serveOverStreams(server: Http.Server): (stream: Stream) => void {
  return (stream) => void server.emit('connection', streamSocket(stream));
}

/** An HTTP Agent whose every connection is a new stream `open` gives: requests through it go to one peer. */
export function streamAgent(open: (signal: AbortSignal) => Promise<Stream>): Http.Agent {
  const agent = new http.Agent({ keepAlive: false });
  const create = (_opts: unknown, cb: (err: Error | null, socket?: Duplex) => void): undefined => {
    open(AbortSignal.timeout(10_000)).then(
      (s) => cb(null, streamSocket(s)),
      (e: Error) => cb(e),
    );
    return undefined;
  };
  return Object.assign(agent, { createConnection: create });
}
