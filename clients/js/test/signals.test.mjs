// Signals ($signals): call → 202 {job_id} or 200 result; pushes.
import test from 'node:test';
import assert from 'node:assert/strict';
import { open, api, token, eventually, unique } from './helpers.mjs';

test('signals: a push reaches on(name), an unknown signal is a typed 404', async (t) => {
  const user = unique('sig');
  const sy = await open(t, { token: token(user) });
  const got = [];
  const off = sy.onSignal('client_test.ping', (kwargs, msg) => got.push([kwargs, msg.signal_id]));
  const any = [];
  sy.signals.on('*', (kwargs, msg) => any.push(msg.signal));
  await api('trigger', { signal: 'client_test.ping', to: { users: [user] }, kwargs: { n: 1 } });
  await eventually(() => assert.equal(got.length, 1), 'the push');
  assert.deepEqual(got[0][0], { n: 1 });
  assert.ok(got[0][1], 'a signal_id');
  assert.deepEqual(any, ['client_test.ping']);
  off();
  await api('trigger', { signal: 'client_test.ping', to: { users: [user] }, kwargs: { n: 2 } });
  await eventually(() => assert.equal(any.length, 2), 'the second push');
  assert.equal(got.length, 1, 'no call after off');
  await assert.rejects(sy.call('client_test.nope', {}), (e) => e.code === 'not_found' && e.status === 404);
});

test('signals: a sync call answers its result; a queued one its job, and its handler signals back', async (t) => {
  const sy = await open(t);
  const sync = await sy.call('client_test.echo', { n: 2 });
  assert.deepEqual(sync.result, { echo: { n: 2 } });
  const pongs = [];
  sy.signals.on('client_test.pong', (kwargs) => pongs.push(kwargs));
  const queued = await sy.signals.call('client_test.ping_me', { n: 3 });
  assert.ok(queued.job_id > 0, JSON.stringify(queued));
  await eventually(() => assert.deepEqual(pongs, [{ n: 3 }]), "the handler's reply");
  // Bad arguments are a typed 400; the socket stays open.
  await assert.rejects(sy.call('client_test.echo', 'not an object'), (e) => e.code === 'bad_request');
  assert.equal(sy.state, 'connected');
});
