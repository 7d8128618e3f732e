// Run only by TestNodeOnCluster (clients/harness_test.go), against a server
// on the Redis broker and the PostgreSQL store: both keep their state
// across a server restart, so a channel subscription recovers what was
// published while the client was away — nothing lost, nothing twice, no
// gap to report. (TestNodeOnCluster also runs the live query and
// resource suites there.)
import test from 'node:test';
import assert from 'node:assert/strict';
import { open, api, ctl, eventually, unique } from './helpers.mjs';

test('a server restart on Redis: the channel subscription recovers, nothing lost or doubled', async (t) => {
  const sy = await open(t);
  const channel = `chat:${unique('restart')}`;
  const got = [];
  const gaps = [];
  const sub = sy.channel(channel, { onMessage: (d) => got.push(d), onGap: (g) => gaps.push(g) });
  await sub.ready;
  await api('publish', { channel, data: 'before' });
  await eventually(() => assert.deepEqual(got, ['before']), 'before the restart');
  const { direct: base } = await ctl('restart');
  await api('publish', { channel, data: 'while away 1' }, base);
  await api('publish', { channel, data: 'while away 2' }, base);
  await ctl('up');
  await eventually(() => assert.deepEqual(got, ['before', 'while away 1', 'while away 2']), 'recovered after the restart');
  await api('publish', { channel, data: 'after' });
  await eventually(() => assert.deepEqual(got, ['before', 'while away 1', 'while away 2', 'after']), 'live after the restart');
  assert.deepEqual(gaps, [], 'no gap: Redis kept the history and its epoch');
  assert.equal(sub.position().offset, 4);
});
