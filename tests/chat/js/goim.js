'use strict';
// GOIM / Bilibili live-danmaku packets and a small client for the chat gateway's tests.
//
// Packet: [packLen u32][headerLen u16 = 16][ver u16][op u32][seq u32][body], big-endian
// (shared/REFERENCE.md §4, src/chat_gateway/packet.h).
//
//   encode(op, body, {ver, seq})   one packet as a Buffer (body: Buffer, string or object -> JSON)
//   decodeAll(buf)                 the whole packets of buf; throws if buf ends inside one
//   PacketReader                   a TCP stream's packets: push(chunk) returns the whole ones
//   expand(pkt)                    what one packet a client received holds, as inner packets:
//                                  op 9 -> its body's packets; ver 2 -> inflated; ver 3 ->
//                                  brotli-decompressed; anything else -> [pkt]
//   Client                         a connection over WebSocket (/sub) or raw TCP; see the class.
//   http(port, method, path, body) a loopback HTTP request -> {status, text, json}
//   push(port, kind, params, body) POST /goim/push/<kind>?params -> the answer's JSON
//   metrics(port)                  GET /metrics parsed -> Map "name{labels}" -> number
//   waitFor(fn, ms, what)          polls fn until truthy, bounded
//   positionText(id)               a push id "L:E:B" as the gateway writes positions ("L:E" for B -1)
//   comparePositions(a, b)         orders position texts (ledger, entry, batch)
//   storedOrder(bodies, ids)       bodies sorted by their push ids: the order clients get them in
//
// Client:
//   const c = await Client.connect({transport: 'ws' | 'tcp', port});
//   const reply = await c.auth({mid: 1, key: 'k', room_id: 'live://1', accepts: [5]});
//   c.messages        chat messages received, in order: {op, ver, body (Buffer), text,
//                     position (string or null), outer (the top-level packet's op/ver)}
//   c.packets         every top-level packet received, in order
//   c.frames          WebSocket messages (or TCP reads) received
//   await c.waitMessages(n, ms)   until at least n messages arrived
//   await c.request(op, body, replyOp, ms)  sends a packet and waits for the next replyOp packet
//   await c.heartbeat(ms)         op 2 -> the op 3 reply's count
//   c.closed          a promise settled when the connection closes
//   c.close()         closes (and waits for it)
//
// Replies (op 3, 8, 13, 15, 17) and position packets (op 20: the position of the next message)
// are not messages; every other packet a push produces is.

const net = require('node:net');
const http = require('node:http');
const zlib = require('node:zlib');
const WebSocket = require('ws');

const HEADER = 16;
const OP = {
  HANDSHAKE: 0, HANDSHAKE_REPLY: 1, HEARTBEAT: 2, HEARTBEAT_REPLY: 3, SEND_MSG: 4,
  SEND_MSG_REPLY: 5, DISCONNECT_REPLY: 6, AUTH: 7, AUTH_REPLY: 8, RAW: 9, CHANGE_ROOM: 12,
  CHANGE_ROOM_REPLY: 13, SUB: 14, SUB_REPLY: 15, UNSUB: 16, UNSUB_REPLY: 17, POSITION: 20,
};
const REPLY_OPS = new Set([OP.HEARTBEAT_REPLY, OP.AUTH_REPLY, OP.CHANGE_ROOM_REPLY,
  OP.SUB_REPLY, OP.UNSUB_REPLY]);

function toBuffer(body) {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  return Buffer.from(JSON.stringify(body));
}

function encode(op, body, { ver = 1, seq = 0, headerLen = HEADER, packLen } = {}) {
  const b = toBuffer(body);
  const h = Buffer.alloc(HEADER);
  h.writeUInt32BE(packLen === undefined ? HEADER + b.length : packLen, 0);
  h.writeUInt16BE(headerLen, 4);
  h.writeUInt16BE(ver, 6);
  h.writeUInt32BE(op, 8);
  h.writeUInt32BE(seq, 12);
  return Buffer.concat([h, b]);
}

function decodeOne(buf, off) {
  if (buf.length - off < HEADER) return null;
  const packLen = buf.readUInt32BE(off);
  const headerLen = buf.readUInt16BE(off + 4);
  if (packLen < HEADER || headerLen !== HEADER)
    throw new Error(`bad packet header at ${off}: packLen ${packLen}, headerLen ${headerLen}`);
  if (buf.length - off < packLen) return null;
  return {
    packLen, headerLen,
    ver: buf.readUInt16BE(off + 6),
    op: buf.readUInt32BE(off + 8),
    seq: buf.readUInt32BE(off + 12),
    body: buf.subarray(off + HEADER, off + packLen),
  };
}

function decodeAll(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const p = decodeOne(buf, off);
    if (p === null) throw new Error(`data ends inside a packet (${buf.length - off} bytes left)`);
    out.push(p);
    off += p.packLen;
  }
  return out;
}

class PacketReader {
  constructor() { this.rest = Buffer.alloc(0); }
  push(chunk) {
    const buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const out = [];
    let off = 0;
    for (;;) {
      const p = decodeOne(buf, off);
      if (p === null) break;
      out.push(p);
      off += p.packLen;
    }
    this.rest = Buffer.from(buf.subarray(off));
    return out;
  }
}

function expand(pkt) {
  if (pkt.op === OP.RAW) return decodeAll(pkt.body);
  if (pkt.ver === 2) return decodeAll(zlib.inflateSync(pkt.body));
  if (pkt.ver === 3) return decodeAll(zlib.brotliDecompressSync(pkt.body));
  return [pkt];
}

function timeout(ms, what) {
  let t;
  const p = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return { p, cancel: () => clearTimeout(t) };
}

async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

class Client {
  // opts: {transport: 'ws' | 'tcp', port, host = '127.0.0.1', path = '/sub', name}
  constructor(opts) {
    this.opts = { host: '127.0.0.1', path: '/sub', ...opts };
    this.name = opts.name || `${opts.transport}-client`;
    this.packets = [];
    this.messages = [];
    this.frames = 0;
    this.errors = [];
    this.isClosed = false;
    this.pendingPosition = null;
    this.listeners = new Set();
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve; });
  }

  static async connect(opts, ms = 5000) {
    const c = new Client(opts);
    await c.open(ms);
    return c;
  }

  open(ms) {
    const t = timeout(ms, `${this.name}: connect`);
    let opened;
    if (this.opts.transport === 'ws') {
      const ws = new WebSocket(`ws://${this.opts.host}:${this.opts.port}${this.opts.path}`);
      ws.binaryType = 'nodebuffer';
      this.ws = ws;
      opened = new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      ws.on('error', (e) => this.errors.push(e));
      ws.on('message', (data, isBinary) => {
        this.frames++;
        if (!isBinary) this.errors.push(new Error('a text WebSocket message'));
        let pkts;
        try { pkts = decodeAll(data); } catch (e) { this.errors.push(e); return; }
        for (const p of pkts) this.onPacket(p);
      });
      ws.on('close', (code, reason) => this.markClosed({ code, reason: reason.toString() }));
    } else {
      const s = net.connect({ host: this.opts.host, port: this.opts.port });
      this.sock = s;
      const reader = new PacketReader();
      opened = new Promise((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', reject);
      });
      s.on('error', (e) => this.errors.push(e));
      s.on('data', (chunk) => {
        this.frames++;
        let pkts;
        try { pkts = reader.push(chunk); } catch (e) { this.errors.push(e); s.destroy(); return; }
        for (const p of pkts) this.onPacket(p);
      });
      s.on('close', () => this.markClosed({}));
    }
    return Promise.race([opened, t.p]).finally(t.cancel);
  }

  markClosed(info) {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeInfo = info;
    this.resolveClosed(info);
    this.notify();
  }

  notify() {
    for (const f of [...this.listeners]) f();
  }

  onPacket(p) {
    this.packets.push(p);
    if (!REPLY_OPS.has(p.op)) {
      let inner;
      try { inner = expand(p); } catch (e) { this.errors.push(e); inner = []; }
      for (const q of inner) {
        if (q.op === OP.POSITION) {
          if (q.ver !== 0) this.errors.push(new Error(`position packet with ver ${q.ver}`));
          this.pendingPosition = q.body.toString();
          continue;
        }
        this.messages.push({
          op: q.op, ver: q.ver, body: q.body, text: q.body.toString(),
          position: this.pendingPosition, outer: { op: p.op, ver: p.ver },
        });
        this.pendingPosition = null;
      }
    }
    this.notify();
  }

  // Resolves with fn()'s first truthy value, re-checked on every packet and on close.
  until(fn, ms, what) {
    const v = fn();
    if (v) return Promise.resolve(v);
    return new Promise((resolve, reject) => {
      const check = () => {
        let r;
        try { r = fn(); } catch (e) { done(); reject(e); return; }
        if (r) { done(); resolve(r); }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: timed out after ${ms} ms: ${what}` +
          ` (${this.messages.length} messages, ${this.packets.length} packets` +
          `${this.isClosed ? ', closed' : ''})`));
      }, ms);
      const done = () => { clearTimeout(timer); this.listeners.delete(check); };
      this.listeners.add(check);
    });
  }

  sendRaw(bytes) {
    if (this.ws) this.ws.send(bytes, { binary: true });
    else this.sock.write(bytes);
  }

  send(op, body, opts) { this.sendRaw(encode(op, body, opts)); }

  // Sends a packet and waits for the first packet of op replyOp after it.
  async request(op, body, replyOp, ms = 5000, opts) {
    const from = this.packets.length;
    this.send(op, body, opts);
    return this.until(() => this.packets.slice(from).find((p) => p.op === replyOp), ms,
      `op ${replyOp} in answer to op ${op}`);
  }

  // Op 7; resolves with the op 8 reply's JSON.
  async auth(body, ms = 5000) {
    const p = await this.request(OP.AUTH, body, OP.AUTH_REPLY, ms);
    this.authReply = p;
    return JSON.parse(p.body.toString());
  }

  // Op 2; resolves with the op 3 reply's online count (its body must be exactly 4 bytes).
  async heartbeat(ms = 5000, body = '') {
    const p = await this.request(OP.HEARTBEAT, body, OP.HEARTBEAT_REPLY, ms);
    if (p.ver !== 1 || p.body.length !== 4)
      throw new Error(`heartbeat reply: ver ${p.ver}, ${p.body.length} body bytes`);
    return p.body.readUInt32BE(0);
  }

  waitMessages(n, ms = 5000) {
    return this.until(() => this.messages.length >= n, ms, `${n} messages`);
  }

  waitClosed(ms = 5000) {
    return this.until(() => this.isClosed && this.closeInfo, ms, 'the connection closes');
  }

  texts() { return this.messages.map((m) => m.text); }

  async close(ms = 5000) {
    if (!this.isClosed) {
      if (this.ws) this.ws.close(1000);
      else this.sock.end();
    }
    try {
      await this.waitClosed(ms);
    } catch (e) {
      if (this.ws) this.ws.terminate(); else this.sock.destroy();
      throw e;
    }
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function httpRequest(port, method, path, body, ms = 10000) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : toBuffer(body);
    const req = http.request({
      host: '127.0.0.1', port, method, path, agent,
      headers: data ? { 'content-length': data.length } : {},
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, text, json });
      });
      res.on('error', reject);
    });
    req.setTimeout(ms, () => req.destroy(new Error(`HTTP ${method} ${path}: no answer in ${ms} ms`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// POST /goim/push/<kind>?<params>; resolves with the answer's JSON, which must say code 0.
async function push(port, kind, params, body) {
  const q = new URLSearchParams(params).toString().replace(/%2C/g, ',');
  const r = await httpRequest(port, 'POST', `/goim/push/${kind}?${q}`, body);
  if (r.status !== 200 || !r.json || r.json.code !== 0)
    throw new Error(`push ${kind} ${q}: HTTP ${r.status} ${r.text}`);
  return r.json;
}

async function metrics(port) {
  const r = await httpRequest(port, 'GET', '/metrics');
  const m = new Map();
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

// "L:E:B" (the push API's id) -> the position text the gateway writes ("L:E" when B is -1).
function positionText(id) {
  const [l, e, b] = id.split(':');
  return b === undefined || b === '-1' ? `${l}:${e}` : `${l}:${e}:${b}`;
}

// The bodies sorted by the ids the push API gave them ("L:E:B"): the order the log stored
// them in, which is the order clients receive them in.
function storedOrder(bodies, ids) {
  return bodies.map((b, i) => [ids[i], b]).sort((x, y) => comparePositions(x[0], y[0])).map((x) => x[1]);
}

// Orders position texts: ledger, then entry, then batch (-1 when absent).
function comparePositions(a, b) {
  const pa = a.split(':').map(BigInt);
  const pb = b.split(':').map(BigInt);
  while (pa.length < 3) pa.push(-1n);
  while (pb.length < 3) pb.push(-1n);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
  return 0;
}

module.exports = {
  HEADER, OP, encode, decodeAll, PacketReader, expand, Client, http: httpRequest, push, metrics,
  waitFor, positionText, comparePositions, storedOrder,
};
