// sysctls under /proc/sys, per network namespace. A net.* sysctl belongs to
// the netns the file is opened in, so the file is opened (and read or
// written, all synchronously) inside a withNetns window.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { invalid } from '../lib/errors.ts';
import { withNetns } from './netns.ts';

/** 'net.ipv4.ip_forward' or 'net/ipv4/ip_forward' -> /proc/sys/net/ipv4/ip_forward. */
function sysctlPath(key: string): string {
  // Dotted keys keep dots inside interface names only when written with '/'.
  const rel = key.includes('/') ? key : key.replace(/\./g, '/');
  if (rel === '' || rel.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw invalid('key', `'${key}' is not a sysctl name (e.g. net.ipv4.ip_forward)`);
  }
  return `/proc/sys/${rel}`;
}

function inNetns<T>(netnsPath: string | undefined, fn: () => T): T {
  return netnsPath === undefined ? fn() : withNetns(netnsPath, fn);
}

export function setSysctl(key: string, value: string, netnsPath?: string): void {
  const path = sysctlPath(key);
  inNetns(netnsPath, () => {
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, value);
    } finally {
      closeSync(fd);
    }
  });
}

export function getSysctl(key: string, netnsPath?: string): string {
  const path = sysctlPath(key);
  return inNetns(netnsPath, () => readFileSync(path, 'utf8').trimEnd());
}
