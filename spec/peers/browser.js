// spec/peers/browser.js -- drives Debian's headless Chromium with
// playwright-core for spec/browser_spec.lua.
//
//   node spec/peers/browser.js SCENARIO URL [ARG]
//
// Scenarios (URL is the page a moonws server serves over plain HTTP):
//   server-close URL   open the page, wait for its socket's close event
//   page-close URL     open the page, wait for the server's answer, then
//                      socket.close(1000, "page done") from the page
//   big URL SIZE       open the page, send SIZE bytes of generated text and
//                      compare the echo (permessage-deflate both ways)
//   chat URL PNG       two chat pages: each types a line, the other must show
//                      it; a screenshot of the first goes to PNG
//
// It prints one line per fact (OPENED, MESSAGE, CLOSE, EXTENSIONS, BIG,
// LINES) and DONE, or ERROR and exits 1.  Every wait is bounded.

'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('./node/node_modules/playwright-core');

const WAIT = 20000; // ms, for every page-side wait

const [scenario, url, extra] = process.argv.slice(2);

function say(...parts) { console.log(parts.join(' ')); }

// What the test page records (see PAGE in spec/browser_spec.lua).
async function waitResult(page, predicate, arg) {
  await page.waitForFunction(predicate, arg, { timeout: WAIT, polling: 20 });
  return page.evaluate(() => window.result);
}

function reportClose(closed) {
  say('CLOSE', `code=${closed.code}`, `clean=${closed.wasClean}`, `reason=${closed.reason}`);
}

async function serverClose(context) {
  const page = await context.newPage();
  await page.goto(url);
  const result = await waitResult(page, () => window.result.closed !== null);
  if (result.opened) say('OPENED');
  for (const m of result.messages) say('MESSAGE', m);
  reportClose(result.closed);
}

async function pageClose(context) {
  const page = await context.newPage();
  await page.goto(url);
  let result = await waitResult(page, () => window.result.messages.length > 0);
  if (result.opened) say('OPENED');
  for (const m of result.messages) say('MESSAGE', m);
  await page.evaluate(() => socket.close(1000, 'page done'));
  result = await waitResult(page, () => window.result.closed !== null);
  reportClose(result.closed);
}

async function big(context) {
  const page = await context.newPage();
  await page.goto(url);
  await waitResult(page, () => window.result.messages.length > 0);
  say('OPENED');
  const size = Number(extra);
  const out = await page.evaluate(async (size) => {
    // The same generator as text_of() in the spec: MINSTD letters and spaces.
    const codes = new Array(size);
    let x = 12345;
    for (let i = 0; i < size; i++) {
      x = (x * 48271) % 2147483647;
      const c = x % 27;
      codes[i] = c === 26 ? 32 : 97 + c;
    }
    let text = '';
    for (let i = 0; i < size; i += 8192) {
      text += String.fromCharCode.apply(null, codes.slice(i, i + 8192));
    }
    const echo = await new Promise((resolve, reject) => {
      socket.onmessage = (event) => resolve(event.data);
      socket.onclose = () => reject(new Error('closed before the echo came'));
      socket.send(text);
    });
    return { extensions: socket.extensions, sent: text.length, received: echo.length,
             equal: echo === text, head: echo.slice(0, 16), tail: echo.slice(-16) };
  }, size);
  say('EXTENSIONS', out.extensions);
  say('BIG', `sent=${out.sent}`, `received=${out.received}`, `equal=${out.equal}`);
  say('SAMPLE', JSON.stringify(out.head), JSON.stringify(out.tail));
  await page.evaluate(() => socket.close(1000, 'big done'));
}

async function chat(context) {
  const lines = (page) => page.$$eval('#messages li', (items) => items.map((li) => li.textContent));
  const open = async () => {
    const page = await context.newPage();
    await page.setViewportSize({ width: 720, height: 460 });
    await page.goto(url);
    await page.waitForFunction(() => socket.readyState === WebSocket.OPEN, null, { timeout: WAIT });
    // The server's greeting tells the page its name.
    await page.waitForFunction(() => document.querySelectorAll('#messages li').length > 0,
      null, { timeout: WAIT });
    return page;
  };
  const seen = (page, text) => page.waitForFunction((text) =>
    [...document.querySelectorAll('#messages li')].some((li) => li.textContent.endsWith(text)),
    text, { timeout: WAIT });

  const a = await open();
  const b = await open();
  say('EXTENSIONS', await a.evaluate(() => socket.extensions));
  say('STATUS', await a.textContent('#status'));
  await seen(a, 'guest2 joined');

  await a.fill('#text', 'Hello from page A');
  await a.press('#text', 'Enter');
  await seen(b, ': Hello from page A');
  await b.fill('#text', 'Hi A, this is B');
  await b.click('#send');
  await seen(a, ': Hi A, this is B');
  await seen(b, ': Hi A, this is B');

  say('LINES a', JSON.stringify(await lines(a)));
  say('LINES b', JSON.stringify(await lines(b)));
  await a.screenshot({ path: extra });
  say('SCREENSHOT', extra);
}

const scenarios = { 'server-close': serverClose, 'page-close': pageClose, big, chat };

(async () => {
  if (!scenarios[scenario] || !url) {
    throw new Error('usage: browser.js server-close|page-close|big|chat URL [ARG]');
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'moonws-chromium-'));
  let context;
  try {
    // A persistent context is how playwright takes a fresh --user-data-dir.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      timeout: WAIT,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
             '--disable-background-networking'],
    });
    await scenarios[scenario](context);
    say('DONE');
  } finally {
    if (context) await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
})().catch((err) => {
  say('ERROR', String(err && err.stack || err).replace(/\n/g, ' | '));
  process.exit(1);
});
