// The unmodified dcrf-client 0.3.0 as one client of a Switchyard cluster:
// connected to one process (SWITCHYARD_URL), it runs a live query
// (subscribe_list) on `things` and prints every create it receives. The
// Go cluster test (cmd/switchyard TestCluster) creates through the REST
// API of another process and waits for the line.
'use strict';
const WebSocket = require('ws');
const dcrf = require('dcrf-client').default;

const URL = process.env.SWITCHYARD_URL;
const fail = (msg) => { console.log(`FAIL ${msg}`); process.exit(1); };
setTimeout(() => fail('timed out'), 60000).unref();

async function main() {
  const client = dcrf.createClient(URL, { websocket: { WebSocket, minReconnectionDelay: 100, maxReconnectionDelay: 300 } });
  const connected = new Promise((resolve) => client.transport.on('connect', resolve));
  client.initialize();
  await connected;
  const requestId = 'cluster-list';
  client.dispatcher.listen({ stream: 'things', payload: { request_id: requestId, action: 'create' } }, (msg) => {
    console.log(`CREATE ${JSON.stringify(msg.payload.data)}`);
  });
  await client.request('things', { action: 'subscribe_list', request_id: requestId }, requestId);
  console.log('SUBSCRIBED');
  // Runs until the Go test kills it.
  await new Promise(() => {});
}
main().catch((e) => fail(JSON.stringify(e)));
