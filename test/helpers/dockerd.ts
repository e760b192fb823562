// What the Docker tests and the Docker benchmark both need to run a private
// dockerd beside Knit: its command line and a busybox image built without a
// registry. No node:test hooks here, so bench/ can import it too.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Where dockerd looks for plugin sockets; Knit's is knit.sock there. */
export const PLUGIN_DIR = '/run/docker/plugins';
export const PLUGIN_SOCKET = join(PLUGIN_DIR, 'knit.sock');

/**
 * `nsenter` arguments that start dockerd in the namespace at nsPath with all
 * its state under dir, serving `socket`; it dies with whoever started it.
 */
export function dockerdArgs(o: { nsPath: string; ns: string; dir: string; socket: string }): string[] {
  return [
    `--net=${o.nsPath}`,
    'setpriv', '--pdeathsig', 'TERM',
    'dockerd',
    '--data-root', join(o.dir, 'data'),
    '--exec-root', join(o.dir, 'exec'),
    '--pidfile', join(o.dir, 'dockerd.pid'),
    '-H', `unix://${o.socket}`,
    '--containerd-namespace', `knit-${o.ns}`,
    '--containerd-plugins-namespace', `knit-${o.ns}-plugins`,
  ];
}

/** A busybox root filesystem (bin/busybox and its applet links, plus `dirs`) as a tar under dir, for `docker import`. */
export function busyboxRootfsTar(dir: string, dirs: string[] = []): string {
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'bin'), { recursive: true });
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox not found (apt-get install busybox-static)');
  copyFileSync(busybox, join(root, 'bin/busybox'));
  const applets = spawnSync(busybox, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter((a) => a && a !== 'busybox');
  for (const applet of applets) symlinkSync('busybox', join(root, 'bin', applet));
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  const tar = join(dir, 'rootfs.tar');
  const t = spawnSync('tar', ['-C', root, '-cf', tar, '.'], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  return tar;
}
