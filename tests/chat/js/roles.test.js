'use strict';
// The chat roles as processes of their own, as they run beyond one machine: a broker (a
// standalone with its chat roles off), `magnetar gateway` and `magnetar job`, all on one
// ZooKeeper. A client of the gateway process gets a room message pushed through the broker's
// push API, carried by the Job process: the Job found the gateway through the metadata store.
// Run by tests/integration/test_chat_roles.sh, which starts the processes and sets MG_HTTP_PORT
// (the broker's admin port) and MG_WS_PORT (the gateway process's WebSocket port).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { RoomClient, pushRoom, waitFor, requiredEnv } = require('./page_util');

const HTTP_PORT = Number(requiredEnv('MG_HTTP_PORT'));
const WS_PORT = Number(requiredEnv('MG_WS_PORT'));

test('a room message reaches a client of the gateway process through the Job process', async () => {
  const room = `live://${process.pid}`;
  const client = new RoomClient(`ws://127.0.0.1:${WS_PORT}/sub`, room);
  const reply = await client.open();
  assert.equal(reply.code, 0);
  // The Job learns the room from the gateway within a loop iteration; messages pushed before it
  // may go nowhere (no member then), so push until one arrives, a bounded number of times.
  let got = null;
  for (let i = 0; i < 50 && got === null; i++) {
    const answer = await pushRoom(HTTP_PORT, String(process.pid), JSON.stringify({ i }));
    assert.equal(answer.code, 0, JSON.stringify(answer));
    got = await waitFor(() => client.messages.find((m) => m.body === JSON.stringify({ i })), 300);
    if (got === undefined) got = null;
  }
  assert.ok(got, 'a pushed message arrived');
  assert.equal(got.pos !== null, true);
  assert.deepEqual(client.errors, []);
  await client.close();
});
