// The `knit-ipam` CNI IPAM plugin executable: the reference bridge, macvlan
// or ptp plugins delegate to it and get addresses from Knit's pools (shared
// with the Knit network of the same name when there is one).
import { pluginMain } from './skel.ts';
import { ALL_VERSIONS } from './version.ts';
import { callDaemon } from './plugin-client.ts';
import { CniError, ErrorCode } from './errors.ts';

// Not a top-level await: bun's --bytecode build (see scripts/build.ts) is CommonJS.
// runPlugin turns every failure into a CNI error and an exit code.
void pluginMain({
  versions: ALL_VERSIONS,
  about: 'knit-ipam: Knit IPAM as a CNI IPAM plugin (a client of the Knit daemon)',
  async add(args) {
    const r = await callDaemon('add', 'knit-ipam', args);
    if (!r) throw new CniError(ErrorCode.Internal, 'the daemon returned no result for ADD');
    return r;
  },
  async del(args) {
    await callDaemon('del', 'knit-ipam', args);
  },
  async check(args) {
    await callDaemon('check', 'knit-ipam', args);
  },
  async gc(args) {
    await callDaemon('gc', 'knit-ipam', args);
  },
  async status(args) {
    try {
      await callDaemon('status', 'knit-ipam', args);
    } catch (err) {
      if (err instanceof CniError && err.code === ErrorCode.TryAgainLater) throw new CniError(ErrorCode.PluginNotAvailable, err.msg, err.details);
      throw err;
    }
  },
});
