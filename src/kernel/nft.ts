// nftables in-process: libnftables.so.1 through koffi, one long-lived
// context per network namespace. A spawned `nft` costs ~5 ms per command
// (16 ms for a delete, closing its netlink socket); a context costs ~0.1 ms.
//
// The context's netlink socket belongs to the netns it was created in, so
// open() creates it (and makes it talk once) inside a withNetns window; every
// later call acts in that netns whatever thread netns the caller is in.
import koffi from 'koffi';
import { KnitError } from '../lib/errors.ts';
import { withNetns } from './netns.ts';
import * as libc from './libc.ts';
import { NftElements } from './nft-elements.ts';

const ALL_SIGNALS = Buffer.alloc(libc.SIGSET_BYTES, 0xff);

const NFT_CTX_DEFAULT = 0;
const NFT_CTX_OUTPUT_JSON = 1 << 4;

interface Lib {
  ctxNew: (flags: number) => unknown;
  ctxFree: (ctx: unknown) => void;
  bufferOutput: (ctx: unknown) => number;
  bufferError: (ctx: unknown) => number;
  outputBuffer: (ctx: unknown) => string | null;
  errorBuffer: (ctx: unknown) => string | null;
  setOutputFlags: (ctx: unknown, flags: number) => void;
  runCmd: (ctx: unknown, buf: string) => number;
}

let lib: Lib | undefined;

function load(): Lib {
  if (lib !== undefined) return lib;
  let so: ReturnType<typeof koffi.load>;
  try {
    so = koffi.load('libnftables.so.1');
  } catch (err) {
    throw new KnitError('unsupported', 'libnftables.so.1 not found: apt-get install libnftables1', { cause: err });
  }
  // Opaque struct: only ever handled by pointer.
  koffi.opaque('nft_ctx');
  lib = {
    ctxNew: so.func('nft_ctx *nft_ctx_new(uint32_t flags)') as Lib['ctxNew'],
    ctxFree: so.func('void nft_ctx_free(nft_ctx *ctx)') as Lib['ctxFree'],
    bufferOutput: so.func('int nft_ctx_buffer_output(nft_ctx *ctx)') as Lib['bufferOutput'],
    bufferError: so.func('int nft_ctx_buffer_error(nft_ctx *ctx)') as Lib['bufferError'],
    outputBuffer: so.func('const char *nft_ctx_get_output_buffer(nft_ctx *ctx)') as Lib['outputBuffer'],
    errorBuffer: so.func('const char *nft_ctx_get_error_buffer(nft_ctx *ctx)') as Lib['errorBuffer'],
    setOutputFlags: so.func('void nft_ctx_output_set_flags(nft_ctx *ctx, unsigned int flags)') as Lib['setOutputFlags'],
    runCmd: so.func('int nft_run_cmd_from_buffer(nft_ctx *ctx, const char *buf)') as Lib['runCmd'],
  };
  return lib;
}

/** Thrown by Nft.run: nft's own message plus the command that failed. */
export class NftError extends KnitError {
  readonly nftMessage: string;
  readonly command: string;

  constructor(nftMessage: string, command: string) {
    super('internal', `nft: ${nftMessage.trim() || 'command failed'}\n  in: ${clip(command)}`);
    this.nftMessage = nftMessage;
    this.command = command;
  }
}

function clip(s: string): string {
  const one = s.trim();
  return one.length > 2000 ? `${one.slice(0, 2000)}…` : one;
}

export class Nft {
  readonly netnsPath: string | undefined;
  /** Adds, deletes and gets of set and map elements as raw netlink, in the same netns. */
  readonly elements: NftElements;
  #lib: Lib;
  #ctx: unknown;
  #json = false;
  #savedMask = Buffer.alloc(libc.SIGSET_BYTES);

  private constructor(l: Lib, ctx: unknown, netnsPath: string | undefined, elements: NftElements) {
    this.#lib = l;
    this.#ctx = ctx;
    this.netnsPath = netnsPath;
    this.elements = elements;
  }

  /** A context for the netns at `netnsPath`, or the caller's current netns. */
  static open(netnsPath?: string): Nft {
    const l = load();
    const make = (): Nft => {
      const ctx = l.ctxNew(NFT_CTX_DEFAULT);
      if (ctx === null) throw new KnitError('internal', 'nft_ctx_new failed');
      l.bufferOutput(ctx);
      l.bufferError(ctx);
      let elements: NftElements;
      try {
        elements = NftElements.open();
      } catch (err) {
        l.ctxFree(ctx);
        throw err;
      }
      const nft = new Nft(l, ctx, netnsPath, elements);
      // Make the context open its netlink socket now, inside the window,
      // whether libnftables opens it at nft_ctx_new or on first use.
      try {
        nft.run('list tables');
      } catch (err) {
        nft.close();
        throw err;
      }
      return nft;
    };
    return netnsPath === undefined ? make() : withNetns(netnsPath, make);
  }

  /** Runs nft text commands (one buffer = one transaction); returns nft's output. */
  run(cmds: string): string {
    return this.#exec(cmds, false);
  }

  /** Runs a JSON command object ({nftables: [...]}) and returns the parsed output, if any. */
  runJson(obj: unknown): unknown {
    const out = this.#exec(JSON.stringify(obj), true);
    return out.trim() === '' ? undefined : (JSON.parse(out) as unknown);
  }

  /** `list <what>` (e.g. 'table inet knit', 'set inet knit pub4'), parsed from JSON. */
  list(what: string): unknown {
    return JSON.parse(this.#exec(`list ${what}`, true)) as unknown;
  }

  close(): void {
    if (this.#ctx === null) return;
    this.#lib.ctxFree(this.#ctx);
    this.#ctx = null;
    this.elements.close();
  }

  #exec(cmds: string, json: boolean): string {
    if (this.#ctx === null) throw new KnitError('internal', 'nft: context is closed');
    if (json !== this.#json) {
      this.#lib.setOutputFlags(this.#ctx, json ? NFT_CTX_OUTPUT_JSON : 0);
      this.#json = json;
    }
    // libnftables gives up with EINTR when a signal (a profiler's SIGPROF, a
    // SIGCHLD) interrupts its netlink receive, after the kernel may have
    // applied the batch: signals wait until the call returns instead.
    libc.pthreadSigmask(libc.SIG_BLOCK, ALL_SIGNALS, this.#savedMask);
    let rc: number;
    try {
      rc = this.#lib.runCmd(this.#ctx, cmds);
    } finally {
      libc.pthreadSigmask(libc.SIG_SETMASK, this.#savedMask, null);
    }
    // Reading a buffer also rewinds it, so each call sees only its own text.
    const out = this.#lib.outputBuffer(this.#ctx) ?? '';
    const err = this.#lib.errorBuffer(this.#ctx) ?? '';
    if (rc !== 0) throw new NftError(err, cmds);
    return out;
  }
}
