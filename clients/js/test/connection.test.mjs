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
  // Each retry's delay as chosen (the reconnecting event), and as waited:
  // from the failure (disconnected) to the next attempt (connecting).
  const chosen = [];
  const waited = [];
  let failedAt = 0;
  const sy = createClient(URL, { WebSocket, reconnect: { minDelay: 40, maxDelay: 320, factor: 2, jitter: 0.5 } });
  t.after(() => sy.close());
  sy.on('reconnecting', (r) => chosen.push(r));
  sy.on('state', (s) => {
    if (s === 'disconnected') failedAt = performance.now();
    if (s === 'connecting' && failedAt) waited.push(performance.now() - failedAt);
  });
  sy.initialize();
  await eventually(() => assert.ok(waited.length >= 6), 'six retries', 10000);
  // Retry n waits min(320, 40·2ⁿ)·(1 − 0.5·random): between half of it and all of it.
  chosen.slice(0, 6).forEach(({ attempt, delay }, n) => {
    const base = Math.min(320, 40 * 2 ** n);
    assert.equal(attempt, n + 1);
    assert.ok(delay >= base / 2 && delay <= base, `retry ${n}: chose ${delay.toFixed(1)} ms, want ${base / 2}..${base}`);
    assert.ok(waited[n] >= delay - 2, `retry ${n}: waited ${waited[n].toFixed(1)} ms, less than the ${delay.toFixed(1)} chosen`);
  });
  // Jitter: the delays are not the bare exponential sequence.
  assert.ok(chosen.slice(0, 6).some(({ delay }, n) => Math.abs(delay - Math.min(320, 40 * 2 ** n)) > 1), 'some jitter');
  await ctl('up');
  await until(sy, 'connected', 5000);
  // Connected again: the next loss starts over from minDelay.
  const before = chosen.length;
  await ctl('down');
  await eventually(() => assert.ok(chosen.length > before), 'a retry after the next loss', 5000);
  assert.equal(chosen[before].attempt, 1);
  assert.ok(chosen[before].delay <= 40, `first retry after reconnecting: ${chosen[before].delay} ms, want ≤ 40`);
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
