// The client's cost per received message in Node, from the socket's
// message event to the application's callback. An in-process stand-in for
// the WebSocket delivers pre-encoded frames, so only the client's work is
// measured (JSON.parse included: the baseline line is JSON.parse alone).
//   npm run build && node bench/receive.mjs      (N=50000 per round, 5 rounds)
import { connect } from '../dist/index.js';

const N = Number(process.env.N ?? 50000);
const WARM = 20000;
let socket;
class LoopbackWS {
  constructor() {
    socket = this;
    this.readyState = 0;
    queueMicrotask(() => {
      this.readyState = 1;
      this.deliver({ stream: '$session', payload: { action: 'connected', client_id: 'bench', user: '' } });
    });
  }
  send(text) {
    const { stream, payload } = JSON.parse(text);
    const reply = (data, status) => this.deliver({ stream, payload: { errors: [], data, action: payload.action, response_status: status, request_id: payload.request_id } });
    if (payload.action === 'subscribe') reply({ channel: payload.channel, offset: 0, epoch: 'E', recovered: false, publications: [] }, 200);
    else if (payload.action === 'subscribe_instance') reply({ seq: 0, recovered: true }, 201);
    else if (payload.action === 'subscribe_list') reply(null, 201);
    else if (payload.action === 'list') reply(Array.from({ length: 1000 }, (_, i) => ({ id: i + 1, title: `row ${i}`, rank: i })), 200);
  }
  close() {}
  deliver(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
}

const ROUNDS = 5;
let base = 0; // frame numbers keep growing across rounds (offsets, seqs)

/**
 * measure delivers WARM + N frames made by frame(i), ROUNDS times, and
 * prints the best time per frame after the warm-up (the machine is shared:
 * the minimum is the client's cost, the rest is other load).
 */
function measure(name, frame, count) {
  let best = Infinity;
  let delivered = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const texts = Array.from({ length: WARM + N }, (_, i) => frame(base + i));
    base += WARM + N;
    for (let i = 0; i < WARM; i++) socket.onmessage({ data: texts[i] });
    const start = process.hrtime.bigint();
    for (let i = WARM; i < WARM + N; i++) socket.onmessage({ data: texts[i] });
    best = Math.min(best, Number(process.hrtime.bigint() - start) / N / 1000);
    delivered += WARM + N;
  }
  console.log(`| ${name} | ${best.toFixed(2)} | ${count() === delivered ? 'all' : count()} |`);
}

const sy = connect('ws://bench/live', { WebSocket: LoopbackWS });
await new Promise((r) => sy.on('connected', r));
console.log('| received message | µs per message | callbacks |\n|---|---|---|');

// Baseline: JSON.parse of a channel frame alone.
{
  let best = Infinity;
  let n = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const texts = Array.from({ length: WARM + N }, (_, i) => JSON.stringify({ stream: '$channels', payload: { action: 'message', channel: 'chat:bench', offset: i + 1, epoch: 'E', data: { text: 'hello, world' } } }));
    for (let i = 0; i < WARM; i++) n += JSON.parse(texts[i]).payload.offset > 0;
    const start = process.hrtime.bigint();
    for (let i = WARM; i < WARM + N; i++) n += JSON.parse(texts[i]).payload.offset > 0;
    best = Math.min(best, Number(process.hrtime.bigint() - start) / N / 1000);
  }
  console.log(`| baseline: JSON.parse of the channel frame | ${best.toFixed(2)} | ${n === ROUNDS * (WARM + N) ? 'all' : n} |`);
}

// Channel messages, with position tracking for recovery.
let n1 = 0;
await sy.channel('chat:bench', { onMessage: () => n1++ }).ready;
measure('channel message → onMessage', (i) => JSON.stringify({ stream: '$channels', payload: { action: 'message', channel: 'chat:bench', offset: i + 1, epoch: 'E', data: { text: 'hello, world' } } }), () => n1);

// Events of an instance subscription (dcrf-client's subscribe, with seq).
let n2 = 0;
const sub = sy.subscribe('todos', 1, () => n2++);
await sub;
measure('instance event → subscribe callback', (i) => JSON.stringify({ stream: 'todos', payload: { errors: [], data: { id: 1, title: 'x', rank: i }, action: 'update', response_status: 200, request_id: sub.requestId, seq: i + 1 } }), () => n2);

// Live query updates: 1000 rows kept ordered by rank; each event moves a row.
const q = sy.liveQuery('todos', { ordering: 'rank' });
await q.ready;
let n3 = 0;
q.subscribe(() => n3++);
const rid = q['requestId'];
measure('live query update, 1000 rows ordered → listener', (i) => JSON.stringify({ stream: 'todos', payload: { errors: [], data: { id: (i % 1000) + 1, title: `row ${i}`, rank: (i * 7919) % 1000 }, action: 'update', response_status: 200, request_id: rid } }), () => n3);
await sy.close();
