// The Channelstream JS client's flows (specs/channelstream.md §9.2),
// against a real switchyard serve, with the Node ws package as the
// browser's WebSocket. The JS client is no longer published on npm, so
// this file makes exactly the requests it makes: the application signs
// (here with the client's own, quirky, ChannelStreamSigner algorithm) and
// calls the signed API; the browser talks to /ws, /listen and /disconnect.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');

const BASE = process.env.SWITCHYARD_URL;
const SECRET = process.env.CHANNELSTREAM_SECRET;
const WS_URL = BASE.replace(/^http/, 'ws') + '/ws';

// ChannelStreamSigner (src/signer.js): String.replace with a string
// pattern swaps only the first "+", "/" and "=".
function jsClientSign(payload) {
  const key = crypto.createHash('sha1').update('itsdangerous.Signer' + 'signer' + SECRET).digest();
  let ts = Math.floor(Date.now() / 1000);
  const bytes = [];
  while (ts > 0) { bytes.unshift(ts & 0xff); ts = Math.floor(ts / 256); }
  const fix = (s) => s.replace('+', '-').replace('/', '_').replace('=', '');
  const value = payload + '.' + fix(Buffer.from(bytes).toString('base64'));
  const sig = fix(crypto.createHmac('sha1', key).update(value).digest('base64'));
  return value + '.' + sig;
}

// The application's side: a signed call to Channelstream.
async function app(method, path, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: { 'Content-Type': 'application/json', 'x-channelstream-secret': jsClientSign('channelstream') },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.status <= 400, `${method} ${path}: ${res.status} ${text}`); // the client's idea of success
  return JSON.parse(text);
}

// A browser tab: the socket the client opens after connect().
class Tab {
  constructor(connId) {
    this.messages = [];
    this.heartbeats = 0;
    this.waiters = [];
    this.ws = new WebSocket(WS_URL + '?conn_id=' + connId);
    this.opened = new Promise((resolve, reject) => { this.ws.on('open', resolve); this.ws.on('error', reject); });
    this.closed = new Promise((resolve) => this.ws.on('close', (code) => resolve(code)));
    this.ws.on('message', (data) => {
      const batch = JSON.parse(data.toString()); // listenMessageCallback gets the array
      assert.ok(Array.isArray(batch), 'every frame is a JSON array');
      if (batch.length === 0) this.heartbeats++;
      this.messages.push(...batch);
      this.waiters = this.waiters.filter((w) => !w());
    });
  }
  // wait resolves with the first message matching fn.
  wait(what, fn) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for ' + what + ': ' + JSON.stringify(this.messages))), 5000);
      const check = () => {
        const m = this.messages.find(fn);
        if (m) { clearTimeout(timer); resolve(m); return true; }
        return false;
      };
      if (!check()) this.waiters.push(check);
    });
  }
}

test('two users over WebSocket: presence, messages, heartbeats, subscribe, state, edit, delete, disconnect', async () => {
  // connect() through the app: {"username", "channels"} (+ the app's additions).
  const a = await app('POST', '/connect', {
    username: 'alice', channels: ['room'],
    channel_configs: { room: { notify_presence: true, notify_state: true, store_history: true } },
    user_state: { status: 'online' }, state_public_keys: ['status'],
  });
  assert.ok(a.conn_id && Array.isArray(a.channels), 'connect answers conn_id and channels');
  const alice = new Tab(a.conn_id);
  await alice.opened;
  alice.ws.send(JSON.stringify({ type: 'heartbeat' })); // the client's 10-s heartbeat

  const b = await app('POST', '/connect', { username: 'bob', channels: ['room'], state_public_keys: ['status'] });
  const bob = new Tab(b.conn_id);
  await bob.opened;

  const joined = await alice.wait('joined', (m) => m.type === 'presence' && m.message.action === 'joined' && m.user === 'bob');
  assert.equal(joined.channel, 'room');

  // message(m): the app posts it to /message.
  const [sent] = await app('POST', '/message', [{ user: 'alice', channel: 'room', message: { text: 'hello' } }]);
  for (const tab of [alice, bob]) {
    const m = await tab.wait('hello', (m) => m.type === 'message' && m.uuid === sent.uuid);
    assert.deepEqual(m.message, { text: 'hello' });
    assert.equal(m.catchup, false);
    assert.equal(m.pm_users, undefined);
  }
  // Heartbeats reach listenMessageCallback as [].
  await new Promise((r) => setTimeout(r, 1200));
  assert.ok(bob.heartbeats >= 1, 'bob got a [] heartbeat');

  // subscribe(['news']): {"channels", "conn_id"}; the client keeps data.channels.
  const sub = await app('POST', '/subscribe', { channels: ['news'], conn_id: b.conn_id });
  assert.deepEqual(sub.channels, ['news', 'room']);
  assert.deepEqual(sub.subscribed_to, ['news']);
  // unsubscribe
  const unsub = await app('POST', '/unsubscribe', { channels: ['news'], conn_id: b.conn_id });
  assert.deepEqual(unsub.channels, ['room']);

  // updateUserState(obj): {"username", "conn_id", "update_state"}, which
  // the app maps to /user_state {user, user_state}.
  const fromClient = { username: 'bob', conn_id: b.conn_id, update_state: { status: 'busy' } };
  const st = await app('POST', '/user_state', { user: fromClient.username, user_state: fromClient.update_state });
  assert.deepEqual(st.changed_state, [{ key: 'status', value: 'busy' }]);
  const change = await alice.wait('state change', (m) => m.type === 'user_state_change' && m.user === 'bob');
  assert.deepEqual(change.message.state, { status: 'busy' });

  // edit(m) and delete(m): PATCH and DELETE /message.
  await app('PATCH', '/message', [{ uuid: sent.uuid, channel: 'room', message: { text: 'hello (edited)' } }]);
  const edit = await bob.wait('edit', (m) => m.type === 'message:edit');
  assert.deepEqual(edit.message, { text: 'hello (edited)' });
  await app('DELETE', '/message', [{ uuid: sent.uuid, channel: 'room' }]);
  const del = await bob.wait('delete', (m) => m.type === 'message:delete');
  assert.deepEqual(del, { type: 'message:delete', uuid: sent.uuid, channel: 'room' });

  // disconnect(): the browser POSTs JSON straight to /disconnect (a
  // preflighted CORS request) with ?conn_id=.
  const pre = await fetch(BASE + '/disconnect?conn_id=' + b.conn_id, {
    method: 'OPTIONS', headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.equal(pre.status, 200);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-headers'), /Content-Type/);
  const dis = await fetch(BASE + '/disconnect?conn_id=' + b.conn_id, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'http://app.example' }, body: JSON.stringify({ conn_id: b.conn_id }),
  });
  assert.equal(await dis.json(), true);
  bob.ws.close(); // closeConnection()
  const parted = await alice.wait('parted', (m) => m.type === 'presence' && m.message.action === 'parted');
  assert.equal(parted.user, 'bob');
  await bob.closed;

  // History comes with connect's channels_info (the demo renders it).
  const again = await app('POST', '/connect', { username: 'carol', channels: ['room'] });
  assert.equal(again.channels_info.channels.room.history.length, 0, 'the deleted message left history');
  alice.ws.close();
  assert.equal(await alice.closed, 1005); // a close without a code, answered without one (never 1005 on the wire)
});

test('long-poll variant: /listen with catch-up, messages, and 401 once the connection is gone', async () => {
  const c = await app('POST', '/connect', { username: 'poller', channels: ['lp'] });
  await app('POST', '/message', [{ user: 'x', channel: 'lp', message: { n: 1 } }]);
  // The client re-polls at once after each answer.
  let res = await fetch(BASE + '/listen?conn_id=' + c.conn_id);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  let batch = await res.json();
  assert.equal(batch.length, 1);
  assert.equal(batch[0].catchup, true, 'what arrived before the first poll is catch-up');
  const poll = fetch(BASE + '/listen?conn_id=' + c.conn_id).then((r) => r.json());
  await new Promise((r) => setTimeout(r, 100));
  await app('POST', '/message', [{ user: 'x', channel: 'lp', message: { n: 2 } }]);
  batch = await poll;
  assert.equal(batch.length, 1);
  assert.deepEqual(batch[0].message, { n: 2 });
  assert.equal(batch[0].catchup, false);
  // Idle: [] after the heartbeat interval.
  batch = await (await fetch(BASE + '/listen?conn_id=' + c.conn_id)).json();
  assert.deepEqual(batch, []);
  await fetch(BASE + '/disconnect?conn_id=' + c.conn_id);
  res = await fetch(BASE + '/listen?conn_id=' + c.conn_id);
  assert.equal(res.status, 401, 'an unknown conn_id is 401: the client stops polling');
});

test('a socket for an unknown conn_id is closed (the client then connects again)', async () => {
  const tab = new Tab(crypto.randomUUID());
  assert.equal(await tab.closed, 1000);
});
