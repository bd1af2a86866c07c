/**
 * `peerpkgs ipfs daemon`: one long-lived node that serves its blocks and
 * IPNS records to peers and the API of protocol.ts to local commands on
 * $PEERPKGS_HOME/ipfs/api.sock.
 *
 * It refuses to start when another daemon answers on the socket, and
 * replaces a stale socket (one nobody answers on: a daemon that was
 * killed). Once listening it writes its peer id and multiaddrs to
 * $PEERPKGS_HOME/ipfs/addrs (temporary name, then rename) and prints them,
 * so that others can put them in PKG_IPFS_PEERS. SIGINT and SIGTERM stop
 * it cleanly: no new requests, the node closed, socket and addrs removed.
 *
 * The addresses stay the same across restarts: the peer id is the kept
 * identity's, and a listen address of port 0 asks for the port it was
 * given last time ($PEERPKGS_HOME/ipfs/listen), so the multiaddr peers
 * were given still reaches it; when that port is taken it takes a new one
 * and says so.
 *
 * With PKG_IPFS_GATEWAY_LISTEN set it also serves its blocks as a
 * trustless HTTP gateway (gateway.ts) and prints `gateway: http://…`. It
 * tells its peers where (an /http multiaddr among those identify sends,
 * or those of PKG_IPFS_GATEWAY_ANNOUNCE), and a peer on that address
 * reads whole files from the gateway rather than over libp2p (node.ts).
 */
const fs = process.getBuiltinModule('node:fs');
import type * as Http from 'node:http';
import { createRequire } from 'node:module';
import type { AddOptions } from './client.ts';
import { ipfsPaths, nodeSettings, type IpfsPaths } from './config.ts';
import { IpfsError } from './errors.ts';
import { startNode, type LocalNode } from './node.ts';
import { encodeError, ERROR_TRAILER, statusOf } from './protocol.ts';
import { connectDaemon } from './remote.ts';
import type { Gateway } from './gateway.ts';
import { withTemporaryFile } from '../archive/temporary.ts';

const http = createRequire(import.meta.url)('node:http') as typeof Http;

export interface DaemonOptions {
  home: string;
  env?: NodeJS.ProcessEnv;
  /** where the "ready" lines go */
  out(line: string): void;
}

function addOptions(q: URLSearchParams): AddOptions {
  const bool = (k: string) => (q.has(k) ? q.get(k) === 'true' : undefined);
  const num = (k: string) => (q.has(k) ? Number(q.get(k)) : undefined);
  return {
    cidVersion: num('cidVersion') as 0 | 1 | undefined,
    rawLeaves: bool('rawLeaves'),
    pin: bool('pin'),
    hidden: bool('hidden'),
    chunkSize: num('chunkSize'),
    nocopy: bool('nocopy'),
  };
}

async function readBody(req: Http.IncomingMessage, max = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) throw new IpfsError(`request body larger than ${max} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: Http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function cat(node: LocalNode, q: URLSearchParams, res: Http.ServerResponse, signal: AbortSignal): Promise<void> {
  const timeoutMs = q.has('timeoutMs') ? Number(q.get('timeoutMs')) : undefined;
  const it = node.cat(q.get('path') ?? '', { signal, timeoutMs })[Symbol.asyncIterator]();
  let next: IteratorResult<Uint8Array>;
  try {
    next = await it.next();
  } catch (e) {
    return send(res, statusOf(e), encodeError(e));
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', trailer: ERROR_TRAILER });
  try {
    while (!next.done) {
      if (!res.write(next.value)) await new Promise((r) => res.once('drain', r));
      if (res.destroyed) return void (await it.return?.());
      next = await it.next();
    }
  } catch (e) {
    res.addTrailers({ [ERROR_TRAILER]: encodeURIComponent(encodeError(e)) });
  }
  res.end();
}

async function handle(node: LocalNode, req: Http.IncomingMessage, res: Http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://daemon');
  const q = url.searchParams;
  const ac = new AbortController();
  res.on('close', () => ac.abort(new Error('the client went away')));
  const read = () => ({ signal: ac.signal, timeoutMs: q.has('timeoutMs') ? Number(q.get('timeoutMs')) : undefined });
  const ok = (v: unknown) => send(res, 200, JSON.stringify(v));
  try {
    switch (`${req.method} ${url.pathname}`) {
      case 'GET /v1/id':
        return ok(await node.id());
      case 'POST /v1/add':
        return ok({ cid: await node.addFile(q.get('path') ?? '', addOptions(q)) });
      case 'POST /v1/add-bytes':
        return ok({ cid: await node.addBytes(req as AsyncIterable<Uint8Array>, addOptions(q)) });
      case 'GET /v1/cat':
        return await cat(node, q, res, ac.signal);
      case 'GET /v1/stat':
        return ok(await node.stat(q.get('path') ?? '', read()));
      case 'GET /v1/ls':
        return ok(await node.ls(q.get('path') ?? '', read()));
      case 'POST /v1/pin':
        await node.pin(q.get('cid') ?? '', read());
        return ok({});
      case 'POST /v1/gc':
        return ok(await node.collectGarbage({ dryRun: q.get('dryRun') === 'true' }));
      case 'POST /v1/publish': {
        const lifetimeMs = q.has('lifetimeMs') ? Number(q.get('lifetimeMs')) : undefined;
        return ok({ name: await node.publish(q.get('cid') ?? '', q.get('key') ?? '', { lifetimeMs }) });
      }
      case 'GET /v1/resolve':
        return ok({ cid: await node.resolve(q.get('name') ?? '', read()) });
      case 'POST /v1/connect': {
        const { addrs } = JSON.parse(await readBody(req)) as { addrs: string[] };
        return ok({ failed: await node.connect(addrs) });
      }
      case 'POST /v1/gateways': {
        const { urls } = JSON.parse(await readBody(req)) as { urls: string[] };
        await node.useGateways(urls);
        return ok({});
      }
      default:
        return send(res, 404, JSON.stringify({ kind: 'error', message: `no such API call: ${req.method} ${url.pathname}` }));
    }
  } catch (e) {
    if (!res.headersSent) send(res, statusOf(e), encodeError(e));
    else res.destroy();
  }
}

/** Runs the daemon until SIGINT or SIGTERM; resolves once it has stopped cleanly. */
export async function runDaemon(opts: DaemonOptions): Promise<void> {
  // listening before anything is printed: a signal sent as soon as the
  // daemon says it is ready must stop it cleanly, not kill it
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => {
    stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  try {
    await serve(opts, stopped);
  } finally {
    stop();
  }
}

async function serve(opts: DaemonOptions, stopped: Promise<void>): Promise<void> {
  const paths = ipfsPaths(opts.home);
  fs.mkdirSync(paths.dir, { recursive: true });
  if (Buffer.byteLength(paths.socket) > 107) throw new IpfsError(`${paths.socket}: too long a path for a unix socket (set a shorter PEERPKGS_HOME)`);
  if (fs.existsSync(paths.socket)) {
    const other = await connectDaemon(paths.socket).catch(() => null);
    if (other) {
      const id = await other.id();
      throw new IpfsError(`a daemon already runs on ${paths.socket} (peer id ${id.peerId}); stop it first`);
    }
    fs.rmSync(paths.socket, { force: true });
    opts.out(`removed a stale socket: ${paths.socket}`);
  }
  const { listen, gatewayListen, gatewayAnnounce } = nodeSettings(opts.env);
  // the gateway listens first, so that the node can tell peers where it is
  let gateway: Gateway | undefined;
  if (gatewayListen) gateway = await (await import('./gateway.ts')).listenGateway(gatewayListen);
  const announce = gateway ? (await import('./gateway.ts')).gatewayMultiaddrs(gatewayAnnounce ?? [gateway]) : [];
  let node: LocalNode | undefined;
  try {
    node = await startServing(opts, paths, listen, announce);
    gateway?.serve(node.localBlocks);
    await serveApi(opts, paths, node, gateway?.url, listen, stopped);
  } finally {
    // the gateway before the node its requests read from
    await gateway?.close();
    await node?.close();
  }
}

/** The node, listening where it did last time if it can (lastPorts), else on `listen`. */
async function startServing(opts: DaemonOptions, paths: IpfsPaths, listen: string[], announce: string[]): Promise<LocalNode> {
  const again = lastPorts(paths.listen, listen);
  let node: LocalNode | undefined;
  if (again.some((a, i) => a !== listen[i])) {
    try {
      node = await startNode({ home: opts.home, env: opts.env, serve: true, listen: again, announce });
    } catch (e) {
      // libp2p's message lists each address with its error's stack: the error's own line says it
      const message = (e as Error).message;
      const why = /Error: (.*)$/m.exec(message)?.[1] ?? message.split('\n')[0];
      const was = again.filter((a, i) => a !== listen[i]).join(' ');
      opts.out(`could not listen on ${was} as last time (${why}): listening on a new port; peers given the old address need the new one`);
    }
  }
  return node ?? (await startNode({ home: opts.home, env: opts.env, serve: true, listen, announce }));
}

/** Serves the API on the socket, says where the node is (and its gateway), and serves until `stopped`. */
async function serveApi(opts: DaemonOptions, paths: IpfsPaths, node: LocalNode, gatewayUrl: string | undefined, listen: string[], stopped: Promise<void>): Promise<void> {
  const server = http.createServer((req, res) => void handle(node, req, res));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(paths.socket, () => resolve());
    });
  } catch (e) {
    throw new IpfsError(`could not listen on ${paths.socket}: ${(e as Error).message}`);
  }
  fs.chmodSync(paths.socket, 0o600);
  const id = await node.id();
  // the node's own addresses: those of its gateway (/http) are told to peers, but cannot be dialled
  const dialable = id.addrs.filter((a) => !/\/http(\/|$)/.test(a));
  const addrs = dialable.map((a) => (a.includes('/p2p/') ? a : `${a}/p2p/${id.peerId}`));
  withTemporaryFile(paths.addrs, (tmp) => {
    fs.writeFileSync(tmp, [id.peerId, ...addrs].join('\n') + '\n');
    fs.renameSync(tmp, paths.addrs);
  });
  rememberPorts(paths.listen, listen, dialable);
  opts.out(`peer id: ${id.peerId}`);
  for (const a of addrs) opts.out(`listening: ${a}`);
  if (gatewayUrl) opts.out(`gateway: ${gatewayUrl}`);
  opts.out(`api: ${paths.socket}`);
  opts.out('ready');

  await stopped;
  server.close();
  server.closeAllConnections();
  fs.rmSync(paths.socket, { force: true });
  fs.rmSync(paths.addrs, { force: true });
}

/** `/ip4/H/tcp/P…` as [its part before the port, P], or null for another kind of address. */
function tcpPort(addr: string): [string, string] | null {
  const m = /^(\/ip[46]\/[^/]+\/tcp\/)(\d+)/.exec(addr);
  return m ? [m[1]!, m[2]!] : null;
}

/** `listen` with each /tcp/0 given the port that address had last time, where the file remembers one. */
function lastPorts(file: string, listen: string[]): string[] {
  let last: string[];
  try {
    last = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return listen; // never started, or the file lost: any port, as configured
  }
  return listen.map((a) => {
    const t = tcpPort(a);
    if (t?.[1] !== '0') return a;
    const had = last.map(tcpPort).find((l) => l?.[0] === t[0] && l[1] !== '0');
    return had ? a.replace(/\/tcp\/0/, `/tcp/${had[1]}`) : a;
  });
}

/** Writes `listen` with each /tcp/0 replaced by the port it was bound to, as the node's addresses say. */
function rememberPorts(file: string, listen: string[], bound: string[]): void {
  const ports = listen.map((a) => {
    const t = tcpPort(a);
    if (t?.[1] !== '0') return a;
    // a wildcard host is bound on every interface's address, all with its one port
    const host = t[0].split('/')[2];
    const wildcard = host === '0.0.0.0' || host === '::';
    const family = t[0].split('/')[1];
    const b = bound.map(tcpPort).find((x) => x && x[0].split('/')[1] === family && (wildcard || x[0] === t[0]));
    return b ? `${t[0]}${b[1]}` : a;
  });
  withTemporaryFile(file, (tmp) => {
    fs.writeFileSync(tmp, ports.join('\n') + '\n');
    fs.renameSync(tmp, file);
  });
}
