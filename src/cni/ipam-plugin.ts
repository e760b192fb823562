// The `knit-ipam` CNI IPAM plugin executable: the reference bridge, macvlan
// or ptp plugins delegate to it and get addresses from Knit's pools (shared
// with the Knit network of the same name when there is one). A forwarder to
// Knit's daemon, like `knit`.
import { forward } from './forward.ts';

// Not a top-level await: bun's --bytecode build (see scripts/build.ts) is CommonJS.
void forward('knit-ipam');
