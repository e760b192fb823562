import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KnitError } from '../../src/lib/errors.ts';
import { parsePublish } from '../../src/services/ports.ts';

test('parsePublish: host port to container port, tcp by default', () => {
  assert.deepEqual(parsePublish('8080:80'), [{ proto: 'tcp', hostIP: undefined, hostPort: 8080, containerPort: 80 }]);
  assert.deepEqual(parsePublish('53:53/udp'), [{ proto: 'udp', hostIP: undefined, hostPort: 53, containerPort: 53 }]);
  assert.deepEqual(parsePublish('1.2.3.4:80:8080/TCP'), [
    { proto: 'tcp', hostIP: '1.2.3.4', hostPort: 80, containerPort: 8080 },
  ]);
});

test('parsePublish: IPv6 host address in brackets, canonical', () => {
  assert.deepEqual(parsePublish('[::1]:8080:80'), [{ proto: 'tcp', hostIP: '::1', hostPort: 8080, containerPort: 80 }]);
  assert.equal(parsePublish('[FD00:0::5]:1:2/udp')[0]?.hostIP, 'fd00::5');
});

test('parsePublish: ranges map 1:1', () => {
  const specs = parsePublish('127.0.0.1:8000-8002:90-92/udp');
  assert.deepEqual(
    specs.map((s) => [s.hostPort, s.containerPort]),
    [
      [8000, 90],
      [8001, 91],
      [8002, 92],
    ],
  );
  assert.ok(specs.every((s) => s.proto === 'udp' && s.hostIP === '127.0.0.1'));
});

function rejects(spec: string, re: RegExp): void {
  assert.throws(
    () => parsePublish(spec),
    (err: unknown) =>
      err instanceof KnitError &&
      err.code === 'invalid' &&
      err.field === 'publish' &&
      err.message.includes(`'${spec}'`) &&
      err.message.includes('expected [hostip:]hostport[-range]:port') &&
      re.test(err.message),
  );
}

test('parsePublish: errors say what is wrong and show the form', () => {
  rejects('80:abc', /container port 'abc' is not a port/);
  rejects('abc:80', /host port 'abc'/);
  rejects('80', /both a host port and a container port/);
  rejects('80:', /both a host port and a container port/);
  rejects('0:80', /host port 0 is out of range/);
  rejects('80:65536', /container port 65536 is out of range/);
  rejects('80:80/sctp', /protocol 'sctp'/);
  rejects('8000-8001:80', /host range has 2 ports and container range 1/);
  rejects('8002-8000:80-82', /ends before it starts/);
  rejects('::1:8080:80', /IPv6 goes in brackets|in brackets/);
  rejects('[::1:8080:80', /closing bracket/);
  rejects('[1.2.3.4]:80:80', /not an IPv6 address/);
  rejects('300.1.1.1:80:80', /not an IPv4 address/);
  rejects('1.2.3.4:5:80:80', /too many colons/);
});
