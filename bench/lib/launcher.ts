// Runs on Bun, inside a benchmark host namespace (started by nsenter once):
// starts the processes cni-chain.ts asks for and times each from spawn to
// exit. Runtimes start plugins from Go (containerd, CRI-O, podman), whose
// fork is a vfork-style clone: ~0.5 ms for /bin/true here. Node's spawn
// from a benchmark process of ~100 MB costs ~2.5 ms of the parent's CPU for
// the same, and would put that in every subject's column. Bun.spawn is
// posix_spawn (vfork), like Go's.
//
// Protocol: one JSON request per stdin line {id, bin, args, env, input};
// one JSON reply per stdout line {id, ms, code, stdout, stderr}. Requests
// run concurrently.
declare const Bun: {
  spawn(cmd: string[], opts: { env: Record<string, string>; stdin: Uint8Array; stdout: 'pipe'; stderr: 'pipe' }): {
    stdout: ReadableStream<Uint8Array>;
    stderr: ReadableStream<Uint8Array>;
    exited: Promise<number>;
  };
  stdin: { stream(): ReadableStream<Uint8Array> };
  write(dest: unknown, data: string): Promise<number>;
  stdout: unknown;
};

export {};

interface LaunchRequest {
  id: number;
  bin: string;
  args: string[];
  env: Record<string, string>;
  input: string;
}

const base = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
let out = Promise.resolve(0);

async function run(r: LaunchRequest): Promise<void> {
  let reply: Record<string, unknown>;
  try {
    const t0 = performance.now();
    const p = Bun.spawn([r.bin, ...r.args], { env: { ...base, ...r.env }, stdin: new TextEncoder().encode(r.input), stdout: 'pipe', stderr: 'pipe' });
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    reply = { id: r.id, ms: performance.now() - t0, code, stdout, stderr };
  } catch (err) {
    reply = { id: r.id, ms: 0, code: -1, stdout: '', stderr: String(err) };
  }
  const line = `${JSON.stringify(reply)}\n`;
  out = out.then(() => Bun.write(Bun.stdout, line));
}

let pending = '';
const decoder = new TextDecoder();
for await (const chunk of Bun.stdin.stream()) {
  pending += decoder.decode(chunk, { stream: true });
  for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (line.trim() !== '') void run(JSON.parse(line) as LaunchRequest);
  }
}
