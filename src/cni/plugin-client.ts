// What Knit's plugin executables share: one request to the daemon per call.
// The daemon answers {result} or {error: CNI error object}; no daemon at all
// is code 11 (try again later) with how to start one.
import type { CmdArgs } from './skel.ts';
import type { CniReply, CniRequest, CniVerb } from './service.ts';
import type { Result100 } from './types.ts';
import { Client, ClientError } from '../cli/client.ts';
import { CniError, ErrorCode } from './errors.ts';

export const DEFAULT_SOCKET = '/run/knit/knit.sock';

/**
 * The daemon's socket: the network configuration's `socket` first, because a
 * runtime may run DEL from a process that did not inherit the environment
 * ADD ran with (podman's conmon cleanup does); then $KNIT_SOCKET; then the default.
 */
export function socketPath(
  env: Readonly<Record<string, string | undefined>> = process.env,
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

export async function callDaemon(
  verb: CniVerb,
  plugin: CniRequest['plugin'],
  args: CmdArgs,
  extra: { ipamResult?: Result100 } = {},
): Promise<Result100 | undefined> {
  const socket = socketPath(process.env, args.config);
  const body: CniRequest = {
    plugin,
    config: args.config,
    ...(args.containerID ? { containerId: args.containerID } : {}),
    ...(args.netns ? { netns: args.netns } : {}),
    ...(args.ifName ? { ifname: args.ifName } : {}),
    ...(args.args ? { args: args.args } : {}),
    ...extra,
  };
  let reply: CniReply;
  try {
    reply = await new Client(socket).post<CniReply>(`/v1/cni/${verb}`, body);
  } catch (err) {
    if (err instanceof ClientError && err.code === undefined && err.status === undefined) {
      throw new CniError(
        ErrorCode.TryAgainLater,
        `the Knit daemon is not reachable at ${socket}`,
        `start it with 'knit daemon' (or set KNIT_SOCKET to its socket): ${err.message}`,
      );
    }
    throw new CniError(ErrorCode.Internal, err instanceof Error ? err.message : String(err));
  }
  if (reply.error) throw new CniError(reply.error.code, reply.error.msg, reply.error.details ?? '');
  return reply.result;
}
