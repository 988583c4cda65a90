#!/usr/bin/env node
'use strict';
// Sends --count messages with pulsar-flex's Producer, one at a time (each send waits for its
// SEND_RECEIPT before the next, so the broker sees them in order), or in batches through
// sendBatch. Prints one JSON line per acknowledged send, then a summary line.

const { Producer } = require('pulsar-flex');
const lib = require('./lib');

const TOOL = 'produce.js';
const CLOSE_TIMEOUT_MS = 12000;

const USAGE = `Usage: node produce.js --url pulsar://HOST:PORT --topic TOPIC --count N [options]

Sends N messages whose payloads are "<prefix>-<i>", i = 1..N, with the pulsar-flex client.

Options:
  --url URL              broker to look the topic up on (pulsar://HOST:PORT)
  --topic TOPIC          topic name, full (persistent://public/default/t) or short (t)
  --count N              number of messages (1..1000000)
  --batch SIZE           send batches of SIZE messages with sendBatch (the last may be smaller)
  --prefix STR           payload prefix (default: msg)
  --key K                give every message the key K
  --keys K1,K2,...       give message i the key K[(i-1) mod number of keys]
  --properties k=v,...   properties on every message
  --timeout-ms MS        bound on the whole run, lookup included (default: 30000)
  --quiet                no line per send, only the summary
  --verbose              pulsar-flex's own log on stderr
  -h, --help             show this help

Output (stdout, JSON lines): per acknowledged send {"n":i,"payload":...} or, with --batch,
{"batch":b,"first":...,"last":...,"size":s}; per refused send {"error":...,"payload":...};
last {"sent":N,"errors":E,"timedOut":false,"elapsedMs":T}.
Exit: 0 all sent, 1 a send or the producer failed, 2 timed out, 64 bad command line.
pulsar-flex cannot set keys by itself; --key/--keys add partition_key to the metadata it builds.
`;

async function main() {
  const o = lib.parseArgs(
    TOOL,
    process.argv.slice(2),
    {
      url: { type: 'string', required: true },
      topic: { type: 'string', required: true },
      count: { type: 'int', required: true, min: 1, max: 1000000 },
      batch: { type: 'int', min: 1, max: 10000 },
      prefix: { type: 'string', default: 'msg' },
      key: { type: 'string' },
      keys: { type: 'list' },
      properties: { type: 'list' },
      'timeout-ms': { type: 'int', default: 30000, min: 1, max: 3600000 },
      quiet: { type: 'flag' },
      verbose: { type: 'flag' },
    },
    USAGE
  );
  const server = lib.discoveryServer(o.url, o._fail);
  if (o.key !== undefined && o.keys !== undefined) o._fail('give --key or --keys, not both');
  const properties = lib.parseProperties(o.properties, o._fail);
  const keyOf = (i) =>
    o.key !== undefined ? o.key : o.keys !== undefined ? o.keys[(i - 1) % o.keys.length] : null;
  if (o.key !== undefined || o.keys !== undefined) lib.installKeySupport();
  lib.reportStrayErrors(TOOL);

  const started = Date.now();
  const left = () => o.timeoutMs - (Date.now() - started);
  const logging = lib.clientLogging(TOOL, o.verbose);
  let sent = 0;
  let errors = 0;
  const summary = (timedOut) => ({ sent, errors, timedOut, elapsedMs: Date.now() - started });

  const producer = new Producer({
    topic: o.topic,
    discoveryServers: [server],
    logLevel: logging.logLevel,
    logCreator: logging.logCreator,
  });

  let phase = `the producer on ${o.topic} via ${o.url}`;
  try {
    await lib.bounded(producer.create(), left(), phase);
    const payloadOf = (i) => `${o.prefix}-${i}`;
    if (o.batch) {
      for (let first = 1, b = 1; first <= o.count; first += o.batch, b++) {
        const last = Math.min(o.count, first + o.batch - 1);
        const messages = [];
        for (let i = first; i <= last; i++)
          messages.push({ payload: payloadOf(i), properties: { ...properties }, key: keyOf(i) });
        const keys = new Set(messages.map((m) => m.key));
        lib.keyState.batchKey = keys.size === 1 ? messages[0].key : null;
        phase = `the receipt of batch ${b} (${payloadOf(first)}..${payloadOf(last)})`;
        const pending = producer.sendBatch({ messages });
        lib.keyState.batchKey = null;
        try {
          await lib.bounded(pending, left(), phase);
          sent += messages.length;
          if (!o.quiet)
            lib.emit({ batch: b, first: payloadOf(first), last: payloadOf(last), size: messages.length });
        } catch (e) {
          if (e instanceof lib.TimeoutError) throw e;
          errors += messages.length;
          lib.emit({ error: describeError(e), batch: b, first: payloadOf(first), last: payloadOf(last) });
        }
      }
    } else {
      for (let i = 1; i <= o.count; i++) {
        const props = { ...properties };
        const key = keyOf(i);
        if (key !== null) props[lib.KEY] = key;
        phase = `the receipt of ${payloadOf(i)}`;
        try {
          await lib.bounded(producer.sendMessage({ payload: payloadOf(i), properties: props }), left(), phase);
          sent++;
          if (!o.quiet) lib.emit({ n: i, payload: payloadOf(i) });
        } catch (e) {
          if (e instanceof lib.TimeoutError) throw e;
          errors++;
          lib.emit({ error: describeError(e), payload: payloadOf(i) });
        }
      }
    }
    phase = 'the broker to confirm CLOSE_PRODUCER';
    try {
      await lib.bounded(producer.close(), CLOSE_TIMEOUT_MS, phase);
    } catch (e) {
      lib.finish(lib.EXIT_FAILED, summary(false), `${TOOL}: closing the producer failed: ${describeError(e)}`);
    }
  } catch (e) {
    if (e instanceof lib.TimeoutError) {
      const hint = logging.state.lastProblem ? ` (last client warning: ${logging.state.lastProblem})` : '';
      lib.finish(lib.EXIT_TIMEOUT, summary(true), `${TOOL}: ${e.message}${hint}`);
    }
    lib.finish(lib.EXIT_FAILED, summary(false), `${TOOL}: ${phase}: ${describeError(e)}`);
  }
  lib.finish(errors ? lib.EXIT_FAILED : lib.EXIT_OK, summary(false),
    errors ? `${TOOL}: ${errors} message(s) refused by the broker` : null);
}

// pulsar-flex puts SEND_ERROR's numeric code where a message should be; say what is known.
function describeError(e) {
  if (!e) return 'unknown error';
  const name = e.name || 'Error';
  return e.message ? `${name}: ${e.message}` : name;
}

main();
