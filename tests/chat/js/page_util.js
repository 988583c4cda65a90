'use strict';
// Small helpers for the chat tests in this folder: GOIM packets, a WebSocket room client that
// asks for positions, a paced pusher over the HTTP push API, and bounded waits. Loopback only.

const http = require('node:http');
const WebSocket = require('ws');

const HEADER_BYTES = 16;
const OP = { HEARTBEAT: 2, HEARTBEAT_REPLY: 3, MESSAGE: 5, AUTH: 7, AUTH_REPLY: 8, RAW: 9,
  POSITION: 20 };

let seq = 0;

// [packLen u32][headerLen u16 = 16][ver u16][op u32][seq u32][body], big-endian.
function encodePacket(op, body, ver = 1) {
  const b = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const p = Buffer.alloc(HEADER_BYTES + b.length);
  p.writeUInt32BE(p.length, 0);
  p.writeUInt16BE(HEADER_BYTES, 4);
  p.writeUInt16BE(ver, 6);
  p.writeUInt32BE(op, 8);
  p.writeUInt32BE(++seq >>> 0, 12);
  b.copy(p, HEADER_BYTES);
  return p;
}

// The whole packets of buf as [{op, ver, body}]; throws on a partial or malformed packet.
function decodePackets(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < HEADER_BYTES) throw new Error(`truncated header at ${off}`);
    const len = buf.readUInt32BE(off);
    const hlen = buf.readUInt16BE(off + 4);
    if (hlen !== HEADER_BYTES || len < HEADER_BYTES || len > buf.length - off) {
      throw new Error(`bad packet at ${off}: packLen ${len} headerLen ${hlen} of ${buf.length}`);
    }
    out.push({ op: buf.readUInt32BE(off + 8), ver: buf.readUInt16BE(off + 6),
      body: buf.subarray(off + HEADER_BYTES, off + len) });
    off += len;
  }
  return out;
}

// "L:E" or "L:E:B" as [L, E, B] (B = -1 when absent), or null.
function parsePos(text) {
  const m = /^(-?\d+):(-?\d+)(?::(-?\d+))?$/.exec(String(text));
  return m ? [BigInt(m[1]), BigInt(m[2]), m[3] === undefined ? -1n : BigInt(m[3])] : null;
}

// Whether two positions name the same message ("L:E" and "L:E:-1" are the same).
function samePos(a, b) {
  const x = parsePos(a), y = parsePos(b);
  return x !== null && y !== null && x.every((v, i) => v === y[i]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls cond() every stepMs until it is truthy or ms pass; returns its last value.
async function waitFor(cond, ms, stepMs = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v || Date.now() >= end) return v;
    await sleep(stepMs);
  }
}

// A GOIM WebSocket client in one room, with positions. messages: [{pos, body, at}] in arrival
// order; authReply: the op 8 body parsed; errors: what went wrong on the way.
class RoomClient {
  constructor(url, room, opts = {}) {
    this.url = url;
    this.room = room;
    this.key = opts.key || `k-${process.pid}-${Math.random().toString(16).slice(2)}`;
    this.lastId = opts.lastId || null;
    this.messages = [];
    this.errors = [];
    this.authReply = null;
    this.online = null;
    this.closed = false;
    this.pendingPos = null;
    this.ws = null;
    this.hbTimer = null;
  }

  // Connects and authenticates; resolves with the auth reply (bounded by ms).
  open(ms = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no auth reply within ${ms} ms`)), ms);
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.binaryType = 'nodebuffer';
      ws.on('open', () => {
        const auth = { mid: 1, key: this.key, room_id: this.room, platform: 'web', accepts: [5],
          positions: true };
        if (this.lastId) auth.last_id = this.lastId;
        ws.send(encodePacket(OP.AUTH, JSON.stringify(auth)));
      });
      ws.on('message', (data, isBinary) => {
        if (!isBinary) { this.errors.push('text frame'); return; }
        let packets;
        try { packets = decodePackets(data); } catch (e) { this.errors.push(e.message); return; }
        for (const p of packets) this.onPacket(p, false);
        if (this.authReply && !this.hbTimer) {
          clearTimeout(timer);
          this.hbTimer = setInterval(() => this.heartbeat(), 10000);
          resolve(this.authReply);
        }
      });
      ws.on('error', (e) => { this.errors.push(`socket: ${e.message}`); });
      ws.on('close', () => {
        this.closed = true;
        clearInterval(this.hbTimer);
        clearTimeout(timer);
        if (!this.authReply) reject(new Error('closed before the auth reply'));
      });
    });
  }

  onPacket(p, inner) {
    switch (p.op) {
      case OP.AUTH_REPLY:
        try { this.authReply = JSON.parse(p.body.toString()); } catch (e) {
          this.errors.push(`auth reply not JSON: ${p.body.toString()}`);
          this.authReply = {};
        }
        break;
      case OP.HEARTBEAT_REPLY:
        if (p.body.length === 4) this.online = p.body.readUInt32BE(0);
        break;
      case OP.RAW:
        if (inner) { this.errors.push('op 9 inside op 9'); break; }
        try {
          for (const q of decodePackets(p.body)) this.onPacket(q, true);
        } catch (e) { this.errors.push(`op 9 body: ${e.message}`); }
        break;
      case OP.POSITION:
        if (this.pendingPos !== null) this.errors.push(`two positions in a row (${this.pendingPos})`);
        this.pendingPos = p.body.toString();
        break;
      case OP.MESSAGE:
        if (this.pendingPos === null) this.errors.push('a message without its position');
        this.messages.push({ pos: this.pendingPos, body: p.body.toString(), at: Date.now() });
        if (this.pendingPos !== null) this.lastId = this.pendingPos;
        this.pendingPos = null;
        break;
      default:
        break;
    }
  }

  heartbeat() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(encodePacket(OP.HEARTBEAT));
  }

  // Closes the socket; resolves once it is closed (bounded).
  close(ms = 3000) {
    clearInterval(this.hbTimer);
    if (!this.ws || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.ws.terminate(); resolve(); }, ms);
      this.ws.once('close', () => { clearTimeout(t); resolve(); });
      this.ws.close();
    });
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// POST /goim/push/room?type=live&room=ROOM with body; resolves with the parsed answer.
function pushRoom(httpPort, room, body, ms = 10000) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: httpPort, method: 'POST', agent,
      path: `/goim/push/room?type=live&room=${encodeURIComponent(room)}`,
      headers: { 'Content-Type': 'application/json' }, timeout: ms }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        try { resolve(JSON.parse(text)); } catch (e) {
          reject(new Error(`push answer not JSON (HTTP ${res.statusCode}): ${text.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`push not answered within ${ms} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// Pushes count messages one after the other (each waits for the previous answer, so the storage
// order is the push order), paced at rate per second. bodyOf(i) makes message i's body;
// onPushed(i, answer) runs after each. Resolves with [{i, id}] (id: the stored position).
async function pushPaced(httpPort, room, count, rate, bodyOf, onPushed) {
  const start = Date.now();
  const ids = [];
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / rate;
    if (due > Date.now()) await sleep(due - Date.now());
    const answer = await pushRoom(httpPort, room, bodyOf(i));
    if (answer.code !== 0 || !answer.data || !answer.data.id) {
      throw new Error(`push ${i} refused: ${JSON.stringify(answer)}`);
    }
    ids.push({ i, id: answer.data.id });
    if (onPushed) await onPushed(i, answer);
  }
  return ids;
}

// Where the integer sequence xs departs from first, first+1, ...: null when it does not,
// else a description (for failure messages).
function sequenceProblem(xs, first, count) {
  for (let k = 0; k < xs.length; k++) {
    if (xs[k] !== first + k) {
      return `at index ${k}: got ${xs[k]}, wanted ${first + k} (around: ${JSON.stringify(xs.slice(Math.max(0, k - 3), k + 4))})`;
    }
  }
  if (count !== undefined && xs.length !== count) {
    return `${xs.length} received, wanted ${count} (last ${JSON.stringify(xs.slice(-3))})`;
  }
  return null;
}

function requiredEnv(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through its tests/integration script)`);
  return v;
}

module.exports = { OP, encodePacket, decodePackets, parsePos, samePos, sleep, waitFor, RoomClient,
  pushRoom, pushPaced, sequenceProblem, requiredEnv };
