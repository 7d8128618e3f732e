// The connection: state events, reconnection with jittered exponential
// backoff, token refresh through getToken, expiry, request timeouts and
// pending requests rejected when the socket closes.
import test from 'node:test';
import assert from 'node:assert/strict';
import { connect, createClient, SwitchyardError } from '../dist/index.js';
import { URL, WebSocket, open, token, ctl, eventually, within, until, fakeServer } from './helpers.mjs';

test('state events: connecting, connected, disconnected, and again after a reconnect', async (t) => {
  const states = [];
  const sy = createClient(URL, { WebSocket, reconnect: { minDelay: 20, maxDelay: 50 } });
  t.after(() => sy.close());
  sy.on('state', (s) => states.push(s));
  const connected = [];
  sy.on('connected', (info) => connected.push(info));
  const disconnected = [];
  sy.on('disconnected', (info) => disconnected.push(info));
  sy.initialize();
  await until(sy, 'connected');
  assert.ok(sy.clientId, 'the server gave a client id');
  await ctl('down');
  await until(sy, 'disconnected');
  await ctl('up');
  await until(sy, 'connected');
  assert.deepEqual(states.slice(0, 4), ['connecting', 'connected', 'disconnected', 'connecting']);
  assert.equal(states.at(-1), 'connected');
  assert.equal(connected.length, 2);
  assert.notEqual(connected[0].client_id, connected[1].client_id);
  assert.equal(disconnected[0].reconnect, true);
  await sy.close();
  assert.equal(sy.state, 'disconnected');
  assert.equal(sy.closed, true);
});

test('reconnection backs off exponentially with jitter, capped, and resets after connecting', async (t) => {
  await ctl('down');
  t.after(() => ctl('up'));
  const attempts = [];
  const sy = createClient(URL, { WebSocket, reconnect: { minDelay: 40, maxDelay: 320, factor: 2, jitter: 0.5 } });
  t.after(() => sy.close());
  sy.on('state', (s) => s === 'connecting' && attempts.push(Date.now()));
  sy.initialize();
  await eventually(() => assert.ok(attempts.length >= 7), 'seven attempts', 10000);
  const gaps = attempts.slice(1, 7).map((a, i) => a - attempts[i]);
  // Retry n waits min(320, 40·2ⁿ)·(1 − 0.5·random): within [half, all] of it (plus timer slack).
  gaps.forEach((gap, n) => {
    const base = Math.min(320, 40 * 2 ** n);
    assert.ok(gap >= base / 2 - 5 && gap <= base + 60, `retry ${n}: waited ${gap} ms, want ${base / 2}..${base}`);
  });
  await ctl('up');
  await until(sy, 'connected', 5000);
});

test('the token is refreshed through getToken before it expires, and the connection outlives it', async (t) => {
  const issued = [];
  const getToken = () => {
    const tok = token('refresher', 3);
    issued.push(tok);
    return tok;
  };
  const sy = await open(t, { getToken, refreshBefore: 30000 });
  const closes = [];
  sy.on('disconnected', (i) => closes.push(i.code));
  // The first token lives 3 s; the client refreshes at half its life.
  await eventually(() => assert.ok(issued.length >= 2), 'a refresh', 5000);
  const exp = JSON.parse(Buffer.from(issued[0].split('.')[1], 'base64url').toString()).exp * 1000;
  await eventually(() => assert.ok(Date.now() > exp + 1500), 'past the first expiry', 6000);
  assert.deepEqual(closes, [], 'not closed at the first token\'s expiry');
  assert.equal(sy.state, 'connected');
  assert.equal(sy.user, 'refresher');
});

test('without getToken an expired token ends the connection (4001) for good', async (t) => {
  const sy = await open(t, { token: token('short', 1) });
  const info = await within(5000, new Promise((r) => sy.on('disconnected', r)), 'the 4001 close');
  assert.equal(info.code, 4001);
  assert.equal(info.reconnect, false);
});

test('a refresh for another user is refused (403) and reported', async (t) => {
  let n = 0;
  const sy = await open(t, { getToken: () => token(n++ === 0 ? 'first' : 'someone-else', 3600) });
  const reported = within(2000, new Promise((r) => sy.on('error', r)), 'the error event');
  await sy.refresh();
  const err = await reported;
  // refresh() reports through the error event (it does not reject on the server's refusal).
  assert.ok(err instanceof SwitchyardError && err.code === 'forbidden', `got ${err}`);
  assert.equal(sy.state, 'connected', 'the connection lives on with its current token');
});

test('a request without reply times out; one in flight when the socket closes rejects with disconnected; close rejects the rest', async (t) => {
  const fake = await fakeServer(t); // answers nothing
  const sy = connect(fake.url, { WebSocket, requestTimeout: 150, reconnect: { minDelay: 20, maxDelay: 40 } });
  t.after(() => sy.close());
  await until(sy, 'connected');
  await assert.rejects(sy.retrieve('things', 1), (e) => e instanceof SwitchyardError && e.code === 'timeout');
  const inFlight = sy.request('things', { action: 'list' }, undefined, { timeout: 5000 });
  await eventually(() => assert.equal(fake.sockets.length, 1), 'the socket');
  fake.sockets[0].terminate();
  await assert.rejects(inFlight, (e) => e.code === 'disconnected');
  await until(sy, 'connected');
  const pending = assert.rejects(sy.request('things', { action: 'list' }, undefined, { timeout: 5000 }), (e) => e.code === 'closed');
  await sy.close();
  await pending;
  await assert.rejects(sy.list('things'), (e) => e.code === 'closed');
});

test('connect without a WebSocket says what to pass', () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => connect(URL), /pass \{WebSocket\}/);
  } finally {
    globalThis.WebSocket = saved;
  }
});
