// netavark (Podman's network backend, Debian's package) driven as Podman
// does: `netavark --config DIR setup NETNS < options.json`, run inside the
// benchmark's host namespace with nsenter so that its bridge, veths and
// iptables/nftables rules all stay in there.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { childEnv } from './host.ts';

export interface NetavarkNet {
  bridge: string;
  subnet: string;
  gateway: string;
}

export function netavarkOptions(net: NetavarkNet, ip: string, hostPort?: number): string {
  return JSON.stringify({
    container_id: randomBytes(32).toString('hex'),
    container_name: `bench${hostPort ?? ''}`,
    port_mappings: hostPort === undefined ? [] : [{ host_ip: '', container_port: 80, host_port: hostPort, range: 1, protocol: 'tcp' }],
    networks: { bench: { static_ips: [ip], aliases: [], interface_name: 'eth0' } },
    network_info: {
      bench: {
        name: 'bench',
        id: 'b'.repeat(64),
        driver: 'bridge',
        network_interface: net.bridge,
        subnets: [{ subnet: net.subnet, gateway: net.gateway }],
        ipv6_enabled: false,
        internal: false,
        dns_enabled: false,
        ipam_options: { driver: 'host-local' },
      },
    },
  });
}

/** Runs `netavark setup|teardown` for the sandbox at netnsPath; throws with its stderr on failure. */
export function netavark(bin: string, hostNsPath: string, configDir: string, verb: 'setup' | 'teardown', netnsPath: string, options: string): void {
  const r = spawnSync('nsenter', [`--net=${hostNsPath}`, bin, '--config', configDir, verb, netnsPath], {
    input: options,
    encoding: 'utf8',
    env: childEnv(),
  });
  if (r.status !== 0) throw new Error(`netavark ${verb} ${netnsPath} failed (${r.status}): ${r.stderr.trim()}`);
}
