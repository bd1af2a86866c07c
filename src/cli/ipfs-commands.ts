/**
 * `peerpkgs ipfs …`: argument parsing and what the user sees; and the step
 * of `cache publish` (cache-commands.ts) that adds a cache directory. The node, the daemon and the client are src/ipfs/.
 *
 * Exit statuses are errors.ts's: 7 not found (the path is not in a
 * directory that was reached), 8 unreachable (no connected peer had the
 * blocks or the record in time).
 */
import { peerpkgsHome } from '../home.ts';
import { resolveAddress, splitPath, type AddOptions, type IpfsClient } from '../ipfs/client.ts';
import { IpfsError } from '../ipfs/errors.ts';
import { PeerpkgsError } from '../errors.ts';
import { EXIT, UsageError, parse as parseOptions, report, onSignals, stdio, type CommandIO, type Options } from './frame.ts';

/** Each command: its arguments, and what it does (its lines of the help). */
const COMMANDS: Record<string, { args: string; what: string }> = {
  daemon: { args: '', what: "run a node: serve blocks and IPNS records to peers, and\nthis command's API to local commands ($PEERPKGS_HOME/ipfs/api.sock)" },
  id: { args: '', what: 'peer id, listen addresses (with /p2p/), connected peers' },
  add: {
    args: '[--cid-version 0|1] [--raw-leaves] [--pin] [--hidden] [--chunker size-N] [-n|--only-hash] [--nocopy] PATH',
    what: "add a file or directory (as kubo's ipfs add -r); print its CID\n(--only-hash: only print it; nothing is stored, no node is started;\n--nocopy: a file's data stays in the file, which must then not change)",
  },
  cat: { args: 'ADDRESS', what: 'write a file to stdout' },
  get: { args: 'ADDRESS -o PATH', what: 'write a file or directory to PATH (complete, or not at all)' },
  ls: { args: 'ADDRESS', what: 'list a directory: CID, size, name (dirs end in /)' },
  pin: { args: 'ADDRESS', what: 'fetch and keep a whole DAG (of the root, or of what the path names)' },
  publish: { args: 'CID --key NAME [--lifetime HOURS]', what: 'point the IPNS name of key NAME (made on first use) at\n/ipfs/CID; print the name (k51…)' },
  resolve: { args: 'NAME', what: 'print /ipfs/CID for an IPNS name, checked against its key' },
  connect: { args: 'MULTIADDR...', what: 'dial peers (…/p2p/<peer id>)' },
};

const ADDRESS_HELP = `ADDRESS: CID[/PATH], /ipfs/CID[/PATH], ipfs://CID[/PATH], /ipns/NAME[/PATH] or
ipns://NAME[/PATH] (an IPNS name is resolved, and checked against its key, first).
`;

const ENV_HELP = `Without a running daemon each command starts a node for its own duration.
Environment: PEERPKGS_HOME, PKG_IPFS_PEERS (multiaddrs to dial, each ending in
/p2p/<peer id>), PKG_IPFS_LISTEN (default /ip4/127.0.0.1/tcp/0: loopback, any port),
PKG_IPFS_TIMEOUT (seconds without progress before giving up; default 30),
PKG_IPFS_GATEWAYS (trustless HTTP gateways to fetch blocks from, too),
PKG_IPFS_GATEWAY_LISTEN (where the daemon serves its blocks as a trustless
gateway, e.g. /ip4/127.0.0.1/tcp/8080), PKG_IPFS_DHT (yes: use the Kademlia DHT),
PKG_IPFS_MDNS (yes: find peers on the local network by multicast DNS).
Exit status: 0 ok, 1 failed, 2 usage, 7 not found, 8 unreachable, 130 interrupted.
`;

function help(): string {
  const lines = ['usage: peerpkgs ipfs COMMAND [ARGS]', ''];
  for (const [name, c] of Object.entries(COMMANDS)) {
    const [first, ...more] = c.what.split('\n');
    const head = `  ${name} ${c.args}`;
    // a long usage takes its own line, the description below it
    if (head.length < 27) lines.push(`${head.padEnd(27)}${first}`);
    else lines.push(head, `${' '.repeat(27)}${first}`);
    for (const m of more) lines.push(`${' '.repeat(27)}${m}`);
  }
  return `${lines.join('\n')}\n\n${ADDRESS_HELP}\n${ENV_HELP}`;
}

/** `peerpkgs ipfs SUB --help`: its usage, what it does, and what every command shares. */
function helpOf(sub: string): string {
  const c = COMMANDS[sub]!;
  const usage = `usage: peerpkgs ipfs ${sub} ${c.args}`.trimEnd();
  const address = c.args.includes('ADDRESS') ? `\n${ADDRESS_HELP}` : '';
  const what = c.what.replace(/\n/g, ' ');
  return `${usage}\n\n${what[0]!.toUpperCase()}${what.slice(1)}.\n${address}\n${ENV_HELP}`;
}

interface Parsed {
  args: string[];
  flags: Map<string, string | true>;
}

/** frame.ts's parser over these flags (`--name` or `-x`), as a map keyed by the flag as written here. */
function parse(argv: string[], valued: string[], bare: string[]): Parsed {
  const key = (f: string) => f.replace(/^--?/, '');
  const options: Options = {};
  for (const f of valued) options[key(f)] = f.startsWith('--') ? { type: 'string' } : { type: 'string', short: key(f) };
  for (const f of bare) options[key(f)] = f.startsWith('--') ? { type: 'boolean' } : { type: 'boolean', short: key(f) };
  const { values, positionals } = parseOptions(argv, options);
  const flags = new Map<string, string | true>();
  for (const f of [...valued, ...bare]) {
    const v = values[key(f)];
    if (v === '') throw new UsageError(`${f} needs a value`);
    if (v !== undefined) flags.set(f, v as string | true);
  }
  return { args: positionals, flags };
}

function one(p: Parsed, what: string): string {
  if (p.args.length !== 1) throw new UsageError(`name one ${what}`);
  return p.args[0]!;
}

function addOptions(p: Parsed): AddOptions {
  const o: AddOptions = {};
  const v = p.flags.get('--cid-version');
  if (v !== undefined) {
    if (v !== '0' && v !== '1') throw new UsageError('--cid-version must be 0 or 1');
    o.cidVersion = Number(v) as 0 | 1;
  }
  if (p.flags.has('--raw-leaves')) o.rawLeaves = true;
  if (p.flags.has('--pin')) o.pin = true;
  if (p.flags.has('--hidden')) o.hidden = true;
  if (p.flags.has('--nocopy')) o.nocopy = true;
  const c = p.flags.get('--chunker');
  if (c !== undefined) {
    const m = /^size-(\d+)$/.exec(String(c));
    if (!m) throw new UsageError('--chunker: only size-N is supported (e.g. size-262144)');
    o.chunkSize = Number(m[1]);
  }
  return o;
}

/**
 * Runs `f` with a client (the daemon's, or a node of this process), as a
 * user of the store: gc, which removes the blocks no pin reaches, never
 * runs between an add and its pin.
 */
async function withClient<T>(io: CommandIO, f: (c: IpfsClient) => Promise<T>): Promise<T> {
  const home = peerpkgsHome(io.env);
  const [{ openIpfs }, { usingStore }] = await Promise.all([import('../ipfs/client.ts'), import('../store/roots.ts')]);
  return usingStore(
    home,
    async () => {
      const client = await openIpfs({ home, env: io.env });
      const offSignals = onSignals(() => client.close());
      try {
        return await f(client);
      } finally {
        offSignals();
        await client.close();
      }
    },
    (pid) => io.err(`waiting for gc (process ${pid}) to finish\n`),
  );
}

async function run(sub: string, argv: string[], io: CommandIO): Promise<number> {
  switch (sub) {
    case 'daemon': {
      parse(argv, [], []);
      if (argv.length) throw new UsageError('daemon takes no arguments (configure it with PKG_IPFS_LISTEN, PKG_IPFS_PEERS, PKG_IPFS_GATEWAY_LISTEN…)');
      const { runDaemon } = await import('../ipfs/daemon.ts');
      await runDaemon({ home: peerpkgsHome(io.env), env: io.env, out: (l) => io.out(`${l}\n`) });
      // libp2p keeps a 1 s timer after its listeners close; nothing is left to wait for
      await new Promise((r) => process.stdout.write('', r));
      process.exit(EXIT.ok);
      break;
    }
    case 'id': {
      if (argv.length) throw new UsageError('id takes no arguments');
      const id = await withClient(io, (c) => c.id());
      io.out(`peer id: ${id.peerId}\n`);
      for (const a of id.addrs) io.out(`listening: ${a.includes('/p2p/') ? a : `${a}/p2p/${id.peerId}`}\n`);
      for (const p of id.peers) io.out(`connected: ${p}\n`);
      return EXIT.ok;
    }
    case 'add': {
      const p = parse(argv, ['--cid-version', '--chunker'], ['--raw-leaves', '--pin', '--hidden', '-n', '--only-hash', '--nocopy']);
      const file = one(p, 'file or directory to add');
      // here, not in the node (maybe the daemon's): a missing file is the command line's mistake
      process.getBuiltinModule('node:fs').statSync(file);
      const opts = addOptions(p);
      if (p.flags.has('-n') || p.flags.has('--only-hash')) {
        if (opts.pin) throw new UsageError('--pin and --only-hash: nothing is stored to pin');
        const { addPath } = await import('../ipfs/unixfs.ts');
        const nowhere = { put: async <T>(cid: T) => cid, putParts: async <T>(cid: T) => cid };
        io.out(`${await addPath(file, nowhere, opts)}\n`);
        return EXIT.ok;
      }
      if (!opts.pin) {
        // nothing to pin and no daemon to tell: no node either, the blocks are written as a node would
        const { openIpfs } = await import('../ipfs/client.ts');
        const home = peerpkgsHome(io.env);
        const daemon = await openIpfs({ home, env: io.env, use: 'daemon' }).catch(() => null);
        if (!daemon) {
          const { addWithoutNode } = await import('../ipfs/node.ts');
          io.out(`${await addWithoutNode(home, file, opts)}\n`);
          return EXIT.ok;
        }
        await daemon.close();
      }
      io.out(`${await withClient(io, (c) => c.addFile(file, opts))}\n`);
      return EXIT.ok;
    }
    case 'cat': {
      const target = one(parse(argv, [], []), 'ADDRESS');
      await withClient(io, async (c) => {
        for await (const chunk of c.cat(await resolveAddress(c, target))) await (io.write ?? stdio.write!)(chunk);
      });
      return EXIT.ok;
    }
    case 'get': {
      const p = parse(argv, ['-o', '--output'], []);
      const target = one(p, 'ADDRESS');
      const dest = (p.flags.get('-o') ?? p.flags.get('--output')) as string | undefined;
      if (!dest) throw new UsageError('name where to write it with -o PATH');
      const { getToPath } = await import('../ipfs/get.ts');
      // a bar on a terminal; elsewhere the line below says it all
      const progress = io === stdio ? (await import('../fetch/progress.ts')).barOnTerminal(process.stderr) : undefined;
      const kind = await withClient(io, async (c) => getToPath(c, await resolveAddress(c, target), dest, {}, progress));
      io.err(`saved ${kind === 'dir' ? 'directory' : kind} ${target} to ${dest}\n`);
      return EXIT.ok;
    }
    case 'ls': {
      const target = one(parse(argv, [], []), 'ADDRESS');
      for (const e of await withClient(io, async (c) => c.ls(await resolveAddress(c, target)))) io.out(`${e.cid} ${e.size} ${e.name}${e.type === 'dir' ? '/' : ''}\n`);
      return EXIT.ok;
    }
    case 'pin': {
      const target = one(parse(argv, [], []), 'ADDRESS');
      await withClient(io, async (c) => c.pin(await resolveAddress(c, target)));
      io.out(`pinned ${target}\n`);
      return EXIT.ok;
    }
    case 'publish': {
      const p = parse(argv, ['--key', '--lifetime'], []);
      const { cid } = splitPath(one(p, 'CID'));
      const key = p.flags.get('--key') as string | undefined;
      if (!key) throw new UsageError('name the key to sign with: --key NAME (made on first use)');
      let lifetimeMs: number | undefined;
      if (p.flags.has('--lifetime')) {
        const h = Number(p.flags.get('--lifetime'));
        if (!Number.isFinite(h) || h <= 0) throw new UsageError('--lifetime takes a number of hours');
        lifetimeMs = Math.round(h * 3600_000);
      }
      io.out(`${await withClient(io, (c) => c.publish(cid, key, { lifetimeMs }))}\n`);
      return EXIT.ok;
    }
    case 'resolve': {
      const name = one(parse(argv, [], []), 'IPNS name (k51…)');
      io.out(`/ipfs/${await withClient(io, (c) => c.resolve(name))}\n`);
      return EXIT.ok;
    }
    case 'connect': {
      const p = parse(argv, [], []);
      if (!p.args.length) throw new UsageError('name multiaddrs to dial, each ending in /p2p/<peer id>');
      const failed = await withClient(io, (c) => c.connect(p.args));
      for (const f of failed) io.err(`peerpkgs ipfs connect: ${f.addr}: ${f.error}\n`);
      return failed.length ? EXIT.failed : EXIT.ok;
    }
    default:
      throw new UsageError(`unknown command ${sub}`);
  }
}

function fail(prog: string, e: unknown, io: CommandIO): number {
  // what is neither ours nor a system call's is a bug: its stack is wanted
  if (!(e instanceof PeerpkgsError) && !(e as NodeJS.ErrnoException)?.code) throw e;
  return report(prog, e, io);
}

/** `peerpkgs ipfs SUBCOMMAND ...` */
export async function ipfsCommand(argv: string[], io: CommandIO = stdio): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '-h' || sub === '--help' || sub === 'help') {
    io.out(help());
    return sub ? EXIT.ok : EXIT.usage;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    if (!COMMANDS[sub]) return fail('peerpkgs ipfs', new UsageError(`unknown command ${sub}`), io);
    io.out(helpOf(sub));
    return EXIT.ok;
  }
  try {
    return await run(sub, rest, io);
  } catch (e) {
    return fail(`peerpkgs ipfs ${sub}`, e, io);
  }
}

/** Adds DIR to IPFS, pinned, and publishes it under KEY if given; prints the URLs to put in PKG_CACHE_URL. */
export async function publishCacheDir(dir: string, key: string | undefined, cidVersion: 0 | 1 | undefined, io: CommandIO = stdio): Promise<{ cid: string; name?: string }> {
  const fs = process.getBuiltinModule('node:fs');
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new IpfsError(`${dir}: not a directory`);
  const { publishCacheDir: publish } = await import('../cache/ipfs-cache.ts');
  return withClient(io, (c) => publish(c, dir, { key, cidVersion, say: (url) => io.out(`${url}\n`) }));
}
