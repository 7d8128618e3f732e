// The @channels-binding/core Consumer's flows (specs/bindings-signals.md
// §A.10) against a real Switchyard, through the imitation in consumer.js.
// The Go test TestBindingNodeClient starts the server with a binding for
// app.User (users 1..102 seeded, the admin last) and sets the variables.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { registerConsumer, registry } = require('./consumer');

const WS_URL = process.env.SWITCHYARD_URL; // ws://…/live/binding
const HTTP = process.env.SWITCHYARD_HTTP;
const API_KEY = process.env.SWITCHYARD_API_KEY;
const TOKEN_ALICE = process.env.TOKEN_ALICE;
const TOKEN_BOB = process.env.TOKEN_BOB;

after(() => { for (const c of Object.values(registry)) c.close(); });

// The hooks address events as "<consumer>:<stream>.<action>[#hash]"; the
// consumer prefix is the client's own and is stripped before sending
// (bindings/bind.js).
function address(spec) {
  const i = spec.indexOf(':');
  return { consumer: registry[spec.slice(0, i)], event: spec.slice(i + 1) };
}

// next resolves with the data of the next dispatch of event.
function next(consumer, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ' + event + ' within ' + ms + 'ms; errors: ' + JSON.stringify(consumer.errors))), ms);
    consumer.once(event, (data) => { clearTimeout(timer); resolve(data); });
  });
}

// request is useBind: listen on the event, then send it.
function request(spec, data = {}) {
  const { consumer, event } = address(spec);
  const p = next(consumer, event);
  consumer.send(event, data);
  return p;
}

async function server(method, body) {
  const res = await fetch(HTTP + '/api/server/' + method, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'apikey ' + API_KEY },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, method + ': ' + text);
  return JSON.parse(text);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('calls made before the socket opens wait in pending_calls (the last data per event) and are flushed on open', async () => {
  const back = registerConsumer('back1', { path: WS_URL, params: { token: TOKEN_ALICE } });
  const listA = [];
  back.addListener('app.User.search#listA', (d) => listA.push(d));
  const retrieved = next(back, 'app.User.retrieve#1');
  back.send('app.User.retrieve#1', {}); // opens the socket
  back.send('app.User.search#listA', { page: 1 });
  back.send('app.User.search#listA', { page: 2 }); // replaces page 1
  assert.deepEqual(Object.keys(back.pending_calls).sort(), ['app.User.retrieve#1', 'app.User.search#listA']);
  assert.deepEqual((await retrieved), { id: 1, username: 'user1', email: 'user1@example.com' });
  while (listA.length === 0) await sleep(10);
  await request('back1:app.User.retrieve#2'); // a barrier: everything before it has arrived
  assert.equal(listA.length, 1, 'one reply for the one search sent');
  assert.equal(listA[0].page, 2);
  assert.equal(listA[0].rows[0].id, 26);
  assert.deepEqual(back.pending_calls, {});
});

test('hashed events: two components searching at once each get their own reply', async () => {
  const [a, b] = await Promise.all([
    request('back1:app.User.search#listA', { page: 1, limit: 10 }),
    request('back1:app.User.search#listB', { page: 3, limit: 10 }),
  ]);
  assert.equal(a.page, 1);
  assert.equal(a.rows[0].id, 1);
  assert.equal(b.page, 3);
  assert.equal(b.rows[0].id, 21);
  assert.equal(a.limit, 10);
  assert.equal(a.count, 102);
});

test('usePassiveBind on updated#pk, intercepted by a retrieve, sees another consumer\'s save (useSave)', async () => {
  const back = registry.back1;
  const other = registerConsumer('back2', { path: WS_URL, params: { token: TOKEN_BOB } });
  // The sample's UserDetails: usePassiveBind({event: 'back1:app.User.updated#'+id, intercept: retrieve.dispatch}).
  const fresh = new Promise((resolve) => {
    back.once('app.User.updated#5', () => resolve(request('back1:app.User.retrieve#5')));
  });
  // useSave: {...data, id} on <stream>.save; the reply's id is kept.
  const user = await request('back2:app.User.retrieve#5');
  const saved = await request('back2:app.User.save', { ...user, username: 'renamed', id: user.id });
  assert.deepEqual(saved, { success: true, id: 5 });
  assert.deepEqual(await fresh, { id: 5, username: 'renamed', email: 'user5@example.com' });
  // A save that fails validation answers {errors}.
  const bad = await request('back2:app.User.save', { id: 5, username: '' });
  assert.deepEqual(bad, { errors: { username: ['This field may not be blank.'] } });
  // A save without id creates.
  const created = await request('back2:app.User.save', { username: 'newcomer' });
  assert.equal(created.success, true);
  assert.equal(typeof created.id, 'number');
});

test('useDelete: the reply\'s id is the deleted pk; the other consumer hears deleted#pk', async () => {
  const gone = next(registry.back1, 'app.User.deleted#9');
  const reply = await request('back2:app.User.delete', { id: 9 });
  assert.deepEqual(reply, { success: true, id: 9 });
  assert.equal(await gone, true);
});

test('useForm: describe, submit with errors, submit', async () => {
  const form = await request('back2:app.User.form#6');
  assert.equal(form.success, null);
  assert.equal(form.errors, null);
  assert.deepEqual(form.fields.map((f) => [f.name, f.type, f.value]), [['username', 'CharField', 'user6'], ['email', 'CharField', 'user6@example.com']]);
  const bad = await request('back2:app.User.form#6', { submit: { username: '' } });
  assert.equal(bad.success, false);
  assert.deepEqual(bad.errors, { username: ['This field may not be blank.'] });
  const ok = await request('back2:app.User.form#6', { submit: { username: 'six' } });
  assert.equal(ok.success, true);
  assert.equal(ok.object.username, 'six');
  assert.equal(ok.id, 6);
  // A form without a pk creates.
  const created = await request('back2:app.User.form', { submit: { username: 'via form' } });
  assert.equal(created.success, true);
  assert.equal(created.object.username, 'via form');
});

test('error frames reach no listener', async () => {
  const back = registry.back1;
  let called = false;
  back.addListener('app.User.retrieve#999999', () => { called = true; });
  back.send('app.User.retrieve#999999', {});
  back.send('app.Nope.retrieve', {});
  await request('back1:app.User.retrieve#1'); // a barrier
  assert.equal(called, false);
  const events = back.errors.map((e) => e.event);
  assert.ok(events.includes('app.User.retrieve#999999') && events.includes('app.Nope.retrieve'), JSON.stringify(back.errors));
  assert.match(back.errors.find((e) => e.event === 'app.Nope.retrieve').error, /^No binding found for app\.Nope\.retrieve$/);
});

test('server push: binding_send to the user reaches each of its consumers', async () => {
  const got = next(registry.back1, 'app.User.notify#1');
  await server('binding_send', { event: 'notify', stream: 'app.User', uid: '1', data: { n: 1 }, user: 'alice' });
  assert.deepEqual(await got, { n: 1 });
});

test('reconnect: the server drops the socket, the client comes back after ~1s and flushes what was sent meanwhile', async () => {
  const back = registry.back1;
  const opens = back.socket.opens;
  const closes = back.closes.length;
  await server('disconnect', { user: 'alice' });
  while (back.closes.length === closes) await sleep(10);
  const dropped = Date.now();
  assert.equal(back.closes[back.closes.length - 1], 4003);
  const reply = next(back, 'app.User.retrieve#3');
  back.send('app.User.retrieve#3', {}); // kept in pending_calls until the socket is back
  assert.ok('app.User.retrieve#3' in back.pending_calls);
  assert.equal((await reply).id, 3);
  assert.equal(back.socket.opens, opens + 1);
  assert.ok(Date.now() - dropped >= 900, 'the first reconnect waits reconnectInterval (1000 ms)');
  // The new connection joined app.User again with that request: it hears changes.
  const changed = next(back, 'app.User.updated#3');
  await request('back2:app.User.save', { id: 3, username: 'three' });
  assert.equal(await changed, true);
});
