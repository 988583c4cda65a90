'use strict';
// The chat page in headless Chromium (puppeteer-core): two people in one room, each in their
// own browser context (own sessionStorage). Alice sends with the page's form, both pages show
// it; Bob answers; the online count reaches 2 within the page's heartbeat period; then a feed of
// numbered messages is pushed over the HTTP API while Bob's page is reloaded mid-stream: after
// the reload it resumes from the position it kept in sessionStorage and shows exactly the
// numbers after the last one it had, while Alice's page, never reloaded, has them all.
// Run by tests/integration/test_chat_page.sh, which starts the standalone and sets
// MG_HTTP_PORT, MG_WS_PORT, MG_TMP and MG_CHROMIUM. Every wait is bounded.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const puppeteer = require('puppeteer-core');
const { pushPaced, samePos, sequenceProblem, requiredEnv } = require('./page_util');

const HTTP_PORT = Number(requiredEnv('MG_HTTP_PORT'));
const WS_PORT = Number(requiredEnv('MG_WS_PORT'));
const TMP = requiredEnv('MG_TMP');
const CHROMIUM = process.env.MG_CHROMIUM || '/usr/bin/chromium';

const ROOM = String(1000 + (process.pid % 50000));
const HEARTBEAT_MS = 10000; // the page's heartbeat period (chat.html HEARTBEAT_MS)
const WAIT_MS = 15000;
const FEED_COUNT = 120;
const FEED_RATE = 20; // per second
const RELOAD_AT = 40; // Bob's page reloads once this many feed messages were stored

let browser;
const pages = {};
const pageErrors = [];

function pageUrl(name) {
  return `http://127.0.0.1:${HTTP_PORT}/chat?room=${ROOM}&name=${name}` +
    `&ws=${encodeURIComponent(`ws://127.0.0.1:${WS_PORT}/sub`)}`;
}

async function openPage(name) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(pageUrl(name), { waitUntil: 'load', timeout: WAIT_MS });
  return page;
}

// Waits (bounded) until the page's state is live (or resumed) in the room.
async function joined(page) {
  await page.waitForFunction(
    (room) => window.chatState && window.chatState.room === `live://${room}` &&
      (window.chatState.status === 'live' || window.chatState.status === 'resumed'),
    { timeout: WAIT_MS }, ROOM);
}

// Types text into the message box and clicks send, as a person would.
async function say(page, text) {
  await page.waitForSelector('[data-testid=send]:not([disabled])', { timeout: WAIT_MS });
  await page.click('[data-testid=message]');
  await page.type('[data-testid=message]', text);
  await page.click('[data-testid=send]');
}

// Waits (bounded) until the page shows a message from user with text: in chatState and as a
// line of the list; resolves with the number of times chatState has it.
async function shows(page, user, text) {
  await page.waitForFunction((u, t) => {
    const inState = window.chatState.messages.some((m) => m.user === u && m.text === t);
    const inList = Array.from(document.querySelectorAll('[data-testid=messages] li')).some(
      (li) => li.querySelector('.user').textContent === u && li.querySelector('.text').textContent === t);
    return inState && inList;
  }, { timeout: WAIT_MS }, user, text);
  return page.evaluate((u, t) => window.chatState.messages.filter(
    (m) => m.user === u && m.text === t).length, user, text);
}

const feedNumbers = (messages) => messages.filter((m) => m.user === 'feed')
  .map((m) => Number(/^n=(\d+)$/.exec(m.text)[1]));

before(async () => {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding'],
    timeout: 30000,
    protocolTimeout: 30000,
  });
});

after(async () => {
  if (pages.alice) {
    await pages.alice.screenshot({ path: path.join(TMP, 'page-alice.png'), fullPage: true })
      .catch(() => {});
  }
  if (browser) await browser.close().catch(() => {});
});

test('two pages join the same room', async () => {
  pages.alice = await openPage('alice');
  pages.bob = await openPage('bob');
  await joined(pages.alice);
  await joined(pages.bob);
  for (const p of [pages.alice, pages.bob]) {
    const st = await p.evaluate(() => ({
      status: document.querySelector('[data-testid=status]').textContent,
      sendEnabled: !document.querySelector('[data-testid=send]').disabled,
    }));
    assert.match(st.status, /^(live|resumed)$/);
    assert.equal(st.sendEnabled, true, 'the send button is enabled once joined');
  }
});

test('alice types and clicks send: both pages show it once', async () => {
  const text = `hello from alice ${process.pid}`;
  await say(pages.alice, text);
  assert.equal(await shows(pages.bob, 'alice', text), 1, 'bob has it once');
  assert.equal(await shows(pages.alice, 'alice', text), 1, 'alice has it once');
  await pages.alice.waitForFunction(
    () => document.querySelector('[data-testid=message]').value === '', { timeout: WAIT_MS });
});

test('bob answers: alice shows it after her own message', async () => {
  const text = `hi alice, bob here ${process.pid}`;
  await say(pages.bob, text);
  assert.equal(await shows(pages.alice, 'bob', text), 1, 'alice has it once');
  assert.equal(await shows(pages.bob, 'bob', text), 1, 'bob has it once');
  const order = await pages.alice.evaluate(() => window.chatState.messages.map((m) => m.user));
  assert.deepEqual(order, ['alice', 'bob'], 'alice sees her message, then bob\'s');
});

test('the online count shown becomes 2 within a heartbeat period', async () => {
  for (const [name, p] of Object.entries(pages)) {
    try {
      await p.waitForFunction(
        () => document.querySelector('[data-testid=online]').textContent === '2' &&
          window.chatState.online === 2,
        { timeout: HEARTBEAT_MS + 5000 });
    } catch (e) {
      const shown = await p.evaluate(() => document.querySelector('[data-testid=online]').textContent);
      assert.fail(`${name}'s page shows online ${shown}, wanted 2`);
    }
  }
});

test('a page reloaded mid-stream resumes with no gap and no duplicate', async (t) => {
  // What Bob's page had when it went away: recorded by the page itself as it unloads, so a
  // message arriving between a read and the reload cannot be missed.
  await pages.bob.evaluate(() => {
    window.addEventListener('pagehide', () => {
      const ms = window.chatState.messages;
      window.sessionStorage.setItem('test.before', JSON.stringify({
        last: ms.length ? ms[ms.length - 1] : null, lastId: window.chatState.lastId,
        count: ms.length }));
    });
  });
  let reload = null;
  const ids = await pushPaced(HTTP_PORT, ROOM, FEED_COUNT, FEED_RATE,
    (i) => JSON.stringify({ user: 'feed', text: `n=${i}` }),
    async (i) => {
      if (i === RELOAD_AT) {
        reload = pages.bob.reload({ waitUntil: 'load', timeout: WAIT_MS });
        reload.catch(() => {}); // awaited below
      }
    });
  assert.ok(reload, 'the reload was started');
  await reload;
  const beforeReload = await pages.bob.evaluate(
    () => JSON.parse(window.sessionStorage.getItem('test.before')));
  assert.ok(beforeReload && beforeReload.last, 'bob\'s page had messages before the reload');
  const m = /^n=(\d+)$/.exec(beforeReload.last.text);
  assert.ok(m, `bob's last message before the reload is a feed message (${JSON.stringify(beforeReload.last)})`);
  const lastBefore = Number(m[1]);
  assert.ok(samePos(beforeReload.lastId, ids[lastBefore].id),
    `the kept position ${beforeReload.lastId} is that of n=${lastBefore} (${ids[lastBefore].id})`);
  t.diagnostic(`note: bob had up to n=${lastBefore} before the reload (reload at push ${RELOAD_AT})`);

  const lastText = `n=${FEED_COUNT - 1}`;
  for (const p of [pages.alice, pages.bob]) {
    await p.waitForFunction((tx) => window.chatState.messages.some((x) => x.text === tx),
      { timeout: WAIT_MS }, lastText).catch(() => {});
  }
  const bob = await pages.bob.evaluate(() => ({
    messages: window.chatState.messages, status: window.chatState.status,
    recovered: window.chatState.recovered,
  }));
  assert.ok(bob.status === 'resumed' || bob.recovered === true,
    `bob's page says it resumed (status "${bob.status}", recovered ${bob.recovered})`);
  const after = feedNumbers(bob.messages);
  assert.equal(after.length, bob.messages.length, 'after the reload bob has only feed messages');
  const problem = sequenceProblem(after, lastBefore + 1, FEED_COUNT - 1 - lastBefore);
  assert.equal(problem, null, `bob after the reload: n=${lastBefore + 1}..${FEED_COUNT - 1} once ` +
    `each, in order; kept position ${beforeReload.lastId}; first ones shown after the reload: ` +
    JSON.stringify(bob.messages.slice(0, 12).map((x) => `${x.text}@${x.pos}`)));
  for (const x of bob.messages) {
    const n = Number(x.text.slice(2));
    assert.ok(samePos(x.pos, ids[n].id), `bob's n=${n} has position ${x.pos}, stored at ${ids[n].id}`);
  }

  const alice = await pages.alice.evaluate(() => window.chatState.messages);
  assert.equal(sequenceProblem(feedNumbers(alice), 0, FEED_COUNT), null,
    'alice (never reloaded) has every feed message once, in order');
});

test('no script error on either page', () => {
  assert.deepEqual(pageErrors, []);
});
