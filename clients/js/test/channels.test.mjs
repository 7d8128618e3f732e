// Channels against a real server: subscribe, publish, presence, join/leave,
// history; recovery after a connection loss (the missed messages, once each,
// in order); a server restart (the gap is reported, the subscription goes
// on); server-side subscriptions.
import test from 'node:test';
import assert from 'node:assert/strict';
import { open, token, ctl, api, direct, eventually, unique, until } from './helpers.mjs';

test('subscribe, publish, presence, join/leave, history', async (t) => {
  const alice = await open(t, { token: token('alice') });
  const bob = await open(t, { token: token('bob') });
  const channel = `chat:${unique('room')}`;
  const got = [];
  const joins = [];
  const sub = alice.channel(channel, { onMessage: (data, pub) => got.push([data, pub.info?.user]), onJoin: (i) => joins.push(i.user), onLeave: (i) => joins.push('-' + i.user) });
  const info = await sub.ready;
  assert.equal(info.channel, channel);
  assert.equal(sub.state, 'subscribed');
  const bsub = bob.channel(channel);
  await bsub.ready;
  await eventually(() => assert.deepEqual(joins, ['alice', 'bob']), 'joins');
  const presence = await alice.presence(channel);
  assert.deepEqual(presence.map((c) => c.user).sort(), ['alice', 'bob']);
  const pos = await bsub.publish({ text: 'hi' });
  assert.ok(pos.offset > 0 && pos.epoch);
  await api('publish', { channel, data: { text: 'from the server' } });
  await eventually(() => assert.deepEqual(got, [[{ text: 'hi' }, 'bob'], [{ text: 'from the server' }, undefined]]), 'messages');
  assert.deepEqual(sub.position(), { offset: pos.offset + 1, epoch: pos.epoch });
  const hist = await alice.history(channel, { limit: 10 });
  assert.deepEqual(hist.publications.map((p) => p.data.text), ['hi', 'from the server']);
  await bsub.unsubscribe();
  await eventually(() => assert.deepEqual(joins, ['alice', 'bob', '-bob']), 'leave');
  // Errors: a closed namespace, an unknown one, publishing where it is refused.
  await assert.rejects(alice.channel('closed:x').ready, (e) => e.code === 'forbidden');
  await assert.rejects(alice.channel('nowhere:x').ready, (e) => e.code === 'not_found');
  await assert.rejects(alice.publish('closed:x', 1), (e) => e.code === 'forbidden');
  assert.throws(() => alice.channel(channel), /already subscribed/);
});

test('recovery after a connection loss: the missed messages arrive once each, in order, then live ones', async (t) => {
  const sy = await open(t);
  const channel = `chat:${unique('recover')}`;
  const got = [];
  const gaps = [];
  const subscribed = [];
  const sub = sy.channel(channel, { onMessage: (d) => got.push(d), onGap: (g) => gaps.push(g), onSubscribed: (i) => subscribed.push(i) });
  await sub.ready;
  await api('publish', { channel, data: 1 });
  await eventually(() => assert.deepEqual(got, [1]), 'first message');
  await ctl('down');
  await until(sy, 'disconnected');
  const base = await direct();
  for (const n of [2, 3, 4]) await api('publish', { channel, data: n }, base);
  await ctl('up');
  await until(sy, 'connected');
  await eventually(() => assert.equal(subscribed.length, 2), 'resubscribed');
  await api('publish', { channel, data: 5 });
  await eventually(() => assert.deepEqual(got, [1, 2, 3, 4, 5]), 'the missed messages then the live one');
  assert.deepEqual(gaps, []);
  assert.equal(subscribed[1].recovered, true);
  assert.equal(subscribed[1].resubscribed, true);
});

test('a server restart in the middle of a subscription: the gap is reported, the subscription goes on, history reloads', async (t) => {
  const sy = await open(t);
  const channel = `chat:${unique('restart')}`;
  const got = [];
  const gaps = [];
  const sub = sy.channel(channel, { onMessage: (d) => got.push(d), onGap: (g) => gaps.push(g) });
  await sub.ready;
  await api('publish', { channel, data: 'before' });
  await eventually(() => assert.deepEqual(got, ['before']), 'before the restart');
  // The in-memory broker's history does not survive a restart: the client
  // cannot recover, and must be told so (never a silent gap).
  const { direct: base } = await ctl('restart');
  await api('publish', { channel, data: 'while away' }, base);
  await ctl('up');
  await eventually(() => assert.equal(gaps.length, 1), 'the gap');
  assert.equal(gaps[0].since.offset, 1);
  assert.notEqual(gaps[0].position.epoch, gaps[0].since.epoch);
  // What onGap tells the application to do: reload, here from history.
  const hist = await sy.history(channel);
  assert.deepEqual(hist.publications.map((p) => p.data), ['while away']);
  await api('publish', { channel, data: 'after' });
  await eventually(() => assert.deepEqual(got, ['before', 'after']), 'live after the restart');
  assert.deepEqual(sub.position(), { offset: 2, epoch: gaps[0].position.epoch });
});

test('since: a subscription resumes from a saved position', async (t) => {
  const sy = await open(t);
  const channel = `chat:${unique('since')}`;
  const first = await api('publish', { channel, data: 'a' });
  await api('publish', { channel, data: 'b' });
  await api('publish', { channel, data: 'c' });
  const got = [];
  const sub = sy.channel(channel, { since: { offset: first.offset, epoch: first.epoch }, onMessage: (d) => got.push(d) });
  const info = await sub.ready;
  assert.equal(info.recovered, true);
  assert.deepEqual(got, ['b', 'c']);
});

test('a channel without history: messages flow, no recovery is promised', async (t) => {
  const sy = await open(t);
  const channel = `news:${unique('flash')}`;
  const got = [];
  const sub = sy.channel(channel, { onMessage: (d) => got.push(d) });
  const info = await sub.ready;
  assert.deepEqual([info.offset, info.epoch], [0, '']);
  await sy.publish(channel, 'one');
  await eventually(() => assert.deepEqual(got, ['one']), 'the message');
});

test('server-side subscriptions arrive as subscribed events and their messages as message events', async (t) => {
  const user = unique('u');
  const sy = await open(t, { token: token(user) });
  const channel = `chat:${unique('server-side')}`;
  const subscribed = [];
  const messages = [];
  sy.on('subscribed', (ch) => subscribed.push(ch));
  sy.on('message', (ch, pub) => messages.push([ch, pub.data]));
  await api('subscribe', { user, channel });
  await eventually(() => assert.deepEqual(subscribed, [channel]), 'subscribed');
  await api('publish', { channel, data: 'pushed' });
  await eventually(() => assert.deepEqual(messages, [[channel, 'pushed']]), 'the message');
});

test('history reverse (newest first)', async (t) => {
  const sy = await open(t);
  const channel = `chat:${unique('reverse')}`;
  for (const n of [1, 2, 3]) await api('publish', { channel, data: n });
  const h = await sy.history(channel, { limit: 2, reverse: true });
  assert.deepEqual(h.publications.map((p) => p.data), [3, 2]);
  const forward = await sy.history(channel, { limit: 2 });
  assert.deepEqual(forward.publications.map((p) => p.data), [1, 2]);
});
