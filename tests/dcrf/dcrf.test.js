// The unmodified npm dcrf-client 0.3.0 against a real `switchyard serve`,
// porting the cases of dcrf-client's own integration suite
// (specs/dcrf.md §3.2) for the `pk` flavour (stream `things`) and the
// `id` flavour (stream `things_with_id`, pkField 'id'). The Go test
// TestDCRFClient starts the server and sets SWITCHYARD_URL.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const dcrf = require('dcrf-client').default;

const URL = process.env.SWITCHYARD_URL;
if (!URL) throw new Error('SWITCHYARD_URL is not set: run through `go test ./server -run TestDCRFClient`');

function connect(options) {
  const client = dcrf.createClient(URL, {
    websocket: { WebSocket, minReconnectionDelay: 100, maxReconnectionDelay: 500 },
    ...options,
  });
  const connected = new Promise((resolve) => client.transport.on('connect', resolve));
  client.initialize();
  return connected.then(() => client);
}

function subset(actual, expected) {
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(actual[k], v, `field ${k} of ${JSON.stringify(actual)}`);
}

function within(ms, promise, what) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);
}

for (const [stream, options] of [['things', {}], ['things_with_id', { pkField: 'id' }]]) {
  const pkField = options.pkField || 'pk';

  test(`${stream}`, async (t) => {
    const client = await connect(options);
    t.after(() => client.close());

    // Runs first: the table starts empty (the Go test gives each run a fresh data directory).
    await t.test('list returns empty set', async () => {
      assert.deepEqual(await client.list(stream), []);
    });

    await t.test('create returns created values', async () => {
      subset(await client.create(stream, { name: 'unique' }), { name: 'unique', counter: 0 });
    });

    await t.test('create imbues retrieve with data', async () => {
      const thing = await client.create(stream, { name: 'unique' });
      assert.ok(thing[pkField] > 0, `the record carries ${pkField}`);
      subset(await client.retrieve(stream, thing[pkField]), { name: 'unique', counter: 0, [pkField]: thing[pkField] });
    });

    await t.test('list returns created rows', async () => {
      const rows = [{ name: 'max', counter: 0 }, { name: 'mary', counter: 1 }, { name: 'unique', counter: 1337 }];
      await Promise.all(rows.map((r) => client.create(stream, r)));
      const listed = await client.list(stream);
      for (const r of rows) assert.ok(listed.some((l) => l.name === r.name && l.counter === r.counter), `${r.name} listed`);
    });

    await t.test('subscribe invokes callback on delete', async () => {
      const thing = await client.create(stream, { name: 'doomed' });
      const id = thing[pkField];
      let fired;
      const got = new Promise((resolve) => { fired = resolve; });
      await client.subscribe(stream, id, (data, action) => fired({ data, action }));
      await client.delete(stream, id);
      const { data, action } = await within(2000, got, 'delete event');
      assert.equal(action, 'delete');
      assert.deepEqual(data, { [pkField]: id });
    });

    await t.test('subscribe invokes callback on change', async () => {
      const thing = await client.create(stream, { name: 'old' });
      let fired;
      const got = new Promise((resolve) => { fired = resolve; });
      client.subscribe(stream, thing[pkField], (data, action) => fired({ data, action })); // not awaited: order is the socket's
      await client.update(stream, thing[pkField], { name: 'new' });
      const { data, action } = await within(2000, got, 'update event');
      assert.equal(action, 'update');
      assert.equal(data.name, 'new');
    });

    await t.test('subscribe invokes callbacks on changes to multiple objects', async () => {
      const names = ['alpha', 'bravo', 'charlie'];
      const things = await Promise.all(names.map((name) => client.create(stream, { name })));
      const events = things.map((thing) => new Promise((resolve) => {
        client.subscribe(stream, thing[pkField], (data, action) => resolve({ data, action })).then(() => {});
      }));
      // Let every subscribe reply arrive before the updates.
      await Promise.all(things.map((thing) => client.retrieve(stream, thing[pkField])));
      await Promise.all(things.map((thing) => client.update(stream, thing[pkField], { name: `${thing.name}-new` })));
      const got = await within(2000, Promise.all(events), 'three update events');
      got.forEach(({ data, action }, i) => {
        assert.equal(action, 'update');
        assert.equal(data.name, `${names[i]}-new`);
      });
    });

    // The custom-subscription cases (0.3.0 has no custom subscribe actions,
    // so they use the client's own request/dispatcher with subscribe_many).
    function subscribeMany(actions, onEvent) {
      const requestId = `many-${Math.random().toString(36).slice(2)}`;
      for (const action of actions) {
        client.dispatcher.listen({ stream, payload: { action, request_id: requestId } }, (msg) => onEvent(msg.payload.data, action));
      }
      return client.request(stream, { action: 'subscribe_many' }, requestId).then((data) => {
        assert.equal(data, null);
        return requestId;
      });
    }
    const unsubscribeMany = (requestId) => client.request(stream, { action: 'unsubscribe_many' }, requestId);

    await t.test('custom: invokes callback on create with includeCreateEvents', async () => {
      let fired;
      const got = new Promise((resolve) => { fired = resolve; });
      const rid = await subscribeMany(['create', 'update', 'delete'], (data, action) => fired({ data, action }));
      await client.create(stream, { name: 'hello, world!' });
      const { data, action } = await within(2000, got, 'create event');
      assert.equal(action, 'create');
      assert.equal(data.name, 'hello, world!');
      await unsubscribeMany(rid);
    });

    await t.test("custom: doesn't invoke callback on create w/o includeCreateEvents", async () => {
      let fired;
      const got = new Promise((resolve) => { fired = resolve; });
      const rid = await subscribeMany(['update', 'delete'], (data, action) => fired({ data, action }));
      const thing = await client.create(stream, { name: 'fresh' });
      await client.update(stream, thing[pkField], { name: 'updated' });
      const { data, action } = await within(2000, got, 'update event');
      assert.equal(action, 'update');
      assert.equal(data.name, 'updated');
      await unsubscribeMany(rid);
    });

    await t.test('custom: invokes callback on update', async () => {
      const thing = await client.create(stream, { name: 'before' });
      let fired;
      const got = new Promise((resolve) => { fired = resolve; });
      const rid = await subscribeMany(['update', 'delete'], (data, action) => fired({ data, action }));
      await client.update(stream, thing[pkField], { name: 'updated' });
      const { data, action } = await within(2000, got, 'update event');
      assert.equal(action, 'update');
      assert.equal(data.name, 'updated');
      await unsubscribeMany(rid);
    });

    await t.test('custom: invokes callback on delete', async () => {
      const thing = await client.create(stream, { name: 'doomed' });
      let fired;
      const got = new Promise((resolve) => { fired = resolve; });
      const rid = await subscribeMany(['update', 'delete'], (data, action) => fired({ data, action }));
      await client.delete(stream, thing[pkField]);
      const { data, action } = await within(2000, got, 'delete event');
      assert.equal(action, 'delete');
      assert.equal(data[pkField], thing[pkField]);
      await unsubscribeMany(rid);
    });

    await t.test('errors reject with the DCRF payload', async () => {
      await assert.rejects(client.retrieve(stream, 999999), (p) => p.response_status === 404 && p.errors[0] === 'Not found');
      await assert.rejects(client.create(stream, { counter: 'x' }), (p) => p.response_status === 400 && Boolean(p.errors[0].name && p.errors[0].counter));
    });
  });
}

test('requests made before the socket opens are queued and sent on connect', async () => {
  const client = dcrf.createClient(URL, { websocket: { WebSocket } });
  client.initialize();
  const created = client.create('things', { name: 'queued' }); // the socket is not open yet
  try {
    subset(await within(3000, created, 'queued create'), { name: 'queued', counter: 0 });
  } finally {
    client.close();
  }
});
