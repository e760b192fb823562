// Knit's nftables firewall: the `inet knit` table and its element updates.
export { Firewall } from './firewall.ts';
export { rulesetText, TABLE } from './ruleset.ts';
export type { FastpathPort, FirewallNetwork, FirewallState, PortMapping, Proto } from './types.ts';
