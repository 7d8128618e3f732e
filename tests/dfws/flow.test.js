// The flows of df_websockets.min.js (specs/bindings-signals.md §B.7)
// against a real switchyard server: the page's cookies come from the
// application's call to POST /api/server/windows, the client (dfsignals.js,
// an imitation of the unmodified client, which is not on npm) reads them
// and talks to /ws/.
//
// The server (TestDFWebsocketsNodeClient) registers flow.echo (everyone,
// n an int): it answers the caller's window with flow.echoed {n}.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { Browser, DFSignals } = require('./dfsignals');

const BASE = process.env.SWITCHYARD_URL;
const API_KEY = process.env.SWITCHYARD_API_KEY;
const JWT_SECRET = process.env.SWITCHYARD_JWT_SECRET;
const HOST = new URL(BASE).host;

const pages = [];
after(() => pages.forEach((p) => p.stop()));

// api is the application's side: a call of the server API.
async function api(method, body) {
  const res = await fetch(BASE + '/api/server/' + method, {
    method: 'POST',
    headers: { Authorization: 'apikey ' + API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const out = await res.json();
  assert.equal(res.status, 200, method + ': ' + JSON.stringify(out));
  return out;
}

// topic is df_websockets' serialize_topic for a str.
const topic = (s) => '-str.' + crypto.createHash('sha224').update(s).digest('hex');

// page renders a page in browser: the view asks for a window and sets its
// cookies on the response; then DOMContentLoaded connects the client.
async function page(browser, body, opts) {
  const w = await api('windows', { host: HOST, ...body });
  for (const c of w.cookies) browser.setCookie(c);
  const df = new DFSignals(browser, opts);
  pages.push(df);
  return { df, key: w.window_key, load: () => df.websocketConnect() };
}

// waitFor polls cond.
async function waitFor(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// jwt mints an HS256 token (the app could set it as the switchyard_token
// cookie; the connect proxy will do without it).
function jwt(sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 });
  return head + '.' + crypto.createHmac('sha256', JWT_SECRET).update(head).digest('base64url');
}

test('cookie bootstrap; calls made before open are buffered and arrive in order', async () => {
  const browser = new Browser();
  const { df, load } = await page(browser, { topics: ['room1'] });
  assert.match(browser.jar.get('dfwskey'), /^[a-z0-9]{32}$/);
  assert.equal(decodeURIComponent(decodeURIComponent(browser.jar.get('dfwsurl'))), 'ws://' + HOST + '/ws/');
  const got = [];
  df.connect('flow.echoed', (opts, id) => got.push([opts.n, id]));
  for (let n = 1; n <= 5; n++) assert.equal(df.call('flow.echo', { n }), false); // before DOMContentLoaded
  assert.equal(df.buffer.length, 5);
  load();
  await waitFor('5 answers', () => got.length === 5);
  assert.deepEqual(got.map(([n]) => n), [1, 2, 3, 4, 5]);
  assert.equal(new Set(got.map(([, id]) => id)).size, 5, 'one signal_id per trigger');
  assert.equal(df.buffer.length, 0);
});

test('one signal_id per trigger: a window in two targeted topics gets it once; every window the same id', async () => {
  const a = new Browser();
  const b = new Browser();
  const pa = await page(a, { topics: ['lobby'], user: 7 });
  const pb = await page(b, { topics: ['lobby'] });
  const seen = { a: [], b: [] };
  pa.df.connect('chat.message', (opts, id) => seen.a.push([opts.text, id]));
  pb.df.connect('chat.message', (opts, id) => seen.b.push([opts.text, id]));
  pa.load();
  pb.load();
  await waitFor('both open', () => pa.df.connection && pb.df.connection);
  // trigger(request, "chat.message", to=[WINDOW, USER, "lobby"], text="hi")
  const res = await api('trigger', { signal: 'chat.message', to: { windows: [pa.key], users: ['7'], topics: [topic('lobby')] }, kwargs: { text: 'hi' } });
  assert.equal(res.delivered, 2);
  await waitFor('b', () => seen.b.length === 1);
  await waitFor('a', () => seen.a.length === 1);
  assert.deepEqual(seen.a, [['hi', res.signal_id]]);
  assert.deepEqual(seen.b, [['hi', res.signal_id]]);
  const frames = a.frames.filter((f) => f.includes(res.signal_id));
  assert.equal(frames.length, 1, 'sent once to a window in three targets');
  assert.deepEqual(JSON.parse(frames[0]), { signal: 'chat.message', opts: { text: 'hi' }, signal_id: res.signal_id });
});

test('the server closes the socket: the client reconnects 3 s later with the same cookie and re-joins its topics', async () => {
  const browser = new Browser();
  browser.setCookie('switchyard_token=' + jwt('u1') + '; Path=/');
  const { df, key, load } = await page(browser, { topics: ['room2'] });
  const got = [];
  df.connect('room.news', (opts) => got.push(opts.n));
  let closedAt = 0;
  df.onclosed = () => { closedAt = Date.now(); };
  load();
  await waitFor('open', () => df.connection);
  await api('trigger', { signal: 'room.news', to: { topics: [topic('room2')] }, kwargs: { n: 1 } });
  await waitFor('first', () => got.length === 1);
  const first = df.connection;
  assert.equal((await api('disconnect', { user: 'u1' })).sessions, 1);
  await waitFor('close', () => closedAt > 0);
  assert.equal(df.log.at(-1), 'close 4003');
  await waitFor('reconnect', () => df.connection && df.connection !== first, 10000);
  const delay = Date.now() - closedAt;
  assert.ok(delay >= 2900 && delay < 8000, 'reconnected after ' + delay + ' ms');
  const list = await api('windows', { window: key });
  assert.equal(list.windows.length, 1);
  assert.ok(list.windows[0].topics.includes(topic('room2')));
  await api('trigger', { signal: 'room.news', to: { topics: [topic('room2')] }, kwargs: { n: 2 } });
  await waitFor('second', () => got.length === 2);
  assert.deepEqual(got, [1, 2]);
});

test('the heartbeat is echoed verbatim and ignored by the client', async () => {
  const browser = new Browser();
  const { df, load } = await page(browser, { topics: [] }, { heartbeatInterval: 50 });
  load();
  await waitFor('two heartbeats answered', () => browser.frames.filter((f) => f === '--heartbeat--').length >= 2);
  assert.ok(df.connection, 'still open');
});

test('without a dfwsurl cookie the client does not connect', async () => {
  const df = new DFSignals(new Browser());
  pages.push(df);
  df.websocketConnect();
  assert.deepEqual(df.log, ['no dfwsurl cookie: not connecting']);
  assert.equal(df.socket, undefined);
});

test('bad input from another socket of the window never closes this one', async () => {
  const browser = new Browser();
  const { df, key, load } = await page(browser, { topics: ['room3'] });
  const got = [];
  df.connect('room.news', (opts) => got.push(opts.n));
  load();
  await waitFor('open', () => df.connection);
  const raw = new WebSocket('ws://' + HOST + '/ws/', { headers: { Cookie: 'dfwskey=' + key } });
  await new Promise((resolve, reject) => { raw.on('open', resolve); raw.on('error', reject); });
  const answers = [];
  raw.on('message', (d) => answers.push(d.toString()));
  for (const f of ['not json', '{"opts":{}}', '{"signal":"flow.echo"}', '{"signal":"no.such","opts":{}}', '{"signal":"flow.echo","opts":{"n":"x"}}', '[]', '--heartbeat--']) raw.send(f);
  await waitFor('heartbeat', () => answers.length === 1);
  assert.deepEqual(answers, ['--heartbeat--'], 'nothing but the heartbeat is answered');
  const closed = new Promise((resolve) => raw.on('close', (code) => resolve(code)));
  raw.send(JSON.stringify({ signal: 'flow.echo', opts: { n: 1, pad: 'x'.repeat(100000) } }));
  assert.equal(await closed, 1009);
  await api('trigger', { signal: 'room.news', to: { topics: [topic('room3')] }, kwargs: { n: 3 } });
  await waitFor('news', () => got.length === 1);
  assert.ok(df.connection, 'this socket is still open');
});
