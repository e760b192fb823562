// The kernel layer: netns, rtnetlink, sysctl. It knows nothing of Knit; every
// call acts in the netns of the socket (or path) it is given.
export * from './netns.ts';
export * from './sysctl.ts';
export * from './mac.ts';
export * from './link.ts';
export * from './addr.ts';
export * from './route.ts';
export * from './iface.ts';
export * from './neigh.ts';
export * from './arp.ts';
export { NetlinkSocket, NetlinkError, withSocket, type Request } from './netlink/socket.ts';
