#!/usr/bin/env node
'use strict';
// Several pulsar-flex consumers on one subscription in one process, to watch how the broker
// spreads messages: Shared (both get some, none twice), Failover (one active, the other takes
// over when it closes), Key_Shared (each key on one consumer, in order). Consumers are named
// <prefix>0, <prefix>1, ... and subscribe one after the other in that order, so "first to
// subscribe" and "first by name" pick the same active consumer for Failover.
//
// Every delivery gets a global sequence number (seq) in arrival order; the summary gives each
// consumer's payloads and the seq at which --close-after closed it, so a test can check that
// nothing reached one consumer before another closed.

const { Consumer } = require('pulsar-flex');
const lib = require('./lib');

const TOOL = 'group.js';
const ACK_WAIT_MS = 12000;
const CLOSE_TIMEOUT_MS = 12000;

const USAGE = `Usage: node group.js --url pulsar://HOST:PORT --topic TOPIC --subscription SUB
                --type Exclusive|Shared|Failover|Key_Shared --count N [options]

Runs --consumers consumers on one subscription until N distinct payloads arrived in all.

Options:
  --url URL              broker to look the topic up on (pulsar://HOST:PORT)
  --topic TOPIC          topic name
  --subscription SUB     subscription name
  --type TYPE            Exclusive, Shared, Failover or Key_Shared
  --count N              distinct payloads to take in all (0..1000000; 0: subscribe all, close)
  --consumers K          number of consumers (1..8, default: 2)
  --name-prefix STR      consumer names are STR0, STR1, ... (default: c)
  --close-after I:M      consumer I closes once it has taken M distinct payloads
  --ack MODE             all (default) or none
  --receive-queue N      receiveQueueSize of each consumer (default: 500)
  --timeout-ms MS        bound on subscribing and receiving (default: 30000)
  --allow-short          reaching --timeout-ms while receiving is not an error
  --ready-file FILE      write "subscribed" to FILE once every consumer has subscribed
  --verbose              pulsar-flex's own log on stderr
  -h, --help             show this help

Output (stdout, JSON lines): per delivery {"consumer":i,"seq":s,"payload",...}; last a summary
{"distinct","received","duplicates","acked","acksPending","timedOut","perConsumer":[{"name",
"received","distinct","payloads":[...],"firstSeq","closedAfterSeq"}],"keyOwners":{key:[i,...]},
"keysOnOneConsumer","keyOrderOk","consumerOrderOk"}. The order checks use the number after the
last '-' of each payload, first deliveries only.
Exit: 0 done, 1 a subscribe or close refused, 2 timed out, 64 bad command line.
`;

async function main() {
  const o = lib.parseArgs(
    TOOL,
    process.argv.slice(2),
    {
      url: { type: 'string', required: true },
      topic: { type: 'string', required: true },
      subscription: { type: 'string', required: true },
      type: { type: 'string', required: true, choices: lib.SUB_TYPE_NAMES },
      count: { type: 'int', required: true, min: 0, max: 1000000 },
      consumers: { type: 'int', default: 2, min: 1, max: 8 },
      'name-prefix': { type: 'string', default: 'c' },
      'close-after': { type: 'string' },
      ack: { type: 'string', default: 'all', choices: ['all', 'none'] },
      'receive-queue': { type: 'int', default: 500, min: 1, max: 100000 },
      'timeout-ms': { type: 'int', default: 30000, min: 1, max: 3600000 },
      'allow-short': { type: 'flag' },
      'ready-file': { type: 'string' },
      verbose: { type: 'flag' },
    },
    USAGE
  );
  const server = lib.discoveryServer(o.url, o._fail);
  let closeAfter = null;
  if (o.closeAfter !== undefined) {
    const m = /^([0-9]+):([0-9]+)$/.exec(o.closeAfter);
    if (!m) o._fail(`--close-after looks like I:M, got '${o.closeAfter}'`);
    closeAfter = { index: Number(m[1]), after: Number(m[2]) };
    if (closeAfter.index >= o.consumers) o._fail(`--close-after names consumer ${closeAfter.index} of ${o.consumers}`);
    if (closeAfter.after < 1) o._fail('--close-after needs M >= 1');
  }
  lib.reportStrayErrors(TOOL);

  const started = Date.now();
  const left = () => o.timeoutMs - (Date.now() - started);
  const logging = lib.clientLogging(TOOL, o.verbose);
  let seq = 0;
  let timedOut = false;
  let stopping = false;
  const all = new Set();
  let reachedCount;
  const done = new Promise((resolve) => (reachedCount = resolve));
  const ackPromises = [];
  let acked = 0;
  const closing = [];

  const members = [];
  for (let i = 0; i < o.consumers; i++) {
    members.push({
      index: i,
      name: `${o.namePrefix}${i}`,
      received: 0,
      taken: new Set(),
      payloads: [],
      firsts: [], // [payload, key] of first deliveries, in order
      firstSeq: null,
      closedAfterSeq: null,
      closed: false,
      consumer: new Consumer({
        topic: o.topic,
        subscription: o.subscription,
        subType: lib.subTypeValue(o.type),
        discoveryServers: [server],
        consumerName: `${o.namePrefix}${i}`,
        receiveQueueSize: o.receiveQueue,
        logLevel: logging.logLevel,
        logCreator: logging.logCreator,
      }),
    });
  }

  const closeMember = (m) => {
    m.closed = true;
    m.closedAfterSeq = seq;
    const mine = ackPromises.filter((p) => p.member === m).map((p) => p.promise);
    return lib
      .bounded(Promise.all(mine), ACK_WAIT_MS, `ACK_RESPONSEs of ${m.name}`)
      .catch((e) => process.stderr.write(`${TOOL}: ${e.message}\n`))
      .then(() => lib.bounded(m.consumer.unsubscribe(), CLOSE_TIMEOUT_MS, `CLOSE_CONSUMER of ${m.name}`))
      .then(() => {
        process.stderr.write(`${TOOL}: ${m.name} closed after seq ${m.closedAfterSeq}\n`);
        return null;
      }, (e) => e); // settles with the error, rethrown once the run is over
  };

  const handler = (m) => async (delivery) => {
    try {
      if (stopping || m.closed) return;
      const line = { consumer: m.index, seq: ++seq, ...lib.describeMessage(delivery) };
      m.received++;
      if (m.firstSeq === null) m.firstSeq = line.seq;
      const duplicate = all.has(line.payload);
      all.add(line.payload);
      if (!m.taken.has(line.payload)) m.firsts.push([line.payload, line.key]);
      m.taken.add(line.payload);
      m.payloads.push(line.payload);
      line.action = (duplicate ? 'duplicate-' : '') + (o.ack === 'all' ? 'ack' : 'none');
      lib.emit(line);
      if (o.ack === 'all') {
        const p = delivery.ack().then(() => acked++);
        ackPromises.push({ member: m, promise: p });
      }
      if (closeAfter && closeAfter.index === m.index && m.taken.size >= closeAfter.after)
        closing.push(closeMember(m));
      if (all.size >= o.count) {
        stopping = true;
        reachedCount();
      }
    } catch (e) {
      process.stderr.write(`${TOOL}: handling a message failed: ${e && e.stack ? e.stack : e}\n`);
    }
  };

  const summary = () => {
    const keyOwners = {};
    let keyOrderOk = true;
    let consumerOrderOk = true;
    for (const m of members) {
      const lastByKey = new Map();
      let last = -Infinity;
      for (const [payload, key] of m.firsts) {
        const n = lib.payloadIndex(payload);
        const k = key === null ? '' : key;
        if (key !== null) {
          keyOwners[key] = keyOwners[key] || [];
          if (!keyOwners[key].includes(m.index)) keyOwners[key].push(m.index);
        }
        if (n === null) continue;
        if (lastByKey.has(k) && n <= lastByKey.get(k)) keyOrderOk = false;
        lastByKey.set(k, n);
        if (n <= last) consumerOrderOk = false;
        last = n;
      }
    }
    const received = members.reduce((a, m) => a + m.received, 0);
    return {
      distinct: all.size,
      received,
      duplicates: received - all.size,
      acked,
      acksPending: ackPromises.length - acked,
      timedOut,
      elapsedMs: Date.now() - started,
      perConsumer: members.map((m) => ({
        name: m.name,
        received: m.received,
        distinct: m.taken.size,
        payloads: m.payloads,
        firstSeq: m.firstSeq,
        closedAfterSeq: m.closedAfterSeq,
      })),
      keyOwners,
      keysOnOneConsumer: Object.values(keyOwners).every((owners) => owners.length === 1),
      keyOrderOk,
      consumerOrderOk,
    };
  };
  const hint = () => (logging.state.lastProblem ? ` (last client warning: ${logging.state.lastProblem})` : '');

  let phase = 'SUBSCRIBE';
  try {
    for (const m of members) {
      phase = `SUBSCRIBE of ${m.name} to ${o.topic} (${o.subscription}, ${o.type}) via ${o.url}`;
      await lib.bounded(m.consumer.subscribe(), left(), phase);
      process.stderr.write(`${TOOL}: ${m.name} subscribed\n`);
    }
    if (o.readyFile) require('fs').writeFileSync(o.readyFile, 'subscribed\n');
    if (o.count > 0) {
      for (const m of members) await m.consumer.run({ onMessage: handler(m), autoAck: false });
      try {
        await lib.bounded(done, left(), `${o.count} distinct messages`);
      } catch (e) {
        if (!(e instanceof lib.TimeoutError)) throw e;
        timedOut = true;
        stopping = true;
        process.stderr.write(`${TOOL}: ${e.message}, got ${all.size}\n`);
      }
    }
    phase = 'the consumers to close';
    for (const err of await Promise.all(closing)) if (err) throw err;
    await lib
      .bounded(Promise.all(ackPromises.map((p) => p.promise)), ACK_WAIT_MS, 'ACK_RESPONSE for every ack')
      .catch((e) => process.stderr.write(`${TOOL}: ${e.message}\n`));
    for (const m of members)
      if (!m.closed) {
        m.closed = true;
        phase = `the broker to confirm CLOSE_CONSUMER of ${m.name}`;
        await lib.bounded(m.consumer.unsubscribe(), CLOSE_TIMEOUT_MS, phase);
      }
  } catch (e) {
    if (e instanceof lib.TimeoutError) lib.finish(lib.EXIT_TIMEOUT, summary(), `${TOOL}: ${e.message}${hint()}`);
    const why = e && e.message ? `${e.name}: ${e.message}` : (e && e.name) || String(e);
    lib.finish(lib.EXIT_FAILED, summary(), `${TOOL}: waiting for ${phase}: ${why}`);
  }
  const s = summary();
  if (s.acksPending > 0) lib.finish(lib.EXIT_TIMEOUT, s, `${TOOL}: ${s.acksPending} ack(s) never confirmed`);
  if (timedOut && !o.allowShort) lib.finish(lib.EXIT_TIMEOUT, s, null);
  lib.finish(lib.EXIT_OK, s, null);
}

main();
