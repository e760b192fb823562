// Tiny TCP servers and clients inside namespaces, for checking what the
// datapath lets through. Only addresses inside test namespaces are used.
import { spawn, spawnSync } from 'node:child_process';
import { after } from 'node:test';

const NODE = process.execPath;
const servers: (() => void)[] = [];

after(() => {
  for (const stop of servers) stop();
});

/** Starts a TCP server in `nsPath` that answers every connection with `reply`. Resolves once listening. */
export async function serveTcp(nsPath: string, port: number, reply: string, host = '::'): Promise<() => void> {
  const code = `require('net').createServer(s=>{s.end(${JSON.stringify(reply)})}).listen(${port},${JSON.stringify(host)},()=>console.log('up'))`;
  const p = spawn('nsenter', ['--net=' + nsPath, NODE, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    p.stdout.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`tcp server in ${nsPath} exited (${c}): ${err}`)));
  });
  p.removeAllListeners('exit');
  const stop = () => {
    if (p.exitCode === null) p.kill('SIGKILL');
  };
  servers.push(stop);
  return stop;
}

/** Connects from `nsPath` to ip:port and returns what the server said ('' when it could not connect). */
export function tcpGet(nsPath: string, ip: string, port: number): string {
  const code = `const s=require('net').connect({host:${JSON.stringify(ip)},port:${port},timeout:3000});let d='';s.on('data',c=>d+=c);s.on('end',()=>{process.stdout.write(d);process.exit(0)});s.on('timeout',()=>process.exit(3));s.on('error',()=>process.exit(4))`;
  const r = spawnSync('nsenter', ['--net=' + nsPath, NODE, '-e', code], { encoding: 'utf8', timeout: 10000 });
  return r.status === 0 ? r.stdout : '';
}
