// Network options: Knit's short names and Docker's long ones mean the same
// thing. Unknown options are refused (naming the known ones) rather than
// silently ignored: a typo must not yield a network that behaves otherwise.
import { invalid } from '../lib/errors.ts';
import { checkIfname } from '../model/index.ts';
import { canonicalIP } from '../lib/ip.ts';

export interface BridgeOptions {
  bridge?: string;
  icc: boolean;
  masquerade: boolean;
  mtu: number;
  dns: boolean;
  /** Unicast between the network's sandboxes skips the bridge (services/firewall, FASTPATH). */
  fastpath: boolean;
  hostBindingIPv4?: string;
}

const ALIASES: Record<string, keyof BridgeOptions> = {
  bridge: 'bridge',
  'com.docker.network.bridge.name': 'bridge',
  icc: 'icc',
  'com.docker.network.bridge.enable_icc': 'icc',
  masquerade: 'masquerade',
  ip_masquerade: 'masquerade',
  'com.docker.network.bridge.enable_ip_masquerade': 'masquerade',
  mtu: 'mtu',
  'com.docker.network.driver.mtu': 'mtu',
  dns: 'dns',
  fastpath: 'fastpath',
  host_binding_ipv4: 'hostBindingIPv4',
  'com.docker.network.bridge.host_binding_ipv4': 'hostBindingIPv4',
};

/** Options Docker sends on every network that carry nothing for Knit. */
const IGNORED = new Set([
  'com.docker.network.bridge.default_bridge',
  'com.docker.network.enable_ipv6',
  'com.docker.network.generic',
  'com.docker.network.bridge.inhibit_ipv4',
  'com.docker.network.bridge.gateway_mode_ipv4',
  'com.docker.network.bridge.gateway_mode_ipv6',
  'com.docker.network.container_iface_prefix',
]);

function bool(key: string, v: string): boolean {
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  throw invalid(`opt ${key}`, `'${v}' is not a boolean (use true or false)`);
}

export function parseBridgeOptions(opts: Record<string, string>): BridgeOptions {
  const out: BridgeOptions = { icc: true, masquerade: true, mtu: 1500, dns: true, fastpath: true };
  for (const [key, value] of Object.entries(opts)) {
    const name = ALIASES[key];
    if (!name) {
      if (IGNORED.has(key)) continue;
      throw invalid(`opt ${key}`, `unknown option; known options: ${Object.keys(ALIASES).join(', ')}`);
    }
    switch (name) {
      case 'bridge':
        out.bridge = checkIfname(`opt ${key}`, value);
        break;
      case 'icc':
      case 'masquerade':
      case 'dns':
      case 'fastpath':
        out[name] = bool(key, value);
        break;
      case 'mtu': {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 68 || n > 65535) throw invalid(`opt ${key}`, `'${value}' is not an MTU (68 to 65535)`);
        out.mtu = n;
        break;
      }
      case 'hostBindingIPv4':
        out.hostBindingIPv4 = canonicalIP(value, `opt ${key}`);
        break;
    }
  }
  return out;
}
