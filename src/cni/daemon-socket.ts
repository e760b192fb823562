// Which Knit daemon a plugin call goes to. Loaded by the plugin executables
// (forward.ts) and by the daemon (plugin-call.ts), which answers a call whose
// configuration names another daemon with a redirect.
import { CniError, ErrorCode } from './errors.ts';

export const DEFAULT_SOCKET = '/run/knit/knit.sock';

/**
 * The daemon's socket: the network configuration's `socket` first, because a
 * runtime may run DEL from a process that did not inherit the environment
 * ADD ran with (podman's conmon cleanup does); then $KNIT_SOCKET; then the default.
 */
export function socketPath(
  env: Readonly<Record<string, string | undefined>>,
  config: Readonly<Record<string, unknown>> = {},
): string {
  const c = config.socket;
  if (c !== undefined && c !== null) {
    if (typeof c !== 'string' || !c.startsWith('/')) {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `socket: must be the absolute path of the Knit daemon's socket, got ${JSON.stringify(c)}`, 'socket');
    }
    return c;
  }
  const s = env.KNIT_SOCKET;
  return s !== undefined && s !== '' ? s : DEFAULT_SOCKET;
}

/** The configuration as far as finding the daemon needs it; the daemon reports a bad one. */
export function configOf(stdin: string): Record<string, unknown> {
  try {
    const c: unknown = JSON.parse(stdin);
    return typeof c === 'object' && c !== null && !Array.isArray(c) ? (c as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
