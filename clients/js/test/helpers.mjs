// Shared helpers of the node:test suites. The Go test TestNode (clients/)
// starts a real server behind a proxy it can cut, and sets:
//   SWITCHYARD_URL      ws://…/live through the proxy
//   SWITCHYARD_HTTP     http://… through the proxy
//   SWITCHYARD_CONTROL  POST /down, /up, /restart and /direct (answer {direct})
//   SWITCHYARD_JWT_SECRET, SWITCHYARD_API_KEY
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { connect } from '../dist/index.js';

export const URL = process.env.SWITCHYARD_URL;
export const HTTP = process.env.SWITCHYARD_HTTP;
const CONTROL = process.env.SWITCHYARD_CONTROL;
const SECRET = process.env.SWITCHYARD_JWT_SECRET;
const API_KEY = process.env.SWITCHYARD_API_KEY;
if (!URL || !CONTROL) throw new Error('SWITCHYARD_URL is not set: run through `go test ./clients -run TestNode`');

export { WebSocket };

/** token signs an HS256 JWT for sub, valid for ttl seconds. */
export function token(sub, ttl = 3600, extra = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + ttl, ...extra })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** open connects a client (fast reconnects) and waits until it is connected. */
export async function open(t, options = {}) {
  const client = connect(URL, { WebSocket, reconnect: { minDelay: 30, maxDelay: 150 }, ...options });
  t.after(() => client.close());
  await until(client, 'connected');
  return client;
}

/** until resolves when the client is in state. */
export function until(client, state, ms = 5000) {
  if (client.state === state) return Promise.resolve();
  const reached = new Promise((resolve) => {
    const off = client.on('state', (s) => {
      if (s === state) {
        off();
        resolve();
      }
    });
  });
  return within(ms, reached, `state ${state}`);
}

/** within rejects when promise takes longer than ms. */
export function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** eventually polls check until it returns without throwing (conditions, never sleeps as assertions). */
export async function eventually(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${err.message}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** ctl calls the harness: down, up, restart. */
export async function ctl(what) {
  const r = await fetch(`${CONTROL}/${what}`, { method: 'POST' });
  if (!r.ok) throw new Error(`control ${what}: ${r.status}`);
  return r.status === 204 ? null : r.json();
}

/** direct returns the server's own address, which the proxy's down does not cut (for the application's writes while clients are away). */
export async function direct() {
  return (await ctl('direct')).direct;
}

/** api calls the server API (as the application) on base (default: through the proxy). */
export async function api(method, body, base = HTTP) {
  const r = await fetch(`${base}/api/server/${method}`, {
    method: 'POST',
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const data = await r.json();
  if (!r.ok) throw new Error(`${method}: ${r.status} ${JSON.stringify(data)}`);
  return data;
}

/** rest calls the resources' REST API as the server (API key). */
export async function rest(method, path, body, base = HTTP) {
  const r = await fetch(`${base}/api/resources/${path}`, {
    method,
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** unique returns a name no other test uses. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** fakeServer is a WebSocket server that says hello and then does what the test tells it: for client-side behaviour a real server does not produce on demand (a reply that never comes). */
export async function fakeServer(t, onMessage = () => {}) {
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.on('listening', r));
  const sockets = [];
  wss.on('connection', (ws) => {
    sockets.push(ws);
    ws.send(JSON.stringify({ stream: '$session', payload: { action: 'connected', client_id: 'fake', user: '' } }));
    ws.on('message', (data) => onMessage(ws, JSON.parse(String(data))));
  });
  t.after(() => new Promise((r) => { for (const s of sockets) s.terminate(); wss.close(r); }));
  return { url: `ws://127.0.0.1:${wss.address().port}/live`, sockets };
}
