// The driver registry: the engine finds a network's driver here by name.
import type { NetworkDriver } from './driver.ts';
import { KnitError } from '../lib/errors.ts';
import { bridgeDriver } from './bridge.ts';
import { nullDriver } from './null.ts';
import { hostDriver } from './host.ts';

const drivers = new Map<string, NetworkDriver>([
  ['bridge', bridgeDriver],
  ['null', nullDriver],
  ['host', hostDriver],
]);

export function driverFor(name: string): NetworkDriver {
  const d = drivers.get(name);
  if (!d) {
    throw new KnitError('unsupported', `the ${name} driver is not available in this build of Knit; available: ${[...drivers.keys()].join(', ')}`);
  }
  return d;
}
