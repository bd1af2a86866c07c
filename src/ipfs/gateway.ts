/**
 * The daemon's trustless HTTP gateway (PKG_IPFS_GATEWAY_LISTEN): the node's
 * own blocks over HTTP, as the IPFS trustless gateway specification says
 * (https://specs.ipfs.tech/http-gateways/trustless-gateway/), so that any
 * HTTP client, proxy or cache can carry them and a node that reaches no
 * peer can fetch from it (gateway-broker.ts).
 *
 *   GET|HEAD /ipfs/{cid}?format=raw            the block's bytes (application/vnd.ipld.raw)
 *   GET|HEAD /ipfs/{cid}[/path]?format=car     a CARv1 of the DAG (application/vnd.ipld.car;
 *            [&dag-scope=block|entity|all]       version=1; order=dfs; dups=y): the blocks
 *                                                that lead along the path, then those under its end
 *
 * `Accept: application/vnd.ipld.raw` or `application/vnd.ipld.car` asks the
 * same as `format`, which wins when both are given. Only verifiable
 * responses are served: no format is a 400, as is a bad CID or a raw block
 * asked for with a path. Only blocks the node holds are served, never
 * fetched for the asker (a gateway must not be an open relay): a root, or a
 * block on the path, that is not here is a 404. A block missing under the
 * root once the CAR has started cuts the response short, as the
 * specification says. A CAR is streamed a block at a time with the
 * socket's back-pressure (car.ts), so no request makes the daemon hold more
 * than a few blocks. `entity-bytes` is answered with the whole entity (a
 * superset the client verifies as any other); `dups=n` is refused with 406.
 */
import type * as Http from 'node:http';
import { createRequire } from 'node:module';
import * as os from 'node:os';
const { createHash } = process.getBuiltinModule('node:crypto');
import { CID } from './deps-dag.ts';
import { exporter } from './deps-node.ts';
import { carHeader, dagBlocks, isIdentity, sectionPrefix, type DagScope } from './car.ts';
import type { LocalBlocks } from './node.ts';
import { drained } from '../archive/files.ts';
import { IpfsError } from './errors.ts';

const http = createRequire(import.meta.url)('node:http') as typeof Http;

const RAW_TYPE = 'application/vnd.ipld.raw';
const CAR_TYPE = 'application/vnd.ipld.car';
const CAR_RESPONSE_TYPE = `${CAR_TYPE}; version=1; order=dfs; dups=y`;
/** The most connections served at once: each holds a block or so, so the daemon's memory stays bounded. */
const MAX_CONNECTIONS = 256;

export interface Gateway {
  /** http://HOST:PORT, with the port the server was given */
  url: string;
  /** the address it listens on, with that port */
  host: string;
  port: number;
  /** serves `local`'s blocks from now on; until then every request is answered 503 */
  serve(local: LocalBlocks): void;
  close(): Promise<void>;
}

/** A failed request: its status and the one line the body says. */
class HttpFailure extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** A block that is not in the local store. */
class MissingBlock extends Error {
  constructor(cid: CID) {
    super(`${cid}: not held by this node`);
    this.name = 'MissingBlock';
  }
}

interface Wanted {
  format: 'raw' | 'car';
  /** the Accept entry that asked for it, for its parameters */
  params: Map<string, string>;
}

/** What the request asks for: `format` first, else the first verifiable type of Accept (by q). */
function negotiate(q: URLSearchParams, accept: string | undefined): Wanted {
  const format = q.get('format');
  const offered = (accept ?? '')
    .split(',')
    .map((entry, i) => {
      const [type = '', ...ps] = entry.split(';').map((s) => s.trim());
      const params = new Map(ps.map((p) => p.split('=').map((s) => s.trim().toLowerCase()) as [string, string]));
      return { type: type.toLowerCase(), params, q: Number(params.get('q') ?? 1), i };
    })
    .filter((o) => o.type === RAW_TYPE || o.type === CAR_TYPE)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  if (format !== null) {
    if (format !== 'raw' && format !== 'car') throw new HttpFailure(400, `format=${format} is not served: this gateway serves only format=raw and format=car`);
    const type = format === 'raw' ? RAW_TYPE : CAR_TYPE;
    return { format, params: offered.find((o) => o.type === type)?.params ?? new Map() };
  }
  const o = offered[0];
  if (!o) throw new HttpFailure(400, `ask for ${RAW_TYPE} or ${CAR_TYPE} (Accept, or ?format=raw|car): this gateway serves only verifiable responses`);
  return { format: o.type === RAW_TYPE ? 'raw' : 'car', params: o.params };
}

/** The CAR variant asked for, refused when it is one this gateway does not write. */
function carScope(q: URLSearchParams, params: Map<string, string>): DagScope {
  const version = q.get('car-version') ?? params.get('version') ?? '1';
  const order = q.get('car-order') ?? params.get('order') ?? 'dfs';
  const dups = q.get('car-dups') ?? params.get('dups') ?? 'y';
  if (version !== '1') throw new HttpFailure(406, `CAR version ${version} is not served: only version=1`);
  if (order !== 'dfs' && order !== 'unk') throw new HttpFailure(406, `CAR order ${order} is not served: only order=dfs`);
  if (dups !== 'y') throw new HttpFailure(406, `CAR dups=${dups} is not served: only dups=y (remembering what was sent would grow with the DAG)`);
  const scope = q.get('dag-scope') ?? (q.has('entity-bytes') ? 'entity' : 'all');
  if (scope !== 'block' && scope !== 'entity' && scope !== 'all') throw new HttpFailure(400, `dag-scope=${scope}: expected block, entity or all`);
  return scope;
}

async function readBlock(local: LocalBlocks, cid: CID, signal: AbortSignal): Promise<Uint8Array> {
  if (isIdentity(cid)) return cid.multihash.digest;
  if (!(await local.has(cid))) throw new MissingBlock(cid);
  const parts: Uint8Array[] = [];
  for await (const p of local.get(cid, { signal })) parts.push(p);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Writes `chunk`, waiting while the socket's buffer is full; false once the asker has gone. */
async function write(res: Http.ServerResponse, chunk: Uint8Array): Promise<boolean> {
  if (res.destroyed) return false;
  if (!res.write(chunk)) await drained(res);
  return !res.destroyed;
}

/**
 * Writes a CAR section's prefix and block as one chunk, in one write to
 * the socket (corked: a writev, and one message on a libp2p stream rather
 * than a small one for the prefix), then waits while the socket is full.
 * The socket's state, not write's answer: a corked response answers false
 * for a big chunk and then never says 'drain'.
 */
async function writeSection(res: Http.ServerResponse, prefix: Uint8Array, block: Uint8Array): Promise<boolean> {
  if (res.destroyed) return false;
  res.cork();
  res.write(prefix);
  res.write(block);
  res.uncork();
  const socket = res.socket;
  if (socket?.writableNeedDrain) await drained(socket);
  return !res.destroyed;
}

function fail(res: Http.ServerResponse, status: number, message: string, head: boolean): void {
  const body = `${message}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-content-type-options': 'nosniff' });
  res.end(head ? undefined : body);
}

/** The headers every answer for content has: it is immutable, named by its CID, and not for a browser to render. */
function contentHeaders(pathname: string, filename: string, etag: string, type: string): Http.OutgoingHttpHeaders {
  return {
    'content-type': type,
    'content-disposition': `attachment; filename="${filename}"`,
    'cache-control': 'public, max-age=29030400, immutable',
    etag,
    vary: 'Accept',
    'x-content-type-options': 'nosniff',
    'x-ipfs-path': pathname,
  };
}

async function serveRaw(local: LocalBlocks, cid: CID, pathname: string, res: Http.ServerResponse, head: boolean, signal: AbortSignal): Promise<void> {
  const bytes = await readBlock(local, cid, signal);
  res.writeHead(200, { ...contentHeaders(pathname, `${cid}.bin`, `"${cid}.raw"`, RAW_TYPE), 'content-length': bytes.byteLength });
  res.end(head ? undefined : bytes);
}

async function serveCar(
  local: LocalBlocks,
  cid: CID,
  segments: string[],
  scope: DagScope,
  pathname: string,
  res: Http.ServerResponse,
  head: boolean,
  signal: AbortSignal,
): Promise<void> {
  // the blocks walkPath reads are those a client needs to verify the path
  const onPath: CID[] = [];
  const recording = {
    async *get(c: CID) {
      const bytes = await readBlock(local, c, signal);
      if (!onPath.some((p) => p.equals(c))) onPath.push(c);
      yield bytes;
    },
  };
  let end = cid;
  try {
    for await (const entry of exporter.walkPath([cid.toString(), ...segments].join('/'), recording, { signal })) end = entry.cid;
  } catch (e) {
    if (e instanceof MissingBlock) throw e;
    if ((e as Error).name === 'NotFoundError') throw new HttpFailure(404, `${pathname}: no such path`);
    throw new HttpFailure(400, `${pathname}: cannot follow the path: ${(e as Error).message}`);
  }
  // the end of the path must be here before a 200 is promised
  if (!isIdentity(end) && !(await local.has(end))) throw new MissingBlock(end);
  const etag = `W/"${createHash('sha256')
    .update(`${cid}/${segments.join('/')}?${scope}`)
    .digest('hex')
    .slice(0, 32)}.car"`;
  res.writeHead(200, contentHeaders(pathname, `${cid}.car`, etag, CAR_RESPONSE_TYPE));
  if (head) return void res.end();
  if (!(await write(res, carHeader(cid)))) return;
  const load = (c: CID) => readBlock(local, c, signal);
  const sections = async function* () {
    for (const c of onPath) if (!c.equals(end) && !isIdentity(c)) yield { cid: c, bytes: await load(c) };
    yield* dagBlocks(end, scope, load);
  };
  try {
    for await (const { cid: c, bytes } of sections()) {
      if (!(await writeSection(res, sectionPrefix(c, bytes.byteLength), bytes))) return;
    }
  } catch {
    // a block under the root is not here: the client must see the CAR is incomplete
    return void res.destroy();
  }
  res.end();
}

async function handle(local: LocalBlocks, req: Http.IncomingMessage, res: Http.ServerResponse): Promise<void> {
  const head = req.method === 'HEAD';
  const ac = new AbortController();
  res.on('close', () => ac.abort(new Error('the client went away')));
  try {
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      throw new HttpFailure(405, `${req.method}: only GET and HEAD are served`);
    }
    const url = new URL(req.url ?? '/', 'http://gateway');
    const m = /^\/ipfs\/([^/]+)(?:\/(.*))?$/.exec(url.pathname);
    if (!m) {
      if (url.pathname.startsWith('/ipns/')) throw new HttpFailure(501, 'IPNS names are not served: ask for /ipfs/{cid}');
      throw new HttpFailure(404, `${url.pathname}: this gateway serves /ipfs/{cid} only`);
    }
    const wanted = negotiate(url.searchParams, req.headers.accept);
    let cid: CID;
    try {
      cid = CID.parse(m[1]!);
    } catch {
      throw new HttpFailure(400, `${m[1]}: not a CID`);
    }
    let segments: string[];
    try {
      segments = (m[2] ?? '').split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new HttpFailure(400, `${url.pathname}: a path segment is not valid percent-encoding`);
    }
    if (segments.some((s) => s.includes('/'))) throw new HttpFailure(400, `${url.pathname}: a name cannot hold a /`);
    if (wanted.format === 'raw') {
      if (segments.length) throw new HttpFailure(400, `${url.pathname}: a raw block is asked for by its CID alone; ask for a CAR to follow a path`);
      return await serveRaw(local, cid, url.pathname, res, head, ac.signal);
    }
    return await serveCar(local, cid, segments, carScope(url.searchParams, wanted.params), url.pathname, res, head, ac.signal);
  } catch (e) {
    if (res.headersSent) return void res.destroy();
    if (e instanceof HttpFailure) return fail(res, e.status, e.message, head);
    if (e instanceof MissingBlock) {
      // only-if-cached asks whether the root is here: 412 says no, as the specification says
      const status = /only-if-cached/i.test(req.headers['cache-control'] ?? '') ? 412 : 404;
      return fail(res, status, e.message, head);
    }
    return fail(res, 500, (e as Error)?.message ?? String(e), head);
  }
}

/** The gateway as an HTTP server of `local`'s blocks, listening nowhere yet: on a port (listenGateway), or on libp2p streams (http-p2p.ts). */
export function gatewayServer(local: LocalBlocks | (() => LocalBlocks | undefined)): Http.Server {
  const server = http.createServer((req, res) => {
    const blocks = typeof local === 'function' ? local() : local;
    if (blocks) void handle(blocks, req, res);
    else fail(res, 503, 'the node is starting', req.method === 'HEAD');
  });
  server.maxConnections = MAX_CONNECTIONS;
  return server;
}

/**
 * The multiaddrs that tell peers where a gateway is: /ip4|ip6/HOST/tcp/PORT/http,
 * as IPFS writes an HTTP provider's address. An unspecified host (0.0.0.0,
 * ::) is each address of this machine it stands for, as libp2p expands its
 * own listen addresses. A peer uses one only if it is on the address it
 * reached this node at (node.ts).
 */
export function gatewayMultiaddrs(addrs: { host: string; port: number }[]): string[] {
  const out = new Set<string>();
  const local = Object.values(os.networkInterfaces()).flatMap((l) => l ?? []);
  for (const { host, port } of addrs) {
    const hosts = host === '0.0.0.0' ? local.filter((i) => i.family === 'IPv4').map((i) => i.address) : host === '::' ? local.map((i) => i.address) : [host];
    for (const h of hosts) out.add(`/${h.includes(':') ? 'ip6' : 'ip4'}/${h}/tcp/${port}/http`);
  }
  return [...out];
}

/**
 * Listens on `listen` until closed, and serves the blocks given to
 * serve(): the daemon listens before it starts its node, so that the node
 * can tell peers where its gateway is.
 */
export async function listenGateway(listen: { host: string; port: number }): Promise<Gateway> {
  let blocks: LocalBlocks | undefined;
  const server = gatewayServer(() => blocks);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
  } catch (e) {
    throw new IpfsError(`could not serve the gateway on ${listen.host} port ${listen.port}: ${(e as Error).message} (set PKG_IPFS_GATEWAY_LISTEN)`);
  }
  const addr = server.address() as { address: string; port: number; family: string };
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    serve: (local) => (blocks = local),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
