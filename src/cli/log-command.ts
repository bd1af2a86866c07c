/**
 * `peerpkgs log [--list] PKGDIR`: the kept log of the package's last build
 * (store/logs.ts), decompressed, as the build wrote it; with --list, the
 * kept logs, oldest first.
 */
import { PeerpkgsError } from '../errors.ts';
import { printLog, lastLog, listLogs } from '../store/logs.ts';
import { peerpkgsHome } from '../home.ts';
import { EXIT, UsageError, parse, packageDirs, rel } from './frame.ts';

export async function logCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { list: { type: 'boolean' } });
  if (positionals.length !== 1) throw new UsageError('name one package directory, e.g. ./pkg/make');
  const dir = packageDirs(positionals)[0]!;
  const home = peerpkgsHome();
  const logs = listLogs(home, dir);
  const last = lastLog(home, dir);
  if (!logs.length || !last || !logs.some((l) => l.file === last)) {
    throw new PeerpkgsError(`${rel(dir)}: no build of it is logged (not built here yet, substituted from a cache, or a seed taken by its .do)`, EXIT.notFound);
  }
  if (values.list) {
    for (const l of logs) process.stdout.write(`${l.when.toISOString()}  ${l.ok ? 'ok    ' : 'failed'}  ${l.file}\n`);
    return EXIT.ok;
  }
  try {
    await printLog(last, process.stdout);
  } catch (e) {
    // `peerpkgs log … | head`: the reader had enough
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
  return EXIT.ok;
}
