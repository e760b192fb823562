// What the figures were measured on: they only mean something beside it.
import { cpus, totalmem, loadavg, release } from 'node:os';
import { readFileSync } from 'node:fs';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  distro: string;
  node: string;
}

export function machine(): Machine {
  let distro = 'unknown';
  try {
    distro = /PRETTY_NAME="([^"]*)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? distro;
  } catch {
    // not every system has it
  }
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    distro,
    node: process.version,
  };
}

export function loadAverage(): string {
  return loadavg().map((l) => l.toFixed(2)).join(', ');
}

export function describeMachine(m: Machine): string {
  return `${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Linux ${m.kernel}, ${m.distro}, Node ${m.node}`;
}
