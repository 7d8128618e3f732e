// The unmodified dcrf-client 0.3.0 subscribed to a table that another
// program writes (docs/existing-tables.md). Connected to one process
// (SWITCHYARD_URL, with its token), it subscribes to one record
// (SWITCHYARD_PK) and runs a live query (subscribe_list), then prints
// every event it receives: "INSTANCE <action> <json>" and
// "LIST <action> <json>". The Go test (server TestExistingTableDCRFClient)
// writes with plain SQL and compares the lines.
'use strict';
const WebSocket = require('ws');
const dcrf = require('dcrf-client').default;

const URL = process.env.SWITCHYARD_URL;
const PK = Number(process.env.SWITCHYARD_PK);
const fail = (msg) => { console.log(`FAIL ${msg}`); process.exit(1); };
setTimeout(() => fail('timed out'), 60000).unref();

async function main() {
  const client = dcrf.createClient(URL, { pkField: 'id', websocket: { WebSocket } });
  const connected = new Promise((resolve) => client.transport.on('connect', resolve));
  client.initialize();
  await connected;
  await client.subscribe('todos', PK, (data, action) => {
    console.log(`INSTANCE ${action} ${JSON.stringify(data)}`);
  });
  const requestId = 'capture-list';
  client.dispatcher.listen({ stream: 'todos', payload: { request_id: requestId } }, (msg) => {
    if (msg.payload.action === 'subscribe_list') return;
    console.log(`LIST ${msg.payload.action} ${JSON.stringify(msg.payload.data)}`);
  });
  await client.request('todos', { action: 'subscribe_list', request_id: requestId }, requestId);
  console.log('SUBSCRIBED');
  await new Promise(() => {}); // until the Go test kills it
}
main().catch((e) => fail(JSON.stringify(e)));
