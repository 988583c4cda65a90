'use strict';
// A chat Job killed with SIGKILL loses nothing. One standalone (broker, chat gateway, push API,
// no Job of its own) and `magnetar job` processes, all on one ZooKeeper. Numbered messages
// ({"n":i}) are pushed over the HTTP API at ~100/s, one after the other, into a room.
//   (a) One Job, SIGKILLed after 150 pushes, a new one started ~2 s later while the pushes go
//       on: a client connected before the first push and throughout gets 0..399 once each, in
//       order, each at the position the push API answered; so does a client that leaves
//       during the outage and comes back with last_id (resume).
//   (b) Two Jobs at once (Failover on the same subscription): the one active on the room's topic
//       is SIGKILLed mid-stream; the other takes over and the client gets 0..399 once each, in
//       order.
// Run by tests/integration/test_chat_job_kill.sh, which starts ZooKeeper and the standalone and
// sets MG_BIN, MG_METADATA_URL, MG_SERVICE_URL, MG_HTTP_PORT, MG_WS_PORT and MG_TMP. The pids of
// the Jobs started here are appended to $MG_TMP/jobs.pids (the script kills what is left).
// Every wait is bounded.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { RoomClient, pushPaced, samePos, sequenceProblem, sleep, waitFor, requiredEnv } =
  require('./page_util');

const BIN = requiredEnv('MG_BIN');
const METADATA_URL = requiredEnv('MG_METADATA_URL');
const SERVICE_URL = requiredEnv('MG_SERVICE_URL');
const HTTP_PORT = Number(requiredEnv('MG_HTTP_PORT'));
const WS_PORT = Number(requiredEnv('MG_WS_PORT'));
const TMP = requiredEnv('MG_TMP');
const WS_URL = `ws://127.0.0.1:${WS_PORT}/sub`;

const COUNT = 400;
const RATE = 100; // pushes per second
const KILL_AT = 150; // the Job is killed once this many messages were stored
const RESTART_AFTER_MS = 2000;
const DRAIN_MS = 30000; // bound on the wait for the last message after the last push
const QUIET_MS = 1500; // after the last message, nothing more may come (duplicates) over this
const TOPICS = 4; // the default chat topic count (standalone and job use the default)
const SUBSCRIPTION = 'magnetar-chat-job';
const RUN = process.pid;

// ---- Job processes ---------------------------------------------------------------------------

const jobs = [];

// Starts `magnetar job` named name; resolves once it logs "ready" (bounded).
async function startJob(name) {
  const log = path.join(TMP, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const child = spawn(BIN, ['job', '--metadata-url', METADATA_URL, '--service-url', SERVICE_URL,
    '--name', name], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const job = { name, child, log, exited: false, startedAt: Date.now(), readyAt: null };
  child.on('exit', () => { job.exited = true; });
  jobs.push(job);
  fs.appendFileSync(path.join(TMP, 'jobs.pids'), `${child.pid}\n`);
  const ready = await waitFor(() => job.exited || /\bready\b/.test(fs.readFileSync(log, 'utf8')),
    20000, 100);
  if (!ready || job.exited) {
    throw new Error(`job ${name} did not log ready (${job.exited ? 'it exited' : 'within 20 s'}); ` +
      `log: ${fs.readFileSync(log, 'utf8').split('\n').slice(-5).join(' | ')}`);
  }
  job.readyAt = Date.now();
  return job;
}

// Sends sig to a Job started here and waits (bounded) for it to exit.
async function stopJob(job, sig) {
  if (job.exited) return;
  job.child.kill(sig);
  await waitFor(() => job.exited, 10000, 20);
  if (!job.exited) throw new Error(`job ${job.name} did not exit after ${sig}`);
}

after(async () => {
  for (const j of jobs) if (!j.exited) j.child.kill('SIGKILL');
});

// ---- the broker's view of the Failover subscription --------------------------------------------

function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

const topicOf = (room) => `chat-${fnv1a32(`live://${room}`) % TOPICS}`;

function getJson(p, ms = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: HTTP_PORT, path: p, timeout: ms }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try { resolve(JSON.parse(Buffer.concat(chunks).toString())); } catch (e) { reject(e); }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${p} not answered within ${ms} ms`)));
    req.on('error', reject);
  });
}

// The Job consumers of the room's topic: [{name, active}].
async function jobConsumers(room) {
  const st = await getJson(`/admin/v2/persistent/public/default/${topicOf(room)}/stats`);
  const sub = st.subscriptions && st.subscriptions[SUBSCRIPTION];
  return sub ? sub.consumers.map((c) => ({ name: c.consumerName, active: c.isActive })) : [];
}

// ---- a run: pushes with clients watching ------------------------------------------------------

// Pushes COUNT messages into room at RATE with the watching clients connected before the first
// push; onPushed(i) runs after push i (may start things, must not block long). Then waits
// (bounded) for every client to have COUNT messages, then QUIET_MS more.
async function runStream(room, clients, onPushed) {
  for (const c of clients) {
    const reply = await c.open();
    assert.equal(reply.code, 0, `auth accepted (${JSON.stringify(reply)})`);
  }
  const ids = await pushPaced(HTTP_PORT, String(room), COUNT, RATE,
    (i) => JSON.stringify({ n: i }), onPushed);
  const pushedAt = Date.now();
  const lastN = (c) => {
    const m = c.messages[c.messages.length - 1];
    return m ? JSON.parse(m.body).n : -1;
  };
  await waitFor(() => clients.every((c) => lastN(c) === COUNT - 1), DRAIN_MS, 20);
  await sleep(QUIET_MS);
  return { ids, pushedAt };
}

// Checks that client got 0..COUNT-1 once each, in order, at the stored positions.
function checkAll(client, ids, who) {
  assert.deepEqual(client.errors, [], `${who}: no protocol error`);
  const ns = client.messages.map((m) => JSON.parse(m.body).n);
  assert.equal(sequenceProblem(ns, 0, COUNT), null, `${who}: every n from 0 to ${COUNT - 1} once, in order`);
  client.messages.forEach((m, k) => {
    assert.ok(samePos(m.pos, ids[k].id), `${who}: n=${k} at position ${m.pos}, stored at ${ids[k].id}`);
  });
}

const lastArrival = (client) => client.messages.length
  ? client.messages[client.messages.length - 1].at : NaN;

// ---- (a) one Job, killed and restarted ------------------------------------------------------------

const a = { room: 700000 + (RUN % 100000) };

test('(a) a single Job is SIGKILLed after 150 pushes and restarted ~2 s later', async (t) => {
  const first = await startJob(`job-a1-${RUN}`);
  a.stayer = new RoomClient(WS_URL, `live://${a.room}`);
  a.leaver = new RoomClient(WS_URL, `live://${a.room}`);
  let restart = null;
  let resume = null;
  const { ids, pushedAt } = await runStream(a.room, [a.stayer, a.leaver], async (i) => {
    if (i === KILL_AT - 1) {
      await stopJob(first, 'SIGKILL');
      a.killedAt = Date.now();
      restart = sleep(RESTART_AFTER_MS).then(() => startJob(`job-a2-${RUN}`));
      restart.catch(() => {}); // awaited below
      // The leaver goes away during the outage and comes back with its last position.
      resume = (async () => {
        await sleep(RESTART_AFTER_MS / 2);
        await a.leaver.close();
        a.leaverLastBefore = a.leaver.lastId;
        const again = new RoomClient(WS_URL, `live://${a.room}`, { lastId: a.leaver.lastId });
        again.messages = a.leaver.messages;
        a.leaver = again;
        a.leaverReply = await again.open();
      })();
      resume.catch(() => {});
    }
  });
  assert.ok(restart, 'the Job was killed and a restart scheduled');
  a.second = await restart;
  await resume;
  a.ids = ids;
  const restartedAt = a.second.startedAt;
  t.diagnostic(`timing: (a) Job killed after push ${KILL_AT}, new Job started ` +
    `${restartedAt - a.killedAt} ms later and ready in ${a.second.readyAt - restartedAt} ms; ` +
    `last message arrived ${lastArrival(a.stayer) - restartedAt} ms after the restart ` +
    `(${lastArrival(a.stayer) - pushedAt} ms after the last push)`);
  assert.equal(first.exited, true, 'the first Job is gone');
  assert.equal(a.second.exited, false, 'the new Job is running');
});

test('(a) the client connected throughout gets 0..399 once each, in order', () => {
  assert.ok(a.ids, 'the run completed');
  checkAll(a.stayer, a.ids, 'connected throughout');
});

test('(a) a client back with last_id during the outage gets 0..399 once each, in order', () => {
  assert.ok(a.ids, 'the run completed');
  assert.ok(a.leaverReply && a.leaverReply.code === 0, `auth with last_id accepted (${JSON.stringify(a.leaverReply)})`);
  assert.notEqual(a.leaver.lastId, a.leaverLastBefore, 'it got messages after it came back');
  checkAll(a.leaver, a.ids, 'back with last_id');
});

// ---- (b) two Jobs, the active one killed ------------------------------------------------------

const b = { room: 800000 + (RUN % 100000) };

test('(b) two Jobs at once: the active one is SIGKILLed mid-stream, the other takes over', async (t) => {
  for (const j of jobs) await stopJob(j, 'SIGTERM');
  const j1 = await startJob(`job-b1-${RUN}`);
  const j2 = await startJob(`job-b2-${RUN}`);
  const both = await waitFor(async () => {
    const cs = await jobConsumers(b.room);
    return cs.length === 2 && cs.filter((c) => c.active).length === 1 ? cs : null;
  }, 20000, 100);
  assert.ok(both, `both Jobs consume ${topicOf(b.room)}, one of them active`);
  const activeName = both.find((c) => c.active).name;
  const victim = activeName === j1.name ? j1 : j2;
  const survivor = victim === j1 ? j2 : j1;
  assert.equal(victim.name, activeName, 'the active consumer is one of the two Jobs');
  b.client = new RoomClient(WS_URL, `live://${b.room}`);
  const { ids, pushedAt } = await runStream(b.room, [b.client], async (i) => {
    if (i === KILL_AT - 1) {
      await stopJob(victim, 'SIGKILL');
      b.killedAt = Date.now();
    }
  });
  b.ids = ids;
  t.diagnostic(`timing: (b) active Job ${victim.name} killed after push ${KILL_AT}; last message ` +
    `arrived ${lastArrival(b.client) - b.killedAt} ms after the kill ` +
    `(${lastArrival(b.client) - pushedAt} ms after the last push)`);
  const now = await jobConsumers(b.room);
  assert.deepEqual(now, [{ name: survivor.name, active: true }],
    'the surviving Job is the only, active, consumer');
});

test('(b) the client gets 0..399 once each, in order, across the hand-over', () => {
  assert.ok(b.ids, 'the run completed');
  checkAll(b.client, b.ids, 'failover');
});

test('clients close cleanly', async () => {
  for (const c of [a.stayer, a.leaver, b.client]) if (c) await c.close();
});
