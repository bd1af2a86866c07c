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
import { Uint8ArrayList } from './deps-dag.ts';

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
export function streamSocket(stream: Stream, opts: { closeIdleMs?: number } = {}): Duplex {
  // as a socket's: 'timeout' once nothing has come or gone for `ms` (0: never), which Node's HTTP client turns into the request's;
  // and, with closeIdleMs, destroyed once idle that long, whatever Node's HTTP code sets
  let idleMs = 0;
  let idle: NodeJS.Timeout | undefined;
  let dead: NodeJS.Timeout | undefined;
  const active = () => {
    clearTimeout(idle);
    clearTimeout(dead);
    if (socket.destroyed) return;
    if (idleMs > 0) idle = setTimeout(() => socket.emit('timeout'), idleMs).unref();
    if (opts.closeIdleMs) dead = setTimeout(() => socket.destroy(new Error('idle')), opts.closeIdleMs).unref();
  };
  let ended = false;
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, READ_BUFFER);
  const end = () => {
    if (!ended) {
      ended = true;
      socket.push(null);
    }
  };
  const send = (data: Uint8Array | Uint8ArrayList, cb: (e?: Error | null) => void) => {
    active();
    try {
      if (stream.send(data)) cb();
      else drained(cb);
    } catch (e) {
      cb(e as Error);
    }
  };
  const socket = new Duplex({
    readableHighWaterMark: SOCKET_BUFFER,
    write(chunk: Buffer, _enc, cb) {
      send(chunk, cb);
    },
    // what was written while corked (a CAR section's prefix and its block)
    // goes as one message: one Yamux frame, and Noise frames of up to 64 KiB,
    // rather than a small frame of its own for every piece
    writev(chunks: Array<{ chunk: Buffer }>, cb) {
      send(new Uint8ArrayList(...chunks.map((c) => c.chunk)), cb);
    },
    final(cb) {
      stream.close().then(() => cb(), cb);
    },
    read() {
      if (stream.readStatus === 'paused') stream.resume();
    },
    destroy(err, cb) {
      // an exchange that went well closes the stream (Node destroys the socket
      // at its end); only a failure resets it, as the peer should then see
      if (stream.status === 'open') {
        if (err) stream.abort(err);
        else {
          // nothing more is read: what the peer may still send is dropped, not waited for
          if (!ended) stream.closeRead().catch(() => {});
          stream.close().catch((e: Error) => stream.abort(e));
        }
      }
      cb(err);
    },
  });
  // the next 'drain' (stream.onDrain()'s promise is made once and stays
  // resolved after the first, which let every later write through at once:
  // a reader that stopped made the sender queue a whole CAR)
  const drained = (cb: (e?: Error | null) => void) => {
    const onDrain = () => {
      stream.removeEventListener('close', onClose);
      cb();
    };
    const onClose = () => {
      stream.removeEventListener('drain', onDrain);
      cb(new Error('the stream closed'));
    };
    stream.addEventListener('drain', onDrain, { once: true });
    stream.addEventListener('close', onClose, { once: true });
  };
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
    active();
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
  socket.on('close', () => {
    clearTimeout(idle);
    clearTimeout(dead);
  });
  active();
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

/** The most streams served at once, over all connections (libp2p bounds them a connection), as the gateway's port bounds its connections. */
const MAX_STREAMS = 256;
/** A stream that neither sends nor takes anything this long is closed: Node's own request timeouts start only on a server that listens. */
const SERVE_IDLE_MS = 60_000;

/**
 * Serves `server`'s requests on every stream of HTTP_PROTOCOL; the server
 * itself listens nowhere. A client may half-close its side once its
 * request is sent, as libp2p's HTTP allows.
 */
export function serveOverStreams(server: Http.Server): (stream: Stream) => void {
  // (Node's HTTP server keeps this setting, unlisted, on the server object; false ends the response of a client that half-closed)
  (server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  let live = 0;
  return (stream) => {
    if (live >= MAX_STREAMS) return stream.abort(new Error('too many HTTP streams at once'));
    live++;
    const socket = streamSocket(stream, { closeIdleMs: SERVE_IDLE_MS });
    socket.once('close', () => live--);
    server.emit('connection', socket);
  };
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
