// When the compiled plugins' client (Bun sockets) may stop reading a reply:
// once its Content-Length is in, not before, and never for a reply whose end
// only the closing connection tells.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseResponse, replyComplete } from '../../src/cli/client.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

test('a reply is complete once its headers and Content-Length bytes are in, in any number of chunks', () => {
  const whole = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\nConnection: close\r\n\r\n{"result":1}';
  assert.equal(replyComplete([b(whole.slice(0, 30))]), false, 'headers not all in');
  assert.equal(replyComplete([b(whole.slice(0, whole.length - 3))]), false, 'body cut short');
  assert.equal(replyComplete([b(whole.slice(0, 40)), b(whole.slice(40))]), true);
  assert.equal(parseResponse(Buffer.concat([b(whole.slice(0, 40)), b(whole.slice(40))])).body.toString(), '{"result":1}');
});

test('204 and 304 carry no body; chunked and length-less replies end with the connection', () => {
  assert.equal(replyComplete([b('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n')]), true);
  assert.equal(replyComplete([b('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n')]), false);
  assert.equal(replyComplete([b('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}')]), false);
  assert.equal(replyComplete([b('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')]), true);
});
