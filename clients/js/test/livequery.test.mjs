// Live queries against a real server: the rows now, then enter/update/leave;
// the useSyncExternalStore contract; owners; and a server restart in the
// middle with nothing lost.
import test from 'node:test';
import assert from 'node:assert/strict';
import { open, token, ctl, rest, eventually, unique, until } from './helpers.mjs';

const titles = (rows) => rows.map((r) => r.title);

test('rows now, then enter, update and leave as rows are created, changed into and out of the filter, deleted', async (t) => {
  const sy = await open(t, { token: token('alice') });
  const todos = sy.resource('todos');
  const list = unique('l');
  const first = await todos.create({ title: 'first', list });
  await todos.create({ title: 'elsewhere', list: list + '-other' });
  const q = sy.liveQuery('todos', { filter: { list, done: false }, ordering: ['rank', 'id'] });
  t.after(() => q.close());
  const events = [];
  q.on('enter', (r) => events.push(['enter', r.title]));
  q.on('update', (r, prev) => events.push(['update', prev.title, r.title]));
  q.on('leave', (r) => events.push(['leave', r.title]));
  assert.deepEqual(titles(await q.ready), ['first']);
  assert.equal(q.status, 'ready');

  const second = await todos.create({ title: 'second', list, rank: 5 });
  const early = await todos.create({ title: 'early', list, rank: 0 });
  await eventually(() => assert.deepEqual(titles(q.getSnapshot()), ['first', 'early', 'second']), 'entered rows, sorted');
  await todos.patch(second.id, { rank: 0 }); // moves before... same rank: ordered by id
  await todos.patch(first.id, { title: 'first!' });
  await todos.patch(early.id, { done: true }); // out of the filter
  await todos.delete(second.id);
  await eventually(() => assert.deepEqual(titles(q.getSnapshot()), ['first!']), 'the rows after the changes');
  assert.deepEqual(events.slice(1), [
    ['enter', 'second'],
    ['enter', 'early'],
    ['update', 'second', 'second'],
    ['update', 'first', 'first!'],
    ['leave', 'early'],
    ['leave', 'second'],
  ]);
  assert.deepEqual(events[0], ['enter', 'first']);
  // A list with the same filter selects the same rows.
  assert.deepEqual(titles(await todos.list({ filter: { list, done: false } })), titles(q.getSnapshot()));
});

test('useSyncExternalStore: getSnapshot is stable between changes, subscribe notifies and unsubscribes', async (t) => {
  const sy = await open(t);
  const name = unique('n');
  const q = sy.liveQuery('things', { filter: { name } });
  t.after(() => q.close());
  await q.ready;
  const s1 = q.getSnapshot();
  assert.equal(q.getSnapshot(), s1, 'same array while nothing changes');
  let calls = 0;
  const unsubscribe = q.subscribe(() => calls++);
  await sy.create('things', { name });
  await eventually(() => assert.equal(q.getSnapshot().length, 1), 'the row');
  const s2 = q.getSnapshot();
  assert.notEqual(s2, s1, 'a new array after a change');
  assert.equal(s1.length, 0, 'the old snapshot is not changed');
  assert.ok(calls >= 1);
  unsubscribe();
  const before = calls;
  await sy.create('things', { name });
  await eventually(() => assert.equal(q.getSnapshot().length, 2), 'the second row');
  assert.equal(calls, before, 'no call after unsubscribe');
  // getSnapshot and subscribe are bound: React calls them unbound.
  const { getSnapshot, subscribe } = q;
  assert.equal(getSnapshot().length, 2);
  subscribe(() => {})();
});

test("a live query never holds another user's rows, in any state", async (t) => {
  const alice = await open(t, { token: token('alice') });
  const bob = await open(t, { token: token('bob') });
  const list = unique('shared-list');
  const q = bob.liveQuery('todos', { filter: { list } });
  t.after(() => q.close());
  await q.ready;
  const rec = await alice.create('todos', { title: 'alice only', list });
  await alice.patch('todos', rec.id, { title: 'changed' });
  const own = await bob.create('todos', { title: 'bob', list });
  await eventually(() => assert.deepEqual(titles(q.getSnapshot()), ['bob']), "bob's own row");
  await alice.delete('todos', rec.id);
  await bob.delete('todos', own.id);
  await eventually(() => assert.deepEqual(q.getSnapshot(), []), 'empty again');
  // Anonymous: refused.
  const anon = await open(t);
  const refused = anon.liveQuery('todos');
  await assert.rejects(refused.ready, (e) => e.code === 'forbidden');
  assert.equal(refused.status, 'error');
  // A filter on an undeclared field: 400 naming it.
  const badFilter = bob.liveQuery('todos', { filter: { nope: 1 } });
  await assert.rejects(badFilter.ready, (e) => e.code === 'bad_request' && /nope/.test(e.message));
});

test('a server restart in the middle of a live query: the rows written meanwhile arrive, nothing is lost or doubled', async (t) => {
  const sy = await open(t, { token: token('carol') });
  const todos = sy.resource('todos');
  const list = unique('restart');
  const keep = await todos.create({ title: 'keep', list, rank: 1 });
  const change = await todos.create({ title: 'change', list, rank: 2 });
  const finish = await todos.create({ title: 'finish', list, rank: 3 });
  const remove = await todos.create({ title: 'remove', list, rank: 4 });
  const q = sy.liveQuery('todos', { filter: { list, done: false }, ordering: 'rank' });
  t.after(() => q.close());
  await q.ready;
  const events = [];
  q.on('enter', (r) => events.push(['enter', r.title]));
  q.on('update', (r) => events.push(['update', r.title]));
  q.on('leave', (r) => events.push(['leave', r.title]));
  // And an instance subscription, which catches up with `since`.
  const followed = [];
  await todos.subscribe(change.id, (d, action) => followed.push([action, d.title]));

  // The server goes away; a new one starts on the same database, and the
  // application writes before the client is back.
  const { direct } = await ctl('restart');
  await until(sy, 'disconnected');
  await rest('POST', 'todos/', { title: 'new', list, rank: 5, owner: 'carol' }, direct);
  await rest('PATCH', `todos/${change.id}/`, { title: 'changed' }, direct);
  await rest('PATCH', `todos/${finish.id}/`, { done: true }, direct);
  await rest('DELETE', `todos/${remove.id}/`, undefined, direct);
  await rest('POST', 'todos/', { title: 'not carol', list, rank: 6, owner: 'dave' }, direct);
  await ctl('up');
  await until(sy, 'connected');
  await eventually(() => assert.deepEqual(titles(q.getSnapshot()), ['keep', 'changed', 'new']), 'the rows after the restart');
  assert.deepEqual(events.sort(), [['enter', 'new'], ['leave', 'finish'], ['leave', 'remove'], ['update', 'changed']].sort());
  // And live again after the reconnect.
  await todos.patch(keep.id, { title: 'kept' });
  await eventually(() => assert.deepEqual(titles(q.getSnapshot()), ['kept', 'changed', 'new']), 'a live change after the restart');
  assert.equal(events.length, 5);
  await eventually(() => assert.deepEqual(followed, [['update', 'changed']]), 'the instance catch-up after the restart');
});
