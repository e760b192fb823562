// The devices of a netdev base chain, changed over raw netlink: one chain
// hooks the ingress of many interfaces, and an interface joins or leaves it
// without the chain (or its rules) being made again. libnftables 1.0.x has
// no words for either change; the kernel has had them since 5.16.
//
// Since Linux 6.16 a netdev hook is kept by name: a device named in a chain
// may not exist yet, or any more, and the hook follows the name. Knit relies
// on that (see services/firewall/ruleset.ts, FASTPATH_CHAIN).
// (include/uapi/linux/netfilter/nf_tables.h: NFTA_CHAIN_HOOK, NFTA_HOOK_DEVS)
import { checkName } from './link.ts';
import { nested, str, u32be } from './netlink/message.ts';
import { NLM_F_CREATE } from './netlink/constants.ts';
import { nfMessage, NFNL_SUBSYS_NFTABLES } from './netlink/nfnetlink.ts';

export const NFPROTO_NETDEV = 5;
export const NF_NETDEV_INGRESS = 0;

const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_DELCHAIN = 5;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_HOOK_PRIORITY = 2;
const NFTA_HOOK_DEVS = 4;
const NFTA_DEVICE_NAME = 1;

/** Adds interfaces to (or removes them from) a netdev base chain's hook. */
export interface ChainDevicesChange {
  verb: 'add-devices' | 'delete-devices';
  table: string;
  chain: string;
  /** Must be the chain's own: the kernel finds the hook by both. */
  hook: number;
  priority: number;
  devices: string[];
}

/**
 * The message for one change. Adding a device already in the chain is a
 * no-op; deleting one that is not there fails with ENOENT.
 */
export function chainDevicesMessage(c: ChainDevicesChange): Buffer {
  for (const d of c.devices) checkName(d, 'devices');
  const hook = nested(NFTA_CHAIN_HOOK, [
    u32be(NFTA_HOOK_HOOKNUM, c.hook),
    u32be(NFTA_HOOK_PRIORITY, c.priority),
    nested(NFTA_HOOK_DEVS, c.devices.map((d) => str(NFTA_DEVICE_NAME, d))),
  ]);
  const add = c.verb === 'add-devices';
  return nfMessage(NFNL_SUBSYS_NFTABLES, add ? NFT_MSG_NEWCHAIN : NFT_MSG_DELCHAIN, add ? NLM_F_CREATE : 0, NFPROTO_NETDEV, [
    str(NFTA_CHAIN_TABLE, c.table),
    str(NFTA_CHAIN_NAME, c.chain),
    hook,
  ]);
}

export function describeChainDevices(c: ChainDevicesChange): string {
  return `${c.verb === 'add-devices' ? 'add' : 'delete'} devices { ${c.devices.join(', ')} } of chain netdev ${c.table} ${c.chain}`;
}
