'use strict';
// Shared helpers of the pulsar-flex test tools (produce.js, consume.js, group.js): strict option
// parsing, the pulsar:// URL, a client logger that writes to stderr (stdout carries only JSON
// lines), bounded waits, message-key support for the producer, and one way to finish.
//
// Exit codes of every tool: 0 done, 1 the client or the broker reported a failure, 2 a wait hit
// its time limit, 64 bad command line.

const { Consumer, logLevel } = require('pulsar-flex');

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_TIMEOUT = 2;
const EXIT_USAGE = 64;

// Raised by bounded() when a wait runs out; `what` names the wait for the message.
class TimeoutError extends Error {
  constructor(what, ms) {
    super(`timed out after ${ms} ms waiting for ${what}`);
    this.name = 'TimeoutError';
  }
}

// spec: { name: { type: 'string'|'int'|'flag'|'list', required, default, min, max, choices } }.
// Returns an object keyed by camelCase option names. Unknown options, missing values, values of
// the wrong kind and missing required options print one line and exit 64.
function parseArgs(tool, argv, spec, usage) {
  const fail = (msg) => {
    process.stderr.write(`${tool}: ${msg}\n(see ${tool} --help)\n`);
    process.exit(EXIT_USAGE);
  };
  const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  const out = {};
  for (const [name, s] of Object.entries(spec)) {
    if (s.type === 'flag') out[camel(name)] = false;
    else if (s.default !== undefined) out[camel(name)] = s.default;
  }
  const seen = new Set();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(usage);
      process.exit(EXIT_OK);
    }
    if (!arg.startsWith('--')) fail(`unexpected argument '${arg}'`);
    let name = arg.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const s = spec[name];
    if (!s) fail(`unknown option '--${name}'`);
    if (seen.has(name)) fail(`option '--${name}' given twice`);
    seen.add(name);
    if (s.type === 'flag') {
      if (value !== undefined) fail(`option '--${name}' takes no value`);
      out[camel(name)] = true;
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) fail(`option '--${name}' needs a value`);
      value = argv[++i];
    }
    if (s.type === 'int') {
      if (!/^-?[0-9]+$/.test(value)) fail(`option '--${name}' needs an integer, got '${value}'`);
      const n = Number(value);
      if (s.min !== undefined && n < s.min) fail(`option '--${name}' must be >= ${s.min}, got ${n}`);
      if (s.max !== undefined && n > s.max) fail(`option '--${name}' must be <= ${s.max}, got ${n}`);
      out[camel(name)] = n;
    } else if (s.type === 'list') {
      const items = value.split(',');
      if (items.some((x) => x === '')) fail(`option '--${name}' has an empty item in '${value}'`);
      out[camel(name)] = items;
    } else {
      if (value === '') fail(`option '--${name}' needs a non-empty value`);
      if (s.choices && !s.choices.includes(value))
        fail(`option '--${name}' must be one of ${s.choices.join(', ')}, got '${value}'`);
      out[camel(name)] = value;
    }
  }
  for (const [name, s] of Object.entries(spec))
    if (s.required && !seen.has(name)) fail(`option '--${name}' is required`);
  out._fail = fail;
  return out;
}

// "pulsar://host:port" -> "host:port", the form pulsar-flex's discoveryServers take. pulsar-flex
// splits on ':' and speaks plain TCP, so IPv6 literals and pulsar+ssl:// cannot work.
function discoveryServer(url, fail) {
  const m = /^pulsar:\/\/([A-Za-z0-9.-]+):([0-9]{1,5})\/?$/.exec(url);
  if (!m) fail(`--url must look like pulsar://HOST:PORT, got '${url}'`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) fail(`--url port must be 1..65535, got ${port}`);
  return `${m[1]}:${port}`;
}

// "k=v,k2=v2" -> { k: 'v', k2: 'v2' }.
function parseProperties(items, fail) {
  const props = {};
  for (const item of items || []) {
    const eq = item.indexOf('=');
    if (eq <= 0) fail(`--properties items look like key=value, got '${item}'`);
    props[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return props;
}

const SUB_TYPE_NAMES = ['Exclusive', 'Shared', 'Failover', 'Key_Shared'];
const subTypeValue = (name) =>
  ({
    Exclusive: Consumer.SUB_TYPES.EXCLUSIVE,
    Shared: Consumer.SUB_TYPES.SHARED,
    Failover: Consumer.SUB_TYPES.FAILOVER,
    Key_Shared: Consumer.SUB_TYPES.KEY_SHARED,
  })[name];

// pulsar-flex logs through a logCreator; this one writes to stderr with the tool's name and keeps
// the last warning or error, so a timeout can say what the client was struggling with (for
// instance "Failed lookup topic ... ECONNREFUSED").
function clientLogging(tool, verbose) {
  const state = { lastProblem: null };
  const logCreator = () => ({ level, label, log }) => {
    if (level <= logLevel.WARN) state.lastProblem = String(log.message).replace(/\s+/g, ' ');
    if (verbose || level <= logLevel.ERROR)
      process.stderr.write(`${tool}: client ${label}: ${log.message}\n`);
  };
  return { logLevel: verbose ? logLevel.DEBUG : logLevel.WARN, logCreator, state };
}

// Resolves or rejects like `promise`, or rejects with TimeoutError after `ms`.
function bounded(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), Math.max(0, ms));
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Writes one JSON line to stdout.
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Prints the summary line and exits. pulsar-flex leaves timers (a 10 s timer per request, a 60 s
// ping interval) and sockets behind, so every tool ends here.
function finish(code, summary, message) {
  if (message) process.stderr.write(message.endsWith('\n') ? message : message + '\n');
  if (summary) emit(summary);
  process.exit(code);
}

// pulsar-flex 1.1.1 has no way to give a message a key. The producer builds its metadata
// through the exported `commands` object at call time, so wrapping two builders there adds
// MessageMetadata.partition_key (single sends, or a batch whose messages share one key) and
// SingleMessageMetadata.partition_key (each message of a batch). Everything else on the wire is
// pulsar-flex's own encoding.
const KEY = Symbol('partitionKey');
const keyState = { batchKey: null };
function installKeySupport() {
  const commands = require('pulsar-flex/src/commands');
  if (commands.__magnetarKeys) return;
  const messageMetadata = commands.messageMetadata;
  const singleMessageMetadata = commands.singleMessageMetadata;
  commands.messageMetadata = (args) => {
    const md = messageMetadata(args);
    const key = args.properties && args.properties[KEY];
    if (key != null) md.setPartitionKey(key);
    else if (args.numMessages && keyState.batchKey != null) md.setPartitionKey(keyState.batchKey);
    return md;
  };
  commands.singleMessageMetadata = (message) => {
    const md = singleMessageMetadata(message);
    if (message.key != null) md.setPartitionKey(message.key);
    return md;
  };
  commands.__magnetarKeys = true;
}

// What the tools print for one delivered message, from what pulsar-flex hands to onMessage.
function describeMessage({ message, metadata, command, properties, redeliveryCount }) {
  const id = (command && command.messageId) || {};
  return {
    payload: Buffer.isBuffer(message) ? message.toString('utf8') : String(message),
    key: metadata && metadata.partitionKey !== undefined ? metadata.partitionKey : null,
    properties: properties || {},
    messageId: `${id.ledgerid}:${id.entryid}:${id.partition}:${id.batchIndex}`,
    redeliveryCount: redeliveryCount === undefined ? null : redeliveryCount,
  };
}

// The number after the last '-' of a payload ("p-17" -> 17), or null.
function payloadIndex(payload) {
  const m = /-([0-9]+)$/.exec(payload);
  return m ? Number(m[1]) : null;
}

// Internal failures of pulsar-flex (its resend loops run in event listeners) would otherwise
// end the process with a stack trace; report them on stderr and let the bounded waits decide.
function reportStrayErrors(tool) {
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`${tool}: client internal error: ${e && e.stack ? e.stack : e}\n`);
  });
}

module.exports = {
  EXIT_OK,
  EXIT_FAILED,
  EXIT_TIMEOUT,
  EXIT_USAGE,
  TimeoutError,
  parseArgs,
  discoveryServer,
  parseProperties,
  SUB_TYPE_NAMES,
  subTypeValue,
  clientLogging,
  bounded,
  sleep,
  emit,
  finish,
  KEY,
  keyState,
  installKeySupport,
  describeMessage,
  payloadIndex,
  reportStrayErrors,
};
