// Living beside dockerd. dockerd sets the iptables FORWARD policy to DROP
// and loads br_netfilter, so every forwarded packet, Knit's bridges
// included, must also be accepted by Docker's `filter FORWARD` chain. Docker
// keeps the chain DOCKER-USER for exactly this; Knit puts one jump there, to
// its own chain KNIT-FORWARD, which
//   - RETURNs anything to or from Docker's own bridges (docker0, br-*,
//     docker_gwbridge, and whatever DOCKER-ISOLATION-STAGE-2 names), so
//     Docker keeps deciding for its networks, and
//   - ACCEPTs traffic in and out of Knit's bridges. Knit's own `inet knit`
//     table still applies its isolation, internal and NAT-mode rules: an
//     accept in one base chain does not bypass a drop in another.
//
// Why the iptables binary rather than libnftables: Docker's chains live in
// tables iptables-nft owns; a native nft rule added there makes iptables-nft
// refuse the whole table ("incompatible"), which would break dockerd. So the
// rules are written with iptables-restore (a child process, ~10 ms, not
// waited for on the event loop), only when something changed: at start, at
// each plugin Activate (dockerd sends it when it starts), when a network
// appears or goes, and when a periodic in-process read (libnftables,
// read-only) finds the jump or chain missing
// (dockerd restarted, or someone flushed the ruleset).
import { spawn } from 'node:child_process';
import type { Nft } from '../kernel/nft.ts';
import { messageOf } from '../lib/errors.ts';

export const KNIT_CHAIN = 'KNIT-FORWARD';
const DOCKER_PATTERNS = ['docker0', 'br-+', 'docker_gwbridge'];

type Family = 'ip' | 'ip6';

/** What Docker's filter table looks like in one family, as far as Knit cares. */
export interface DockerChains {
  /** DOCKER-USER exists: dockerd manages this namespace's iptables. */
  dockerUser: boolean;
  /** The first rule of DOCKER-USER jumps to KNIT-FORWARD. */
  jumpFirst: boolean;
  /** Rules now in KNIT-FORWARD (undefined: no such chain). */
  knitRules: number | undefined;
  /** Bridges Docker isolates (its own networks). */
  dockerBridges: string[];
}

interface NftItem {
  chain?: { name?: string };
  rule?: { chain?: string; expr?: unknown[] };
}

/** Reads the filter table's state from `nft -j list table <family> filter` output. */
export function parseDockerChains(listing: unknown): DockerChains {
  const items = ((listing as { nftables?: NftItem[] } | undefined)?.nftables ?? []) as NftItem[];
  const chains = new Set(items.flatMap((i) => (i.chain?.name ? [i.chain.name] : [])));
  const rulesOf = (c: string) => items.filter((i) => i.rule?.chain === c).map((i) => i.rule?.expr ?? []);
  const userRules = rulesOf('DOCKER-USER');
  const bridges = new Set<string>();
  for (const expr of rulesOf('DOCKER-ISOLATION-STAGE-2')) {
    for (const e of expr as { match?: { left?: { meta?: { key?: string } }; right?: unknown } }[]) {
      if (e.match?.left?.meta?.key === 'oifname' && typeof e.match.right === 'string') bridges.add(e.match.right);
    }
  }
  return {
    dockerUser: chains.has('DOCKER-USER'),
    jumpFirst: userRules.length > 0 && JSON.stringify(userRules[0]).includes(`"target":"${KNIT_CHAIN}"`),
    knitRules: chains.has(KNIT_CHAIN) ? rulesOf(KNIT_CHAIN).length : undefined,
    dockerBridges: [...bridges].sort(),
  };
}

/** The iptables-restore input that makes KNIT-FORWARD exactly right (and the jump, if missing). */
export function restoreText(knitBridges: string[], dockerBridges: string[], addJump: boolean): { text: string; rules: number } {
  const lines = ['*filter', `:${KNIT_CHAIN} - [0:0]`];
  const docker = [...new Set([...DOCKER_PATTERNS, ...dockerBridges])].filter((b) => !knitBridges.includes(b));
  for (const b of docker) lines.push(`-A ${KNIT_CHAIN} -i ${b} -j RETURN`, `-A ${KNIT_CHAIN} -o ${b} -j RETURN`);
  for (const b of knitBridges) lines.push(`-A ${KNIT_CHAIN} -i ${b} -j ACCEPT`, `-A ${KNIT_CHAIN} -o ${b} -j ACCEPT`);
  const rules = lines.length - 2;
  if (addJump) lines.push(`-I DOCKER-USER 1 -j ${KNIT_CHAIN}`);
  lines.push('COMMIT', '');
  return { text: lines.join('\n'), rules };
}

export interface DockerUserOptions {
  nft: Nft;
  /** The bridges of Knit's bridge networks. */
  bridges: () => Promise<string[]>;
  log: (m: string) => void;
}

export class DockerUserRules {
  readonly #o: DockerUserOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #applied = new Map<Family, string>();

  constructor(o: DockerUserOptions) {
    this.#o = o;
  }

  /**
   * Re-checks soon (serialised with any check in progress): never in the
   * caller's turn of the event loop, so a plugin call that asks for a check
   * (CreateNetwork, Activate) has replied before the ruleset is read.
   */
  check(): Promise<void> {
    this.#running = this.#running
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(() => this.#checkAll())
      .catch((err: unknown) => this.#o.log(`docker-user: ${messageOf(err)}`));
    return this.#running;
  }

  start(intervalMs = 5000): void {
    void this.check();
    this.#timer = setInterval(() => void this.check(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #checkAll(): Promise<void> {
    const bridges = (await this.#o.bridges()).sort();
    for (const family of ['ip', 'ip6'] as const) {
      let listing: unknown;
      try {
        listing = this.#o.nft.list(`table ${family} filter`);
      } catch {
        continue; // no filter table: nothing of Docker's here
      }
      const st = parseDockerChains(listing);
      if (!st.dockerUser) continue;
      const want = restoreText(bridges, st.dockerBridges, !st.jumpFirst);
      const signature = `${bridges.join(',')}|${st.dockerBridges.join(',')}`;
      if (st.jumpFirst && st.knitRules === want.rules && this.#applied.get(family) === signature) continue;
      await restore(family === 'ip' ? 'iptables-restore' : 'ip6tables-restore', want.text);
      this.#applied.set(family, signature);
      this.#o.log(`docker-user: ${family} FORWARD accepts Knit bridges ${bridges.join(', ') || '(none)'} via DOCKER-USER`);
    }
  }
}

/**
 * Runs iptables-restore (~10 ms) without holding up the event loop: plugin
 * calls that arrive meanwhile are answered.
 */
function restore(bin: string, input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-w', '--noflush'], { stdio: ['pipe', 'ignore', 'pipe'], timeout: 30_000 });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', (err) => reject(new Error(`${bin} failed: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${bin} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
    child.stdin.end(input);
  });
}
