#!/usr/bin/env node
'use strict';
// Subscribes with pulsar-flex's Consumer, prints every delivered message as a JSON line, acks
// per --ack, and stops once --count distinct payloads have been taken (a redelivered copy of a
// payload already taken is printed and counted as a duplicate, not towards --count). Then it
// waits for the broker's ACK_RESPONSEs, optionally holds the connection, closes the consumer
// (pulsar-flex's unsubscribe(), which sends CLOSE_CONSUMER) and prints a summary line.

const { Consumer } = require('pulsar-flex');
const lib = require('./lib');

const TOOL = 'consume.js';
const ACK_WAIT_MS = 12000; // pulsar-flex itself gives up on an ACK_RESPONSE after 10 s
const CLOSE_TIMEOUT_MS = 12000;

const USAGE = `Usage: node consume.js --url pulsar://HOST:PORT --topic TOPIC --subscription SUB
                  --type Exclusive|Shared|Failover|Key_Shared --count N [options]

Subscribes and takes N distinct payloads. --count 0 only subscribes (creating the subscription,
which then keeps every later message; pulsar-flex subscribes at Latest) and closes again.

Options:
  --url URL              broker to look the topic up on (pulsar://HOST:PORT)
  --topic TOPIC          topic name
  --subscription SUB     subscription name
  --type TYPE            Exclusive, Shared, Failover or Key_Shared
  --count N              distinct payloads to take (0..1000000)
  --timeout-ms MS        bound on subscribing and receiving (default: 20000)
  --allow-short          reaching --timeout-ms while receiving is not an error (exit 0)
  --ack MODE             all (default), none, or every-other (the 1st, 3rd, 5th... delivery)
  --nack-first           negatively acknowledge the first delivery (not counted); pulsar-flex
                         sends REDELIVER_UNACKNOWLEDGED_MESSAGES with that message's id
  --receive-queue N      pulsar-flex receiveQueueSize, its flow permits (default: 500)
  --name NAME            consumer name sent in SUBSCRIBE (default: none, the broker picks)
  --hold-ms MS           stay connected this long after the last message, before closing
  --verbose              pulsar-flex's own log on stderr
  -h, --help             show this help

Output (stdout, JSON lines): per delivery {"payload","key","properties","messageId":"L:E:P:B",
"redeliveryCount","action":"ack"|"none"|"nack"|"duplicate-ack"|...}; last a summary
{"received","distinct","duplicates","acked","acksPending","nacked","ignoredAfterStop",
"timedOut","elapsedMs"}. Progress notes ("subscribed ...") go to stderr.
Exit: 0 done, 1 subscribe or close refused, 2 timed out (or acks unconfirmed), 64 bad command line.
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
      'timeout-ms': { type: 'int', default: 20000, min: 1, max: 3600000 },
      'allow-short': { type: 'flag' },
      ack: { type: 'string', default: 'all', choices: ['all', 'none', 'every-other'] },
      'nack-first': { type: 'flag' },
      'receive-queue': { type: 'int', default: 500, min: 1, max: 100000 },
      name: { type: 'string' },
      'hold-ms': { type: 'int', default: 0, min: 0, max: 600000 },
      verbose: { type: 'flag' },
    },
    USAGE
  );
  const server = lib.discoveryServer(o.url, o._fail);
  lib.reportStrayErrors(TOOL);

  const started = Date.now();
  const left = () => o.timeoutMs - (Date.now() - started);
  const logging = lib.clientLogging(TOOL, o.verbose);
  const consumer = new Consumer({
    topic: o.topic,
    subscription: o.subscription,
    subType: lib.subTypeValue(o.type),
    discoveryServers: [server],
    consumerName: o.name,
    receiveQueueSize: o.receiveQueue,
    logLevel: logging.logLevel,
    logCreator: logging.logCreator,
  });

  const taken = new Set(); // payloads of non-nacked deliveries
  const ackPromises = [];
  let received = 0;
  let handled = 0; // non-nacked deliveries, for --ack every-other
  let nacked = 0;
  let acked = 0;
  let ignoredAfterStop = 0;
  let stopping = false;
  let timedOut = false;
  let reachedCount;
  const done = new Promise((resolve) => (reachedCount = resolve));

  const onMessage = async (delivery) => {
    try {
      if (stopping) {
        ignoredAfterStop++;
        return;
      }
      received++;
      const line = lib.describeMessage(delivery);
      if (o.nackFirst && nacked === 0) {
        nacked++;
        line.action = 'nack';
        lib.emit(line);
        delivery.ack({ type: Consumer.ACK_TYPES.NEGATIVE }).catch(() => {});
        return;
      }
      handled++;
      const duplicate = taken.has(line.payload);
      taken.add(line.payload);
      const ack = o.ack === 'all' || (o.ack === 'every-other' && handled % 2 === 1);
      line.action = (duplicate ? 'duplicate-' : '') + (ack ? 'ack' : 'none');
      lib.emit(line);
      if (ack) ackPromises.push(delivery.ack().then(() => acked++));
      if (taken.size >= o.count) {
        stopping = true;
        reachedCount();
      }
    } catch (e) {
      // pulsar-flex stops its delivery loop for good when onMessage throws.
      process.stderr.write(`${TOOL}: handling a message failed: ${e && e.stack ? e.stack : e}\n`);
    }
  };

  const summary = () => ({
    received,
    distinct: taken.size,
    duplicates: handled - taken.size,
    acked,
    acksPending: ackPromises.length - acked,
    nacked,
    ignoredAfterStop,
    timedOut,
    elapsedMs: Date.now() - started,
  });
  const hint = () => (logging.state.lastProblem ? ` (last client warning: ${logging.state.lastProblem})` : '');

  let phase = `SUBSCRIBE to ${o.topic} (${o.subscription}, ${o.type}) via ${o.url}`;
  try {
    await lib.bounded(consumer.subscribe(), left(), phase);
    process.stderr.write(`${TOOL}: subscribed to ${o.topic} as ${o.subscription} (${o.type})\n`);
    if (o.count > 0) {
      await consumer.run({ onMessage, autoAck: false });
      phase = `${o.count} distinct messages (got ${taken.size})`;
      try {
        await lib.bounded(done, left(), `${o.count} distinct messages`);
      } catch (e) {
        if (!(e instanceof lib.TimeoutError)) throw e;
        timedOut = true;
        stopping = true;
        process.stderr.write(`${TOOL}: ${e.message}, got ${taken.size}\n`);
      }
    }
    phase = 'ACK_RESPONSE for every ack';
    try {
      await lib.bounded(Promise.all(ackPromises), ACK_WAIT_MS, phase);
    } catch (e) {
      process.stderr.write(`${TOOL}: ${e.message} (${ackPromises.length - acked} unconfirmed)\n`);
    }
    if (o.holdMs > 0) await lib.sleep(o.holdMs);
    phase = 'the broker to confirm CLOSE_CONSUMER';
    await lib.bounded(consumer.unsubscribe(), CLOSE_TIMEOUT_MS, phase);
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
