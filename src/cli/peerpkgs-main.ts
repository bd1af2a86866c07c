/**
 * `peerpkgs <command>`, and the p2pkgs-named entry points in bin/ that are
 * links to it: the table of commands, each with its usage and its own
 * --help, and the one place an error becomes a line and an exit status.
 * The commands are build-commands.ts, tree-commands.ts and the *-commands.ts
 * of their own subcommands; the work is done in the layers below.
 */
import * as path from 'node:path';
import { EXIT, UsageError, wantsHelp, report, isBareName } from './frame.ts';
import { peerpkgsHome } from '../home.ts';
import { settings, VARIABLES } from '../settings.ts';

/** A peerpkgs command: its usage line, its own help, and what runs it. */
interface Command {
  /** what follows the command's name in its usage line */
  usage: string;
  /** the rest of its --help: what it does, its options */
  help: string;
  /** the variables it reads, beside those every command does */
  env?: string[];
  run(args: string[], prog: string): Promise<number> | number;
  /** its subcommands' own usage and help (`peerpkgs key trust --help`), where it has them */
  subs?: Record<string, { usage: string; help: string; env?: string[] }>;
}

const JOBS_HELP = `  -j N, --jobs N     build N things at once
  -k, --keep-going   keep building other packages after one fails
  -v, --verbose      show every build's lines, each after its package's name
`;
const STRATEGY_HELP = `STRATEGY, for a path two packages provide differently (default: an error):
--prefer-existing (the earlier package's), --prefer-new (the later one's),
--namespaced (each package's as PATH@PACKAGE). Packages are merged in the
order named, each after its run-deps.
`;
const BUILD_ENV = [
  'PEERPKGS_HOME',
  'PKG_LOG_KEEP',
  'PKG_CACHE_URL',
  'PKG_FORCE_BINARY',
  'PKG_TRUSTED_KEYS',
  'PKG_MIRROR_DB',
  'PKG_MIRROR_IPFS',
  'PKG_IPFS_TIMEOUT',
  'PKG_SANDBOX_TMP_SIZE',
  'PKG_MAX_DOWNLOAD_SIZE',
  'PKG_MAX_UNPACK_SIZE',
  'PKG_DOWNLOAD_BASE_TIME',
  'PKG_DOWNLOAD_MIN_RATE',
];
const FETCH_ENV = [
  'PEERPKGS_HOME',
  'PKG_MIRROR_DB',
  'PKG_MIRROR_IPFS',
  'PKG_IPFS_PEERS',
  'PKG_IPFS_TIMEOUT',
  'PKG_MAX_DOWNLOAD_SIZE',
  'PKG_DOWNLOAD_BASE_TIME',
  'PKG_DOWNLOAD_MIN_RATE',
];

const EXIT_HELP = `Exit status: 0 ok, 1 a build failed, 2 usage, 4 bad package tree, 5 fetch
failed, 6 not reproducible, 7 not found in IPFS, 8 IPFS unreachable,
9 damaged (verify), 10 untrusted (verify-provenance, catalogs), 11 not found
(log, catalogs), 129 hangup, 130 interrupted, 143 terminated.
`;

const subcommand = (load: () => Promise<(args: string[]) => Promise<number>>) => async (args: string[]) => (await load())(args);

// each command's module is loaded when it runs: --help and the tree
// commands do not pay for the engine, nor a build for the archive layer
type BuildModule = typeof import('./build-commands.ts');
// its commands, not the functions other command modules share
type BuildCommands = { [K in keyof BuildModule as BuildModule[K] extends (argv: string[]) => Promise<number> ? K : never]: BuildModule[K] };
type TreeCommands = typeof import('./tree-commands.ts');
const building = (name: Exclude<keyof BuildCommands, 'withEngine'>) => async (args: string[]) => (await import('./build-commands.ts'))[name](args);
const ofTree = (name: keyof TreeCommands) => async (args: string[]) => (await import('./tree-commands.ts'))[name](args);
type StoreCommands = typeof import('./store-commands.ts');
const ofStore = (name: keyof StoreCommands) => async (args: string[]) => (await import('./store-commands.ts'))[name](args);
const PROFILE_HELP = '  --profile NAME     the profile (default: default), $PEERPKGS_HOME/profiles/NAME\n';

const COMMANDS: Record<string, Command> = {
  build: {
    usage: '[-j N] [-k] PKGDIR...',
    help: `Build what changed of each package and its dependencies (also: build-packages-ifchange).\n\n${JOBS_HELP}`,
    env: BUILD_ENV,
    run: building('build'),
  },
  fetch: {
    usage: '[-o DIR] FETCHFILE|PKGDIR',
    help: "Fetch one package's sources (the fetch file named, or PKGDIR/fetch) into the\ndistfile store; with -o, copy them into DIR (also: do-fetch).\n",
    env: FETCH_ENV,
    run: ofTree('fetchCmd'),
  },
  new: {
    usage: 'PKGDIR [--url URL]...',
    help: `Make a new package from a template (also: new-package): a build script that
unpacks, configures and installs under $DESTDIR/usr, with ../seed and ../unpack
as build-deps (those the tree has). Each --url is fetched into the distfile store
and gets its fetch record (url, sha256, size), and the script unpacks it.
`,
    env: FETCH_ENV,
    run: ofTree('newPackage'),
  },
  log: {
    usage: '[--list | --times] PKGDIR\n       peerpkgs log --phases [--json] PKGDIR...',
    help: "Print the log of the package's last build, failed or not (kept compressed under\n$PEERPKGS_HOME/logs). Exit status 11 when none is.\n\n  --list     the kept logs, oldest first\n  --times    each line after the seconds from the build script's start to when it came\n  --phases   where each package's last build took its time: assembling the sandbox,\n             laying out the sources, the build script's steps by what its trace (set -x)\n             shows them doing (unpack, configure, compile, test, install, other), and\n             packing; in seconds, with the sum and each column's share\n",
    env: ['PEERPKGS_HOME', 'PKG_LOG_KEEP'],
    run: async (args) => (await import('./log-command.ts')).logCommand(args),
  },
  graph: {
    usage: '[--json] PKGDIR...\n       peerpkgs graph --reverse [--json] PKGDIR',
    help: 'Print the dependency tree of each package; with --reverse, what in the tree (the\ndirectory PKGDIR is in) depends on PKGDIR, marked run or build.\n\n  --json   as one JSON document (README: Queries)\n',
    run: ofTree('graphCmd'),
  },
  info: {
    usage: '[--json] PKGDIR...\n       peerpkgs info [--json] NAME',
    help: 'NAME (a bare name): the newest entry named NAME in the catalogs of PKG_CACHE_URL.\nPKGDIR: the pkghash, closure, sources (with their IPFS mirrors), output and sizes of each\npackage: unpacked, with its run closure, and of its build closure.\n\n  --json   as JSON (README: Queries)\n',
    env: ['PEERPKGS_HOME', 'PKG_MIRROR_DB', 'PKG_CACHE_URL', 'PKG_TRUSTED_KEYS'],
    run: async (args) => {
      // a bare name is a catalog entry's: a package directory is a path
      const words = args.filter((a) => !a.startsWith('-'));
      if (words.length > 0 && words.every(isBareName)) return (await import('./catalog-commands.ts')).infoByName(args);
      return ofTree('infoCmd')(args);
    },
  },
  search: {
    usage: '[--json] WORD',
    help: 'Search the catalogs of the caches of PKG_CACHE_URL for WORD in names and\ndescriptions: name, version, short pkghash, description, cache of the newest entry\nof each name. A refused catalog (expired, signed by no trusted key, older than one\nseen before) is a line on stderr and exit status 10.\n\n  --json   as a JSON array\n',
    env: ['PEERPKGS_HOME', 'PKG_CACHE_URL', 'PKG_TRUSTED_KEYS'],
    run: async (args) => (await import('./catalog-commands.ts')).search(args),
  },
  check: {
    usage: '[-j N] [-k] PKGDIR...',
    help: `Build again and compare, naming the files that differ. Exit status 6 when a package\nis not reproducible.\n\n${JOBS_HELP}`,
    env: BUILD_ENV,
    run: building('check'),
  },
  shell: {
    usage: '[-j N] PKGDIR [-- CMD...]',
    help: `Enter the package's build sandbox: its root, environment, mounts and jobserver, in
the files of its last failed build if they are kept, else in a fresh directory
with its sources, files/ and build script (nothing run; removed on exit). Its
build-deps are built first. With -- CMD, run CMD there and exit with its status;
else an interactive /bin/sh on the terminal.

  -j N, --jobs N     the jobserver's slots, as a build with -j N has them
`,
    env: BUILD_ENV,
    run: async (args) => (await import('./author-commands.ts')).shellCmd(args),
  },
  why: {
    usage: 'PKGDIR...',
    help: `Say why each package would be rebuilt, or that it would not: the lines of its
pkghash text that changed since its last build, and under each dependency
that changed, that dependency's own. A query: exit 0 whatever it says.
`,
    env: ['PEERPKGS_HOME'],
    run: async (args) => (await import('./author-commands.ts')).whyCmd(args),
  },
  distfiles: {
    usage: 'add FILE...',
    help: 'Put local files in the distfile store, by their sha256, and print their fetch records.\n',
    env: ['PEERPKGS_HOME'],
    run: ofTree('distfiles'),
  },
  verify: {
    usage: '[--repair] [VENVDIR...]',
    help: '',
    env: ['PEERPKGS_HOME'],
    run: async (args) => {
      const { verifyCommand } = await import('./verify-command.ts');
      const damaged = await verifyCommand(args, peerpkgsHome(), (s) => void process.stdout.write(s));
      return damaged ? EXIT.damaged : EXIT.ok;
    },
  },
  venv: {
    usage: '[-o DIR] [-j N] [STRATEGY] PKGDIR...',
    help: `Build, then merge the packages and their run closures into DIR (default ./venv);\nDIR/bin/venv-run CMD runs CMD with DIR's top-level directories over the host's.\n\n${JOBS_HELP}\n${STRATEGY_HELP}`,
    env: BUILD_ENV,
    run: building('venvCmd'),
  },
  export: {
    usage:
      'tarball -o FILE [-j N] [STRATEGY] PKGDIR...\n       peerpkgs export oci -o PATH [--entrypoint CMD] [--cmd ARG]... [--env K=V]... [--tag NAME[:TAG]] [-j N] [STRATEGY] PKGDIR...',
    help: `tarball: the same merge as venv, as one reproducible .tar.gz.\noci: the same merge as a reproducible OCI image, a layer a package: an image\nlayout directory, or an oci-archive when PATH ends in .tar.\n\n${JOBS_HELP}\n${STRATEGY_HELP}`,
    env: BUILD_ENV,
    subs: {
      tarball: {
        usage: '-o FILE [-j N] [STRATEGY] PKGDIR...',
        help: `Build, then merge the packages and their run closures as venv does, into one\nreproducible .tar.gz.\n\n${JOBS_HELP}\n${STRATEGY_HELP}`,
      },
      oci: {
        usage: '-o PATH [--entrypoint CMD] [--cmd ARG]... [--env K=V]... [--tag NAME[:TAG]] [-j N] [STRATEGY] PKGDIR...',
        help: `Build, then merge the packages and their run closures into a reproducible OCI\nimage, a layer a package: an image layout directory, or an oci-archive when PATH\nends in .tar.\n\n${JOBS_HELP}\n${STRATEGY_HELP}`,
      },
    },
    run: building('exportCmd'),
  },
  sbom: {
    usage: '[--format spdx|cyclonedx] [-o FILE] [-j N] PKGDIR...',
    help: `Build, then write an SPDX 2.3 (default) or CycloneDX 1.6 JSON SBOM of the packages\nand their run and build closures.\n\n${JOBS_HELP}`,
    env: [...BUILD_ENV, 'SOURCE_DATE_EPOCH'],
    run: building('sbomCmd'),
  },
  cache: {
    usage:
      'add -o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] [-j N] PKGDIR...\n       peerpkgs cache publish DIR [--sign-key NAME] [--expires Nd] [--ipns KEY] [--cid-version 0|1]',
    help: 'add: build, then copy the packages and their run closures into a binary cache\ndirectory with signed .info files and a signed catalog (also: add-to-package-cache);\n--ipfs adds DIR to IPFS, --ipns KEY also publishes it under the IPNS key KEY.\npublish: write the catalog of a cache directory anew, signed, then add the directory\nto IPFS (pinned), print ipfs://CID (and ipns://NAME).\n',
    env: [...BUILD_ENV, 'PKG_IPFS_PEERS', 'PKG_IPFS_LISTEN'],
    subs: {
      add: {
        usage: '-o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] [-j N] PKGDIR...',
        help: `Build, then copy the packages and their run closures into the binary cache\ndirectory DIR as <pkghash>.tar.gz and <pkghash>.info, signed with the key NAME\n(also: add-to-package-cache). --ipfs: then add DIR to IPFS (pinned) and print\nipfs://CID; --ipns KEY: also publish it under the IPNS key KEY, print ipns://NAME.\n\n${JOBS_HELP}`,
      },
      publish: {
        usage: 'DIR [--sign-key NAME] [--expires Nd] [--ipns KEY] [--cid-version 0|1]',
        help: 'Write DIR/catalog anew, as add does: every entry of DIR, signed with the key NAME,\nits generation one more than the last, expiring in 30 days (--expires Nd: in N days).\nThen add the cache directory to IPFS (pinned) and print ipfs://CID; with --ipns KEY\nalso publish it under the IPNS key KEY (made on first use) and print ipns://NAME.\nEither goes in PKG_CACHE_URL.\n',
        env: ['PEERPKGS_HOME', 'PKG_IPFS_PEERS', 'PKG_IPFS_LISTEN', 'PKG_IPFS_TIMEOUT'],
      },
    },
    run: async (args) => {
      if (args[0] === 'publish') return (await import('./cache-commands.ts')).cachePublish(args.slice(1));
      if (args[0] !== 'add')
        throw new UsageError('usage: peerpkgs cache add -o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] PKGDIR... | cache publish DIR [--sign-key NAME] [--ipns KEY]');
      return building('cacheAdd')(args.slice(1));
    },
  },
  'verify-provenance': {
    usage: 'FILE|URL [--archive FILE|URL]',
    help: '',
    env: ['PEERPKGS_HOME', 'PKG_TRUSTED_KEYS', 'PKG_MAX_DOWNLOAD_SIZE', 'PKG_DOWNLOAD_BASE_TIME', 'PKG_DOWNLOAD_MIN_RATE'],
    run: subcommand(async () => (await import('./provenance-command.ts')).verifyProvenanceCommand),
  },
  key: {
    usage: 'generate NAME | list | trust KEY|FILE...',
    help: 'Signing keys and the keys trusted for caches.\n',
    env: ['PEERPKGS_HOME', 'PKG_TRUSTED_KEYS'],
    subs: {
      generate: {
        usage: 'NAME',
        help: 'Make the signing key NAME: $PEERPKGS_HOME/keys/NAME.key (private) and NAME.pub.\nIt is trusted nowhere, not even here, until peerpkgs key trust NAME.pub.\n',
      },
      list: {
        usage: '',
        help: 'List the signing keys in $PEERPKGS_HOME/keys, and the trusted keys\n($PEERPKGS_HOME/trusted-keys and PKG_TRUSTED_KEYS), each with where it is from.\n',
      },
      trust: {
        usage: 'KEY|FILE...',
        help: 'Trust public keys, given as ed25519:... or as .pub files: they are added to\n$PEERPKGS_HOME/trusted-keys. A cache is used only when signed by a trusted key.\n',
      },
    },
    run: subcommand(async () => (await import('./cache-commands.ts')).key),
  },
  ipfs: {
    usage: 'COMMAND [ARGS]',
    help: '',
    run: subcommand(async () => (await import('./ipfs-commands.ts')).ipfsCommand),
  },
  seed: {
    usage: 'reproduce [-j N] [-o FILE] [--tree DIR] [--components A,B...]',
    help: '',
    env: BUILD_ENV,
    run: subcommand(async () => (await import('./seed-commands.ts')).seedCommand),
  },
  config: {
    usage: '[--json]',
    help: "Print every variable's effective value and where it came from: the environment,\na line of $PEERPKGS_HOME/config, or the default.\n\n  --json   as one JSON document (README: Configuration)\n",
    env: Object.keys(VARIABLES),
    run: async (args) => (await import('./config-command.ts')).configCmd(args),
  },
  mirrors: {
    usage: 'import|pin|pin-all [--db FILE] ...',
    help: '',
    run: async (args, prog) => (await import('./mirror-commands.ts')).mirrorsCommand(prog, args[0], args.slice(1)),
  },
  install: {
    usage: '[--profile NAME] [-j N] [STRATEGY] PKGDIR...\n       peerpkgs install [--profile NAME] [STRATEGY] NAME...',
    help: `Build, then make the profile's next generation with the packages and their run\nclosures added, and make it current. A bare NAME is installed from the catalogs of\nPKG_CACHE_URL instead: its newest entry and run closure substituted, no tree needed. A strategy that settles a conflict is\nremembered for that path by the profile's later generations.\n\n${PROFILE_HELP}${JOBS_HELP}\n${STRATEGY_HELP}`,
    env: BUILD_ENV,
    run: ofStore('install'),
  },
  remove: {
    usage: '[--profile NAME] [STRATEGY] NAME...',
    help: `Make the profile's next generation without the installed packages NAME (and the\nrun-deps nothing else needs).\n\n${PROFILE_HELP}`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('remove'),
  },
  upgrade: {
    usage: '[--profile NAME] [-j N] [STRATEGY] [NAME...]',
    help: `Build each installed package (or those named) again from the tree it came from,\nor take the newest entry of its name from the catalog it came from; a new\ngeneration only if an output changed.\n\n${PROFILE_HELP}${JOBS_HELP}`,
    env: BUILD_ENV,
    run: ofStore('upgrade'),
  },
  list: {
    usage: '[--profile NAME] [--json]',
    help: `The packages of the profile's current generation: name, version, pkghash, size,\nwhere it came from.\n\n${PROFILE_HELP}  --json             as a JSON object\n`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('list'),
  },
  generations: {
    usage: '[--profile NAME]',
    help: `Each generation of the profile: its number, date and what changed from the one\nbefore.\n\n${PROFILE_HELP}`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('generations'),
  },
  rollback: {
    usage: '[--profile NAME]',
    help: `Make the generation before the current one current.\n\n${PROFILE_HELP}`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('rollback'),
  },
  'switch-generation': {
    usage: '[--profile NAME] N',
    help: `Make generation N current.\n\n${PROFILE_HELP}`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('switchGeneration'),
  },
  'delete-generations': {
    usage: '[--profile NAME] (--older-than Nd | N...)',
    help: `Delete the generations older than N days, or those named; never the current one.\nTheir outputs go at the next gc.\n\n${PROFILE_HELP}`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('deleteGenerations'),
  },
  env: {
    usage: '[--profile NAME]',
    help: `Print the shell lines that put the profile on PATH: eval "$(peerpkgs env)" in\n~/.profile.\n\n${PROFILE_HELP}`,
    env: ['PEERPKGS_HOME'],
    run: ofStore('env'),
  },
  gc: {
    usage: '[-n|--dry-run]',
    help: 'Delete what no profile generation, live venv or registered tree holds: unpacked\noutputs, sandbox roots, unreferenced distfiles, crash leftovers; print what was\nfreed, per kind. Waits for running builds and installs first.\n\n  -n, --dry-run      list what would go, delete nothing\n',
    env: ['PEERPKGS_HOME'],
    run: ofStore('gc'),
  },
};

/** The p2pkgs-named links in bin/: each runs one command, and has its own usage. */
const LINKS: Record<string, Command> = {
  'build-packages-ifchange': COMMANDS.build!,
  'do-fetch': COMMANDS.fetch!,
  'new-package': COMMANDS.new!,
  venv: COMMANDS.venv!,
  'add-to-package-cache': {
    ...COMMANDS.cache!,
    usage: '-o DIR [--sign-key NAME] [--ipfs] [--ipns KEY] [-j N] PKGDIR...',
    help: '',
    run: building('cacheAdd'),
  },
  'ipfs-pin-fetch-file': { usage: '', help: '', run: async (args, prog) => (await import('./mirror-commands.ts')).mirrorsCommand(prog, 'pin', args) },
  'ipfs-pin-all-fetch-files': { usage: '', help: '', run: async (args, prog) => (await import('./mirror-commands.ts')).mirrorsCommand(prog, 'pin-all', args) },
};

// commands whose help is their own module's, and that answer --help themselves
const OWN_HELP = new Set(['ipfs', 'mirrors', 'ipfs-pin-fetch-file', 'ipfs-pin-all-fetch-files']);

async function helpOf(name: string, prog: string, c: Command): Promise<string> {
  let text = c.help;
  if (name === 'verify') text = (await import('./verify-command.ts')).VERIFY_HELP;
  else if (name === 'seed') text = (await import('./seed-commands.ts')).SEED_HELP;
  else if (name === 'add-to-package-cache') text = (await import('./cache-commands.ts')).ADD_HELP;
  else if (name === 'key') text = (await import('./cache-commands.ts')).KEY_HELP;
  else if (name === 'verify-provenance') text = `usage: ${prog} ${c.usage}\n\n${(await import('./provenance-command.ts')).VERIFY_PROVENANCE_HELP}`;
  else text = `usage: ${prog} ${c.usage}\n\n${text}`;
  return text + envHelp(c.env);
}

/** The line of a command's --help that names the variables it reads. */
function envHelp(env: string[] | undefined): string {
  return env?.length ? `\nEnvironment: ${env.join(', ')} (see peerpkgs --help).\n` : '';
}

function mainHelp(): string {
  const lines = ['usage: peerpkgs COMMAND [ARGS]   (peerpkgs COMMAND --help: its options)', ''];
  for (const [name, c] of Object.entries(COMMANDS)) {
    const [first, ...more] = c.usage.split('\n');
    lines.push(`  ${name} ${first}`, ...more.map((m) => `  ${m.trim().replace(/^peerpkgs /, '')}`));
  }
  lines.push('', 'p2pkgs names: ' + Object.keys(LINKS).join(', ') + ' (each NAME --help)', '', 'Environment (a variable that does not parse is exit 2):');
  for (const [v, what] of Object.entries(VARIABLES)) lines.push(`  ${v.padEnd(23)} ${what}`);
  return lines.join('\n') + '\n\n' + EXIT_HELP;
}

async function main(argv: string[]): Promise<number> {
  const name = path.basename(argv[0] ?? 'peerpkgs');
  const link = LINKS[name];
  const cmd = link ? name : argv[1];
  const args = argv.slice(link ? 1 : 2);
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(mainHelp());
    return cmd ? EXIT.ok : EXIT.usage;
  }
  const c = link ?? COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command ${cmd}`);
  const prog = link ? name : `peerpkgs ${cmd}`;
  const sub = link ? undefined : c.subs?.[args[0] ?? ''];
  if (sub && wantsHelp(args)) {
    process.stdout.write(`usage: ${prog} ${args[0]} ${sub.usage}`.trimEnd() + `\n\n${sub.help}${envHelp(sub.env ?? c.env)}`);
    return EXIT.ok;
  }
  if (!OWN_HELP.has(cmd) && wantsHelp(args)) {
    process.stdout.write(await helpOf(cmd, prog, c));
    return EXIT.ok;
  }
  try {
    return await c.run(args, name);
  } catch (e) {
    // the usage error names this command's own --help, or its subcommand's
    if (e instanceof UsageError) e.command ??= sub ? `${prog} ${args[0]}` : prog;
    throw e;
  }
}

export async function run(argv: string[]): Promise<void> {
  const name = path.basename(argv[0] ?? 'peerpkgs');
  // the .do files a build runs (a seed's do-fetch) start in other directories
  if (process.env.PKG_MIRROR_DB) process.env.PKG_MIRROR_DB = path.resolve(process.env.PKG_MIRROR_DB);
  try {
    settings(); // every variable checked before any work, whichever the command reads
    process.exitCode = await main(argv);
  } catch (e) {
    process.exitCode = report(name, e);
  }
}
