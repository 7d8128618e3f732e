// Reconnect with the unmodified dcrf-client 0.3.0: the Go test
// TestDCRFClientReconnect restarts the server (same port, same data
// directory) between the two halves; the client reconnects by itself,
// resubscribes, and must receive the next change of the record.
'use strict';
const WebSocket = require('ws');
const readline = require('node:readline');
const dcrf = require('dcrf-client').default;

const URL = process.env.SWITCHYARD_URL;
const fail = (msg) => { console.log(`FAIL ${msg}`); process.exit(1); };
setTimeout(() => fail('timed out'), 30000).unref();

async function main() {
  const client = dcrf.createClient(URL, { websocket: { WebSocket, minReconnectionDelay: 100, maxReconnectionDelay: 300 } });
  const connected = new Promise((resolve) => client.transport.on('connect', resolve));
  client.initialize();
  await connected;
  const thing = await client.create('things', { name: 'before restart' });
  const events = [];
  let notify = () => {};
  await client.subscribe('things', thing.pk, (data, action) => { events.push({ data, action }); notify(); });
  console.log(`SUBSCRIBED ${thing.pk}`);
  const reconnected = new Promise((resolve) => client.transport.on('reconnect', resolve));
  await new Promise((resolve) => readline.createInterface({ input: process.stdin }).once('line', resolve)); // RESTARTED
  await reconnected;
  const updated = await client.update('things', thing.pk, { name: 'after restart' });
  if (updated.name !== 'after restart') fail(`update returned ${JSON.stringify(updated)}`);
  while (!events.some((e) => e.action === 'update' && e.data.name === 'after restart')) {
    await new Promise((resolve) => { notify = resolve; });
  }
  // The record written before the restart is still there.
  const again = await client.retrieve('things', thing.pk);
  if (again.name !== 'after restart') fail(`retrieve returned ${JSON.stringify(again)}`);
  console.log('EVENT after restart');
  client.close();
  process.exit(0);
}
main().catch((e) => fail(JSON.stringify(e)));
