// Resources through @switchyard/client against a real server: CRUD, typed
// errors, owners, and instance subscriptions that catch up after a
// reconnect.
import test from 'node:test';
import assert from 'node:assert/strict';
import { SwitchyardError } from '../dist/index.js';
import { open, token, ctl, direct, rest, eventually, within, unique, until } from './helpers.mjs';

test('a resource handle: create, retrieve, list with filter/ordering/paging, update, patch, delete', async (t) => {
  const sy = await open(t, { token: token('alice') });
  const todos = sy.resource('todos');
  const list = unique('l');
  const a = await todos.create({ title: 'a', rank: 2, list });
  const b = await todos.create({ title: 'b', rank: 1, list });
  assert.equal(a.owner, 'alice', 'the server fills the owner');
  assert.deepEqual(await todos.retrieve(a.id), a);
  assert.deepEqual((await todos.list({ filter: { list }, ordering: 'rank' })).map((r) => r.title), ['b', 'a']);
  assert.deepEqual((await todos.list({ filter: { list }, ordering: '-rank', limit: 1 })).map((r) => r.title), ['a']);
  assert.equal((await todos.update(a.id, { title: 'a2', done: true, rank: 2, list })).title, 'a2');
  assert.equal((await todos.patch(b.id, { done: true })).done, true);
  assert.equal(await todos.delete(b.id), null);
  await assert.rejects(todos.retrieve(b.id), (e) => e instanceof SwitchyardError && e.code === 'not_found' && e.status === 404);
});

test('typed errors: code, status, fields; the DCRF keys for dcrf-client code', async (t) => {
  const anon = await open(t);
  const bob = await open(t, { token: token('bob') });
  const alice = await open(t, { token: token('alice') });
  // 400 with field errors.
  const bad = await alice.create('todos', { rank: 'x' }).catch((e) => e);
  assert.ok(bad instanceof SwitchyardError && bad instanceof Error);
  assert.equal(bad.code, 'bad_request');
  assert.equal(bad.status, 400);
  assert.deepEqual(Object.keys(bad.fields).sort(), ['rank', 'title']);
  assert.equal(bad.response_status, 400);
  assert.ok(Array.isArray(bad.errors) && bad.errors[0].title);
  // 403: an anonymous create where authenticated is needed.
  await assert.rejects(anon.create('todos', { title: 'x' }), (e) => e.code === 'forbidden' && e.status === 403);
  // An owner field is read-only for clients.
  await assert.rejects(alice.create('todos', { title: 'x', owner: 'bob' }), (e) => e.code === 'bad_request' && Boolean(e.fields.owner));
  // 404: alice's record does not exist for bob — and bob must not change it.
  const mine = await alice.create('todos', { title: 'mine' });
  await assert.rejects(bob.retrieve('todos', mine.id), (e) => e.code === 'not_found');
  await assert.rejects(bob.patch('todos', mine.id, { title: 'stolen' }), (e) => e.code === 'not_found');
  assert.equal((await alice.retrieve('todos', mine.id)).title, 'mine');
  // 404: an unknown stream; 405: an unknown action.
  await assert.rejects(alice.request('nope', { action: 'list' }), (e) => e.code === 'not_found' && /unknown stream/.test(e.message));
  await assert.rejects(alice.request('todos', { action: 'explode' }), (e) => e.code === 'method_not_allowed' && e.status === 405);
});

test('an instance subscription catches up after a reconnect: missed changes once each, in order', async (t) => {
  const sy = await open(t);
  const thing = await sy.create('things', { name: 'v0' });
  const seen = [];
  await sy.subscribe('things', thing.pk, (data, action) => seen.push([action, data.name ?? data.pk]));
  await sy.patch('things', thing.pk, { name: 'v1' });
  await eventually(() => assert.deepEqual(seen, [['update', 'v1']]), 'the live update');

  await ctl('down');
  await until(sy, 'disconnected');
  // While the client is away, the application writes twice.
  await rest('PATCH', `things/${thing.pk}/`, { name: 'v2' }, await direct());
  await rest('PATCH', `things/${thing.pk}/`, { name: 'v3' }, await direct());
  await ctl('up');
  await until(sy, 'connected');
  await eventually(() => assert.deepEqual(seen, [['update', 'v1'], ['update', 'v2'], ['update', 'v3']]), 'the catch-up');
  // Live again, and nothing twice.
  await sy.delete('things', thing.pk);
  await eventually(() => assert.deepEqual(seen.at(-1), ['delete', thing.pk]), 'the live delete');
  assert.equal(seen.length, 4);
});

test('a subscription to another user\'s record is refused, and its changes never arrive', async (t) => {
  const alice = await open(t, { token: token('alice') });
  const bob = await open(t, { token: token('bob') });
  const rec = await alice.create('todos', { title: 'private' });
  await assert.rejects(bob.subscribe('todos', rec.id, () => assert.fail('bob got an event')), (e) => e.code === 'not_found');
  const got = [];
  await alice.subscribe('todos', rec.id, (d, a) => got.push(a));
  await alice.patch('todos', rec.id, { title: 'still private' });
  await eventually(() => assert.equal(got.length, 1), 'alice hears her change');
});

test('subscription.cancel stops the events and unsubscribes on the server', async (t) => {
  const sy = await open(t);
  const thing = await sy.create('things', { name: 'c' });
  const got = [];
  const sub = sy.subscribe('things', thing.pk, (d) => got.push(d.name));
  await sub;
  assert.equal(await sub.cancel(), true);
  await sy.patch('things', thing.pk, { name: 'after cancel' });
  // A second subscription on the same record sees the change: the first one, cancelled, must not.
  const second = [];
  await sy.subscribe('things', thing.pk, (d) => second.push(d.name));
  await sy.patch('things', thing.pk, { name: 'again' });
  await eventually(() => assert.deepEqual(second, ['again']), 'the second subscription');
  assert.deepEqual(got, []);
});

test('requests made while disconnected are queued and sent on reconnect; timeouts reject them', async (t) => {
  const sy = await open(t, { requestTimeout: 3000 });
  await ctl('down');
  await until(sy, 'disconnected');
  const queued = sy.create('things', { name: 'queued while down' });
  const late = sy.request('things', { action: 'list' }, undefined, { timeout: 100 });
  await assert.rejects(late, (e) => e.code === 'timeout' && e.status === 0);
  await ctl('up');
  assert.equal((await within(3000, queued, 'the queued create')).name, 'queued while down');
});
