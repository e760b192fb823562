// Port publishing specs as users write them (Docker's -p form), and the
// check that a host port is not already served by a local process (a DNAT
// rule would silently shadow it).
import { conflict, invalid, KnitError } from '../lib/errors.ts';
import { probeBind } from '../kernel/socket.ts';
import { canonicalIP, familyOf } from '../lib/ip.ts';
import type { Proto } from './firewall/types.ts';

export interface PublishSpec {
  proto: Proto;
  /** Canonical host address; undefined = every host address. */
  hostIP?: string | undefined;
  hostPort: number;
  containerPort: number;
}

const FORM = 'expected [hostip:]hostport[-range]:port[-range][/tcp|udp], e.g. 8080:80, 127.0.0.1:8000-8001:80-81/udp or [::1]:8080:80';

function bad(spec: string, what: string): KnitError {
  return invalid('publish', `'${spec}': ${what}; ${FORM}`);
}

function parseRange(spec: string, text: string, which: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (m === null) throw bad(spec, `${which} '${text}' is not a port or port range`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  for (const p of [lo, hi]) {
    if (p < 1 || p > 65535) throw bad(spec, `${which} ${p} is out of range 1-65535`);
  }
  if (hi < lo) throw bad(spec, `${which} range '${text}' ends before it starts`);
  return [lo, hi];
}

/** One spec per host port: a range of N ports gives N specs, mapped 1:1. */
export function parsePublish(spec: string): PublishSpec[] {
  let rest = spec.trim();
  let proto: Proto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== 'tcp' && p !== 'udp') throw bad(spec, `protocol '${rest.slice(slash + 1)}' is not tcp or udp`);
    proto = p;
    rest = rest.slice(0, slash);
  }

  let hostIP: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') throw bad(spec, 'an IPv6 host address needs its closing bracket then :');
    const ip = rest.slice(1, close);
    if (familyOf(ip) !== 6) throw bad(spec, `'${ip}' in brackets is not an IPv6 address`);
    hostIP = canonicalIP(ip);
    rest = rest.slice(close + 2);
  }
  const parts = rest.split(':');
  if (hostIP === undefined && parts.length === 3) {
    const ip = parts.shift() ?? '';
    if (familyOf(ip) !== 4) throw bad(spec, `host address '${ip}' is not an IPv4 address (IPv6 goes in brackets)`);
    hostIP = canonicalIP(ip);
  } else if (parts.length > 3 || (hostIP === undefined && parts.length > 2)) {
    throw bad(spec, 'too many colons (an IPv6 host address goes in brackets)');
  }
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
    throw bad(spec, 'both a host port and a container port are needed');
  }
  const [hLo, hHi] = parseRange(spec, parts[0] ?? '', 'host port');
  const [cLo, cHi] = parseRange(spec, parts[1] ?? '', 'container port');
  if (hHi - hLo !== cHi - cLo) {
    throw bad(spec, `host range has ${hHi - hLo + 1} ports and container range ${cHi - cLo + 1}; they map 1:1`);
  }
  const out: PublishSpec[] = [];
  for (let i = 0; i <= hHi - hLo; i++) {
    out.push({ proto, hostIP, hostPort: hLo + i, containerPort: cLo + i });
  }
  return out;
}

/**
 * Throws 'conflict' if a local socket already holds the host port, by
 * binding it for an instant in the calling thread's netns (TCP listen, UDP
 * bind); synchronous, so it also works inside a withNetns window. With no
 * hostIP both 0.0.0.0 and :: are tried (a netns without IPv6 skips ::).
 */
export function checkHostPortFree(proto: Proto, hostPort: number, hostIP?: string): void {
  const anyAddr = hostIP === undefined || hostIP === '0.0.0.0' || hostIP === '::';
  const addrs = hostIP === undefined ? ['0.0.0.0', '::'] : [canonicalIP(hostIP, 'publish')];
  for (const addr of addrs) {
    const err = probeBind(proto, addr, hostPort);
    if (err === undefined) continue;
    if (err === 'EADDRINUSE') {
      throw conflict(`host port ${addr}:${hostPort}/${proto} is already in use by a local process`, 'publish');
    }
    if (err === 'EADDRNOTAVAIL' || err === 'EAFNOSUPPORT') {
      if (anyAddr) continue;
      throw invalid('publish', `host address ${addr} is not an address of this host`);
    }
    throw new KnitError('internal', `checking host port ${addr}:${hostPort}/${proto}: ${err}`);
  }
}
