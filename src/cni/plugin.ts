// The `knit` CNI plugin executable: a forwarder to Knit's daemon, which runs
// the call (plugin-call.ts, plugin-handlers.ts, service.ts).
import { forward } from './forward.ts';

// Not a top-level await: bun's --bytecode build (see scripts/build.ts) is CommonJS.
void forward('knit');
