// null: the sandbox keeps only its loopback (Docker's `none`).
import type { NetworkDriver } from './driver.ts';
import { setLink } from '../kernel/link.ts';
import { NetlinkSocket } from '../kernel/netlink/socket.ts';

export const nullDriver: NetworkDriver = {
  name: 'null',
  usesIpam: false,
  createNetwork() {},
  deleteNetwork() {},
  attach(_host, _net, sb) {
    const s = NetlinkSocket.open(sb.netnsPath);
    try {
      setLink(s, 'lo', { up: true });
    } finally {
      s.close();
    }
  },
  detach() {},
  check() {
    return [];
  },
};
