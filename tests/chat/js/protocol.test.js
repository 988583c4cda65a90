'use strict';
// The chat gateway's client protocol, end to end against a running `magnetar standalone`
// (gateway, Job and push API on): GOIM and Bilibili clients over WebSocket and raw TCP, pushes
// through the HTTP API, batching, positions, room changes, accepted ops, resume from the log,
// refusals of bad input, the slow-consumer policy and the online API.
// Started by tests/integration/test_chat_ws.sh, which passes the ports:
//   MG_HTTP_PORT (push API, metrics), MG_CHAT_TCP_PORT, MG_CHAT_WS_PORT.
// Each test uses its own rooms, keys and mids, and closes its connections before it ends.

const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const crypto = require('node:crypto');
const g = require('./goim');

const { OP, Client } = g;
const HTTP = Number(process.env.MG_HTTP_PORT);
const TCP = Number(process.env.MG_CHAT_TCP_PORT);
const WS = Number(process.env.MG_CHAT_WS_PORT);
if (!HTTP || !TCP || !WS) throw new Error('MG_HTTP_PORT, MG_CHAT_TCP_PORT and MG_CHAT_WS_PORT must be set');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const port = (transport) => (transport === 'ws' ? WS : TCP);

// Opens every client given, closes them all when fn ends (whatever happens).
async function withClients(fn) {
  const opened = [];
  const open = async (transport, name) => {
    const c = await Client.connect({ transport, port: port(transport), name });
    opened.push(c);
    return c;
  };
  try {
    return await fn(open);
  } finally {
    for (const c of opened) await c.close().catch(() => {});
  }
}

function goimAuth(room, extra = {}) {
  return { mid: 0, key: '', room_id: room, platform: 'web', accepts: [5], ...extra };
}

async function pushRoom(room, body, extra = {}) {
  return g.push(HTTP, 'room', { type: 'live', room: String(room), ...extra }, body);
}

// Posts the bodies one after another (each answered before the next); returns their ids.
async function pushRoomAll(room, bodies, extra = {}) {
  const ids = [];
  for (const b of bodies) ids.push((await pushRoom(room, b, extra)).data.id);
  return ids;
}

async function metric(name) {
  const m = await g.metrics(HTTP);
  const v = m.get(name);
  if (v === undefined) throw new Error(`metric ${name} not exported`);
  return v;
}
const closedMetric = (reason) => metric(`magnetar_chat_gateway_closed_total{reason="${reason}"}`);

function assertIncreasing(positions, what) {
  for (let i = 1; i < positions.length; i++)
    assert.ok(g.comparePositions(positions[i - 1], positions[i]) < 0,
      `${what}: position ${positions[i]} is not after ${positions[i - 1]}`);
}

// Room numbers differ between runs (a standalone's log keeps every room's history): R(7000)
// is 7000 followed by a number of this run.
const RUN = String(process.pid % 100000).padStart(5, '0');
const R = (n) => Number(`${n}${RUN}`);

const { storedOrder } = g;

const range = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}-${i + 1}`);

// ---------------------------------------------------------------------------------------------

test('1. GOIM over WebSocket and TCP: auth reply, heartbeat counts the room', async () => {
  await withClients(async (open) => {
    const room = `live://${R(1000)}`;
    const w = await open('ws', 'goim-ws');
    const reply = await w.auth({ mid: 123, key: 'abc', room_id: room, platform: 'web', accepts: [5, 1000] });
    assert.deepStrictEqual(reply, { code: 0 });
    assert.strictEqual(w.authReply.ver, 1, 'auth reply ver');
    assert.strictEqual(await w.heartbeat(), 1, 'one connection in the room');

    const t = await open('tcp', 'goim-tcp');
    assert.deepStrictEqual(await t.auth(goimAuth(room, { mid: 124, key: 'abd' })), { code: 0 });
    assert.strictEqual(t.authReply.ver, 1);
    assert.strictEqual(await t.heartbeat(), 2, 'TCP client sees both connections');
    assert.strictEqual(await w.heartbeat(), 2, 'WebSocket client sees both connections');

    // Several packets in one WebSocket message: two heartbeats, two replies.
    const from = w.packets.length;
    w.sendRaw(Buffer.concat([g.encode(OP.HEARTBEAT, '', { seq: 7 }), g.encode(OP.HEARTBEAT, '', { seq: 8 })]));
    await w.until(() => w.packets.slice(from).filter((p) => p.op === OP.HEARTBEAT_REPLY).length === 2,
      3000, 'two heartbeat replies');
    assert.deepStrictEqual(w.packets.slice(from).map((p) => p.seq), [7, 8], 'replies keep the seq');

    // A TCP packet split across writes is reassembled.
    const hb = g.encode(OP.HEARTBEAT, '', { seq: 9 });
    const tf = t.packets.length;
    t.sendRaw(hb.subarray(0, 5));
    await sleep(50);
    t.sendRaw(hb.subarray(5));
    const r = await t.until(() => t.packets.slice(tf).find((p) => p.op === OP.HEARTBEAT_REPLY), 3000, 'reply');
    assert.strictEqual(r.seq, 9);

    const x = await open('tcp', 'goim-tcp-2');
    await x.auth(goimAuth(room, { mid: 125 }));
    assert.strictEqual(await w.heartbeat(), 3, 'a third connection counted');
    await x.close();
    await g.waitFor(async () => (await w.heartbeat()) === 2, 5000, 'the count falls when one leaves');

    // A room push reaches both transports as op 9 ver 1 holding op 5 ver 1.
    await pushRoom(R(1000), 'hello-1000');
    for (const c of [w, t]) {
      await c.waitMessages(1);
      const m = c.messages[0];
      assert.deepStrictEqual([m.text, m.op, m.ver, m.outer.op, m.outer.ver], ['hello-1000', 5, 1, 9, 1]);
      assert.deepStrictEqual(c.errors, []);
    }
  });
});

test('2. Bilibili dialect over WebSocket, protover 0, 1, 2 (zlib), 3 (brotli)', async () => {
  await withClients(async (open) => {
    const clients = {};
    for (const pv of [0, 1, 2, 3]) {
      const c = await open('ws', `bili-pv${pv}`);
      const reply = await c.auth({ uid: 0, roomid: R(3000), protover: pv, platform: 'web', type: 2, key: `bili-${pv}` });
      assert.deepStrictEqual(reply, { code: 0 });
      assert.deepStrictEqual([c.authReply.op, c.authReply.ver], [OP.AUTH_REPLY, 1]);
      clients[pv] = c;
    }
    // Bilibili's web client sends "[object Object]" as its heartbeat body.
    assert.strictEqual(await clients[3].heartbeat(5000, '[object Object]'), 4);

    const bodies = Array.from({ length: 8 }, (_, i) => JSON.stringify({ cmd: 'DANMU_MSG', info: [i, `msg ${i}`] }));
    await pushRoomAll(R(3000), bodies);
    for (const pv of [0, 1, 2, 3]) {
      const c = clients[pv];
      await c.waitMessages(bodies.length);
      await sleep(100);
      assert.deepStrictEqual(c.errors, [], `protover ${pv}: decodable`);
      assert.deepStrictEqual(c.texts(), bodies, `protover ${pv}: all messages in order, once`);
      for (const m of c.messages) {
        assert.deepStrictEqual([m.op, m.ver], [5, 0], `protover ${pv}: inner packets are op 5 ver 0`);
        if (pv < 2) assert.deepStrictEqual(m.outer, { op: 5, ver: 0 }, `protover ${pv}: packets back to back`);
        else assert.deepStrictEqual(m.outer, { op: 5, ver: pv }, `protover ${pv}: op 5 ver ${pv} batches`);
      }
      assert.ok(c.packets.every((p) => p.op !== OP.RAW), `protover ${pv}: no op 9 for Bilibili`);
    }
  });
});

test('3. Batching: 10 pushes back to back reach a GOIM client in fewer op 9 packets', async () => {
  await withClients(async (open) => {
    const c = await open('ws', 'batch');
    await c.auth(goimAuth(`live://${R(4000)}`));
    // All 10 posted at once; the order they were stored in is the order of their ids.
    const sent = range('batch', 10);
    const ids = await Promise.all(sent.map((b) => pushRoom(R(4000), b).then((r) => r.data.id)));
    const bodies = storedOrder(sent, ids);
    await c.waitMessages(10);
    await sleep(200);
    assert.deepStrictEqual(c.texts(), bodies, 'all bodies, in stored order, once');
    const batches = c.packets.filter((p) => p.op === OP.RAW);
    assert.ok(batches.every((p) => p.ver === 1), 'op 9 packets have ver 1');
    assert.strictEqual(c.packets.filter((p) => p.op !== OP.RAW && p.op !== OP.AUTH_REPLY).length, 0);
    assert.ok(batches.length < 10, `10 messages came in ${batches.length} op 9 packets (merged)`);
  });
});

test('4. Positions: each message preceded by its op 20 position, strictly increasing', async () => {
  await withClients(async (open) => {
    const c = await open('tcp', 'positions');
    const plain = await open('ws', 'no-positions');
    assert.deepStrictEqual(await c.auth(goimAuth(`live://${R(5000)}`, { positions: true })), { code: 0 });
    await plain.auth(goimAuth(`live://${R(5000)}`));
    const bodies = range('pos', 12);
    const ids = await pushRoomAll(R(5000), bodies);
    await c.waitMessages(12);
    await plain.waitMessages(12);
    assert.deepStrictEqual(c.errors, []);
    assert.deepStrictEqual(c.texts(), bodies);
    // Inner packets alternate: op 20 (ver 0), then the message.
    const inner = c.packets.filter((p) => p.op === OP.RAW).flatMap((p) => g.expand(p));
    inner.forEach((p, i) => assert.strictEqual(p.op, i % 2 === 0 ? OP.POSITION : 5, `inner packet ${i}`));
    assert.ok(inner.filter((p) => p.op === OP.POSITION).every((p) => p.ver === 0), 'position packets have ver 0');
    const positions = c.messages.map((m) => m.position);
    assert.ok(positions.every((p) => /^\d+:\d+(:\d+)?$/.test(p)), `positions: ${positions}`);
    assertIncreasing(positions, 'positions');
    assert.deepStrictEqual(positions, ids.map(g.positionText), 'positions are the ids the push API gave');
    // A client that did not ask gets no position packets.
    assert.ok(plain.messages.every((m) => m.position === null));
    assert.deepStrictEqual(plain.texts(), bodies);
  });
});

test('5. Room change (op 12/13); key, mid and all pushes follow accepted ops (op 14/16)', async () => {
  await withClients(async (open) => {
    const stay = await open('ws', 'stays-6000');
    await stay.auth(goimAuth(`live://${R(6000)}`));
    const mover = await open('tcp', 'mover');
    await mover.auth(goimAuth(`live://${R(6000)}`));
    assert.strictEqual(await stay.heartbeat(), 2);

    const r13 = await mover.request(OP.CHANGE_ROOM, `live://${R(6001)}`, OP.CHANGE_ROOM_REPLY);
    assert.strictEqual(r13.body.toString(), `live://${R(6001)}`, 'op 13 names the new room');
    assert.strictEqual(await mover.heartbeat(), 1, 'the new room counts the mover');
    assert.strictEqual(await stay.heartbeat(), 1, 'the old room no longer does');
    await pushRoom(R(6000), 'to-6000');
    await pushRoom(R(6001), 'to-6001');
    await stay.waitMessages(1);
    await mover.waitMessages(1);
    await sleep(200);
    assert.deepStrictEqual(stay.texts(), ['to-6000']);
    assert.deepStrictEqual(mover.texts(), ['to-6001'], 'room pushes follow the change');

    // Accepted ops: a takes 1000, b takes 1001 only.
    const tag = crypto.randomBytes(4).toString('hex');
    const a = await open('ws', 'accepts-1000');
    const b = await open('tcp', 'accepts-1001');
    await a.auth({ mid: 600001, key: `a-${tag}`, room_id: `live://${R(6002)}`, accepts: [1000] });
    await b.auth({ mid: 600002, key: `b-${tag}`, room_id: `live://${R(6003)}`, accepts: [1001] });
    const keys = `a-${tag},b-${tag}`;

    await g.push(HTTP, 'keys', { keys, operation: '1000' }, 'key-1');
    await a.waitMessages(1);
    await g.push(HTTP, 'mids', { mids: '600001,600002', operation: '1000' }, 'mid-1');
    await a.waitMessages(2);
    await g.push(HTTP, 'all', { operation: '1000' }, 'all-1');
    await a.waitMessages(3);
    // b accepts 1001: a key push of 1001 reaches it, and it is the first thing it gets.
    await g.push(HTTP, 'keys', { keys: `b-${tag}`, operation: '1001' }, 'key-b-1001');
    await b.waitMessages(1);
    await sleep(300);
    assert.deepStrictEqual(a.texts(), ['key-1', 'mid-1', 'all-1']);
    assert.deepStrictEqual(a.messages.map((m) => [m.op, m.ver]), [[1000, 1], [1000, 1], [1000, 1]],
      'non-room pushes are packets of the push operation, ver 1');
    assert.ok(a.packets.every((p) => p.op !== OP.RAW), 'non-room pushes are not op 9 batches');
    assert.deepStrictEqual(b.texts(), ['key-b-1001'], 'op 1000 pushes skipped b, which does not accept it');

    // op 14 adds 1000 to b; then it gets key, mid and all pushes of 1000.
    const r15 = await b.request(OP.SUB, '1000', OP.SUB_REPLY);
    assert.strictEqual(r15.body.toString(), '1000');
    await g.push(HTTP, 'keys', { keys, operation: '1000' }, 'key-2');
    await g.push(HTTP, 'mids', { mids: '600001,600002', operation: '1000' }, 'mid-2');
    await g.push(HTTP, 'all', { operation: '1000' }, 'all-2');
    await a.waitMessages(6);
    await b.waitMessages(4);
    assert.deepStrictEqual(b.texts().slice(1).sort(), ['all-2', 'key-2', 'mid-2']);

    // op 16 removes it again.
    const r17 = await b.request(OP.UNSUB, '1000', OP.UNSUB_REPLY);
    assert.strictEqual(r17.body.toString(), '1000');
    await g.push(HTTP, 'keys', { keys, operation: '1000' }, 'key-3');
    await a.waitMessages(7);
    await g.push(HTTP, 'keys', { keys: `b-${tag}`, operation: '1001' }, 'key-b-1001-2');
    await b.waitMessages(5);
    await sleep(300);
    assert.strictEqual(b.messages.length, 5);
    assert.strictEqual(b.texts()[4], 'key-b-1001-2', 'b did not get the op 1000 push after op 16');
    for (const c of [stay, mover, a, b]) assert.deepStrictEqual(c.errors, []);

    // A second connection with the same key replaces the first, which is closed (replaced);
    // key pushes then reach the new one.
    const replacedBefore = await closedMetric('replaced');
    const a2 = await open('tcp', 'same-key');
    await a2.auth({ mid: 600001, key: `a-${tag}`, room_id: `live://${R(6002)}`, accepts: [1000] });
    await a.waitClosed(5000);
    assert.strictEqual(await closedMetric('replaced'), replacedBefore + 1);
    await g.push(HTTP, 'keys', { keys: `a-${tag}`, operation: '1000' }, 'key-4');
    await a2.waitMessages(1);
    assert.deepStrictEqual(a2.texts(), ['key-4']);
  });
});

test('6. Resume: last_id replays exactly the missed messages, then live ones, no duplicate', async () => {
  await withClients(async (open) => {
    const room = `live://${R(7000)}`;
    const witness = await open('tcp', 'resume-witness');
    await witness.auth(goimAuth(room, { positions: true }));
    let c = await open('ws', 'resumer');
    await c.auth(goimAuth(room, { positions: true }));
    await pushRoomAll(R(7000), range('before', 3));
    await c.waitMessages(3);
    const last = c.messages[2].position;
    assert.ok(last, 'the last message had a position');
    await c.close();
    await g.waitFor(async () => (await witness.heartbeat()) === 1, 5000, 'the resumer left the room');

    const missed = range('missed', 5);
    await pushRoomAll(R(7000), missed);
    await witness.waitMessages(8);

    // Reconnect with last_id while more messages are being pushed: the seam. Pushes go on one
    // after another from before the auth to after the replay, so some are stored just before
    // the replay's end, when the Job (merging 50 ms) has not pushed them live yet.
    const live = range('live', 20);
    c = await open('ws', 'resumer-again');
    let posted = 0;
    const pushing = (async () => {
      for (const b of live) { await pushRoom(R(7000), b); posted++; }
    })();
    await g.waitFor(() => posted >= 3, 5000, 'the first live pushes');
    c.send(OP.AUTH, goimAuth(room, { last_id: last }));
    const reply = await c.until(() => c.packets.find((p) => p.op === OP.AUTH_REPLY), 10000, 'auth reply');
    assert.deepStrictEqual(JSON.parse(reply.body.toString()), { code: 0, recovered: true });
    assert.strictEqual(c.packets[0].op, OP.AUTH_REPLY, 'the auth reply comes before any message');
    await pushing;
    await c.waitMessages(25, 10000);
    await pushRoom(R(7000), 'after');
    await c.until(() => c.texts().includes('after'), 5000, 'the push after');
    await sleep(300);
    assert.deepStrictEqual(c.texts(), [...missed, ...live, 'after'],
      'exactly the missed ones, then live, once each; got (text@position): ' +
      c.messages.map((m) => `${m.text}@${m.position}`).join(' '));
    assertIncreasing(c.messages.map((m) => m.position), 'resumed positions');
    await witness.waitMessages(29);
    assert.deepStrictEqual(c.messages.map((m) => m.position), witness.messages.slice(3).map((m) => m.position),
      'the same positions the witness saw live');

    // A Bilibili client (brotli) resumes too: the replayed messages come compressed, with
    // their positions.
    const bili = await open('ws', 'resume-bili');
    const fromMissed5 = c.messages[missed.length - 1].position;
    assert.deepStrictEqual(await bili.auth({ uid: 0, roomid: R(7000), protover: 3, platform: 'web', type: 2,
      key: `bili-resume-${RUN}`, last_id: fromMissed5 }, 10000), { code: 0, recovered: true });
    await bili.waitMessages(live.length + 1, 10000);
    await sleep(200);
    assert.deepStrictEqual(bili.errors, []);
    assert.deepStrictEqual(bili.texts(), [...live, 'after']);
    assert.ok(bili.messages.every((m) => m.outer.op === 5 && m.outer.ver === 3), 'brotli batches');
    assert.deepStrictEqual(bili.messages.map((m) => m.position), c.messages.slice(missed.length).map((m) => m.position));

    // last_id past the end of the log: not recovered, and the connection goes live.
    const [ledger] = last.split(':').map(Number);
    const far = await open('tcp', 'resume-far');
    assert.deepStrictEqual(await far.auth(goimAuth(room, { last_id: `${ledger}:999999999` }), 10000),
      { code: 0, recovered: false });
    const far2 = await open('tcp', 'resume-far-ledger');
    assert.deepStrictEqual(await far2.auth(goimAuth(room, { last_id: `${ledger + 100000}:0:3` }), 10000),
      { code: 0, recovered: false });
    await pushRoom(R(7000), 'after-far');
    await far.waitMessages(1);
    await far2.waitMessages(1);
    assert.deepStrictEqual(far.texts(), ['after-far']);
    assert.deepStrictEqual(far2.texts(), ['after-far']);

    // A ledger the topic does not have (before its first): not recovered; what the log has is
    // replayed.
    if (ledger > 0) {
      const old = await open('ws', 'resume-old-ledger');
      assert.deepStrictEqual(await old.auth(goimAuth(room, { last_id: `${ledger - 1}:0` }), 10000),
        { code: 0, recovered: false });
      const all = [...range('before', 3), ...missed, ...live, 'after', 'after-far'];
      await old.waitMessages(all.length, 10000);
      await sleep(200);
      assert.deepStrictEqual(old.texts(), all, 'the whole room history is replayed, in order; got: ' +
        old.messages.map((m) => `${m.text}@${m.position}`).join(' '));
    }
    for (const x of [witness, c, far, far2]) assert.deepStrictEqual(x.errors, []);
  });
});

// Raw HTTP upgrade to the WebSocket port; resolves with the status line, headers and socket.
function rawUpgrade(path, version = '13') {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: WS });
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error('no handshake answer in 5 s')); }, 5000);
    s.on('error', (e) => { clearTimeout(t); reject(e); });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(t);
      s.removeAllListeners('data');
      const head = buf.subarray(0, end).toString().split('\r\n');
      const headers = {};
      for (const l of head.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(head[0].split(' ')[1]), statusLine: head[0], headers, socket: s, rest: buf.subarray(end + 4) });
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${WS}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: ${version}\r\n\r\n`);
  });
}

// Resolves when the peer closes the socket (bounded).
function socketClosed(s, ms = 5000) {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const t = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(t); resolve(); });
  });
}

test('7. Bad input closes only that connection, counted by reason', async () => {
  await withClients(async (open) => {
    const room = `live://${R(8000)}`;
    const witness = await open('ws', 'bad-input-witness');
    await witness.auth(goimAuth(room));
    let n = 0;
    // Starts a case: the metric before, the bad connection's action, then: it closes, the
    // metric grew by one, and the witness still gets the next push.
    const expectClose = async (what, reason, act) => {
      const before = await closedMetric(reason);
      const c = await act();
      if (c) await c.waitClosed(7000);
      await g.waitFor(async () => (await closedMetric(reason)) === before + 1, 3000,
        `${what}: closed_total{reason="${reason}"} grew by 1`);
      n++;
      await pushRoom(R(8000), `after-${n}`);
      await witness.waitMessages(n);
      assert.strictEqual(witness.messages[n - 1].text, `after-${n}`, `${what}: the witness still gets pushes`);
      assert.ok(!witness.isClosed);
      return c;
    };

    // No auth within 5 s: started first, checked last.
    const timeoutBefore = await closedMetric('auth_timeout');
    const silent = await open('tcp', 'silent');
    const silentWs = await open('ws', 'silent-ws');
    const silentOpened = Date.now();

    await expectClose('headerLen 15', 'bad_packet', async () => {
      const c = await open('tcp', 'headerlen-15');
      await c.auth(goimAuth(room));
      c.send(OP.HEARTBEAT, '', { headerLen: 15 });
      return c;
    });
    await expectClose('packLen 16+5000', 'oversized', async () => {
      const c = await open('ws', 'oversized');
      await c.auth(goimAuth(room));
      c.sendRaw(g.encode(OP.HEARTBEAT, Buffer.alloc(5000)));
      return c;
    });
    await expectClose('oversized packLen announced over TCP', 'oversized', async () => {
      const c = await open('tcp', 'oversized-tcp');
      await c.auth(goimAuth(room));
      c.sendRaw(g.encode(OP.HEARTBEAT, '', { packLen: 16 + 5000 }));
      return c;
    });
    await expectClose('garbage (packLen under 16)', 'bad_packet', async () => {
      const c = await open('tcp', 'garbage');
      c.sendRaw(Buffer.concat([Buffer.from([0, 0, 0, 3]), crypto.randomBytes(60)]));
      return c;
    });
    await expectClose('garbage (an HTTP request on the TCP port: packLen "GET ")', 'oversized', async () => {
      const c = await open('tcp', 'garbage-http');
      c.sendRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      return c;
    });
    await expectClose('first packet not auth', 'not_auth_first', async () => {
      const c = await open('tcp', 'not-auth-first');
      c.send(OP.HEARTBEAT, '');
      return c;
    });
    await expectClose('unknown op 99', 'unknown_op', async () => {
      const c = await open('ws', 'op-99');
      await c.auth(goimAuth(room));
      c.send(99, 'x');
      return c;
    });
    const refused = await expectClose('refused auth body', 'auth_refused', async () => {
      const c = await open('tcp', 'refused');
      c.send(OP.AUTH, { mid: 1, key: 'no-room' });
      return c;
    });
    const r8 = refused.packets.find((p) => p.op === OP.AUTH_REPLY);
    assert.ok(r8, 'the refusal is answered with op 8 before the close');
    const refusal = JSON.parse(r8.body.toString());
    assert.strictEqual(refusal.code, -400);
    assert.strictEqual(typeof refusal.message, 'string');
    assert.ok(refusal.message.length > 0);
    await expectClose('refused auth body (not JSON, WebSocket)', 'auth_refused', async () => {
      const c = await open('ws', 'refused-ws');
      c.send(OP.AUTH, '{"mid":');
      return c;
    });

    await expectClose('unmasked WebSocket frame', 'bad_websocket', async () => {
      const u = await rawUpgrade('/sub');
      assert.strictEqual(u.status, 101);
      const pkt = g.encode(OP.AUTH, goimAuth(room));
      u.socket.write(Buffer.concat([Buffer.from([0x82, pkt.length]), pkt])); // FIN|binary, no mask
      await socketClosed(u.socket);
      return null;
    });
    await expectClose('path /other', 'bad_handshake', async () => {
      const u = await rawUpgrade('/other');
      assert.strictEqual(u.status, 404, u.statusLine);
      await socketClosed(u.socket);
      return null;
    });
    await expectClose('Sec-WebSocket-Version 12', 'bad_handshake', async () => {
      const u = await rawUpgrade('/sub', '12');
      assert.strictEqual(u.status, 426, u.statusLine);
      assert.strictEqual(u.headers['sec-websocket-version'], '13', 'a 426 names the version served');
      await socketClosed(u.socket);
      return null;
    });

    await silent.waitClosed(9000);
    await silentWs.waitClosed(2000);
    const waited = Date.now() - silentOpened;
    assert.ok(waited >= 4500 && waited < 8000, `silent connections were closed after ${waited} ms (5 s bound)`);
    assert.strictEqual(await closedMetric('auth_timeout'), timeoutBefore + 2, 'auth_timeout: one TCP, one WebSocket');
    assert.deepStrictEqual(witness.errors, []);
    assert.strictEqual(await witness.heartbeat(), 1, 'the witness is alone in its room again');
  });
});

test('8. Slow consumer: paused WebSocket clients lose frames (soft limit), replies that cannot be dropped close (hard limit)', async () => {
  await withClients(async (open) => {
    const room = `live://${R(8500)}`;
    const normal = await open('tcp', 'normal');
    await normal.auth(goimAuth(room));
    // slow: paused, only reads later; slower: paused, and keeps sending heartbeats.
    const slow = await open('ws', 'paused');
    await slow.auth(goimAuth(room));
    const slower = await open('ws', 'paused-heartbeating');
    await slower.auth(goimAuth(room));
    const droppedBefore = await metric('magnetar_chat_gateway_dropped_total');
    const slowBefore = await closedMetric('slow_consumer');
    slow.ws._socket.pause();
    slower.ws._socket.pause();

    // Rounds of 500 pushes of 3.9 KB until the gateway drops frames: the kernel's socket
    // buffers on loopback take several MB before the gateway's queue (256 KiB soft limit) fills.
    const ROUND = 500;
    const MAX = Number(process.env.MG_SLOW_PUSHES_MAX || 6000);
    const pad = 'x'.repeat(3900);
    const sent = [];
    const ids = [];
    while (sent.length < MAX) {
      const bodies = Array.from({ length: ROUND }, (_, i) => `slow-${String(sent.length + i + 1).padStart(5, '0')}-${pad}`);
      // Posted 48 at a time.
      const got = new Array(ROUND);
      let next = 0;
      await Promise.all(Array.from({ length: 48 }, async () => {
        while (next < ROUND) {
          const i = next++;
          got[i] = (await pushRoom(R(8500), bodies[i])).data.id;
        }
      }));
      sent.push(...bodies);
      ids.push(...got);
      await normal.waitMessages(sent.length, 30000);
      if ((await metric('magnetar_chat_gateway_dropped_total')) > droppedBefore) break;
    }
    const COUNT = sent.length;
    const stored = storedOrder(sent, ids);
    await normal.waitMessages(COUNT, 30000);
    assert.ok(normal.texts().every((t, i) => t === stored[i]), 'the normal client got every message, in stored order');
    assert.strictEqual(normal.messages.length, COUNT);

    const dropped = (await metric('magnetar_chat_gateway_dropped_total')) - droppedBefore;
    assert.ok(dropped > 0, `frames were dropped for the paused clients (${dropped})`);
    assert.strictEqual(await closedMetric('slow_consumer'), slowBefore,
      'dropping was enough: no paused client was closed (their queues held droppable chat frames)');

    // Hard limit: replies cannot be dropped. The paused client that keeps sending heartbeats
    // fills its queue with them and is closed (slow_consumer); the other is not.
    for (let i = 0; i < 40; i++) slower.send(OP.HEARTBEAT, '');
    await g.waitFor(async () => (await closedMetric('slow_consumer')) === slowBefore + 1, 5000,
      'closed_total{reason="slow_consumer"} grew by 1');
    slower.ws._socket.resume();
    await slower.waitClosed(10000);

    // Resumed, the other reads whole frames: an order-preserving subset of what was stored.
    slow.ws._socket.resume();
    await pushRoom(R(8500), 'slow-after');
    await slow.until(() => slow.texts().includes('slow-after'), 20000, 'the push after the pause');
    assert.deepStrictEqual(slow.errors, [], 'no torn frame');
    assert.ok(!slow.isClosed);
    const got = slow.texts().slice(0, -1);
    assert.ok(got.length < COUNT, `the paused client got ${got.length} of ${COUNT}`);
    let k = 0;
    for (const t of got) {
      while (k < stored.length && stored[k] !== t) k++;
      assert.ok(k < stored.length, 'what the paused client got is in stored order, no duplicate');
      k++;
    }
    assert.strictEqual(await closedMetric('slow_consumer'), slowBefore + 1);
    assert.ok(!normal.isClosed);
  });
});

test('9. Online API: room and total counts after the report interval', async () => {
  await withClients(async (open) => {
    const room = R(9);
    const cs = [];
    for (let i = 0; i < 3; i++) {
      const c = await open(i === 1 ? 'tcp' : 'ws', `online-${i}`);
      await c.auth(goimAuth(`live://${room}`));
      cs.push(c);
    }
    const other = await open('ws', 'online-other');
    await other.auth(goimAuth(`live://${room}1`));
    const conns = (await metric('magnetar_chat_gateway_connections{transport="tcp"}')) +
      (await metric('magnetar_chat_gateway_connections{transport="websocket"}'));
    assert.strictEqual(conns, 4, 'only this test\'s connections are open');
    // Reports are written every 10 s: within 11 s (plus a little) they show what is open now.
    const t0 = Date.now();
    const rooms = await g.waitFor(async () => {
      const r = await g.http(HTTP, 'GET', `/goim/online/room?type=live&rooms=${room},${room}1`);
      const tot = await g.http(HTTP, 'GET', '/goim/online/total');
      const ok = r.json && r.json.code === 0 && r.json.data[`live://${room}`] === 3 &&
        r.json.data[`live://${room}1`] === 1 && tot.json && tot.json.data.conn_count === 4;
      return ok && { r: r.json, tot: tot.json };
    }, 13000, 'online counts of rooms and total');
    assert.ok(Date.now() - t0 <= 13000);
    assert.strictEqual(rooms.tot.data.ip_count, 1, 'all from one address');
    assert.strictEqual(await cs[0].heartbeat(), 3, 'the heartbeat agrees');
  });
});
