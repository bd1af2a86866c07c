/**
 * nginx (Debian's `nginx` package) serving a directory on loopback, for the
 * cache tests and benchmark: the real static server a cache is published
 * to, not one of ours.
 *
 * It runs in the foreground from a config written to a temporary directory
 * that also holds its pid file, logs and temp paths, so nothing under /etc
 * or /var is used. Run as root, nginx would drop its workers to `nobody`,
 * who cannot read a test's 0700 temporary directories: the config says
 * `user root` then (a directive nginx ignores, with a warning, when not root).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { canConnect, freePort } from './helpers.ts';

export const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p)) ?? 'nginx';

export interface Nginx {
  url: string;
  /** its access log: one line a request */
  accessLog: string;
  stop(): Promise<void>;
}

export async function startNginx(root: string): Promise<Nginx> {
  const port = await freePort();
  const conf = fs.mkdtempSync(path.join(os.tmpdir(), 'peerpkgs-nginx-'));
  const at = (f: string) => path.join(conf, f);
  const accessLog = at('access.log');
  fs.writeFileSync(
    at('nginx.conf'),
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${at('nginx.pid')};
error_log ${at('error.log')} warn;
events { worker_connections 256; }
http {
  access_log ${accessLog};
  client_body_temp_path ${at('body')};
  proxy_temp_path ${at('proxy')};
  fastcgi_temp_path ${at('fastcgi')};
  uwsgi_temp_path ${at('uwsgi')};
  scgi_temp_path ${at('scgi')};
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  );
  // -e: the error log before the config is read, which would otherwise be /var/log/nginx
  const p: ChildProcess = spawn(NGINX, ['-p', conf, '-c', at('nginx.conf'), '-e', at('error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d) => (stderr += d));
  const failed = new Promise<never>((_, reject) => {
    p.once('error', (e) => reject(new Error(`cannot run nginx (${e.message}); install it: apt-get install nginx`)));
  });
  failed.catch(() => {});
  for (let i = 0; !(await canConnect(port)); i++) {
    if (i > 200 || p.exitCode !== null) {
      await Promise.race([failed, Promise.resolve()]);
      const log = fs.existsSync(at('error.log')) ? fs.readFileSync(at('error.log'), 'utf8') : '';
      throw new Error(`nginx did not start (exit ${p.exitCode}): ${stderr}${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const stop = async () => {
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGQUIT'); // graceful: the workers finish and exit with the master
      await exited;
    }
    fs.rmSync(conf, { recursive: true, force: true });
  };
  return { url: `http://127.0.0.1:${port}`, accessLog, stop };
}
