// An imitation of @channels-binding/core 1.9.8's Consumer
// (packages/channels-binding-core/src/consumers/Consumer.js) and of its
// ReconnectingWebSocket fork (REWebSocket.js), as specs/bindings-signals.md
// §A.10 describes them, over the Node ws package. The package is not on
// npm any more, so the tests carry the behaviour that matters on the
// wire:
//   - send(event, data): JSON {event, data} when open; otherwise the data
//     is kept in pending_calls[event] (only the last per event) and
//     connect() is called; pending calls are flushed on open;
//   - listeners are called on the exact event string with (data, consumer);
//     a frame with a truthy error is logged and dispatched to no listener;
//   - event "sessionid" sets the sessionid cookie;
//   - reconnect on every close that the client did not ask for, after
//     reconnectInterval (1000 ms) x reconnectDecay (1.5) ^ attempts, capped at
//     maxReconnectInterval (30000 ms); a connect attempt times out after
//     timeoutInterval (2000 ms).
'use strict';
const WebSocket = require('ws');

class REWebSocket {
  constructor(url, opts = {}) {
    this.url = url;
    this.reconnectInterval = opts.reconnectInterval ?? 1000;
    this.maxReconnectInterval = opts.maxReconnectInterval ?? 30000;
    this.reconnectDecay = opts.reconnectDecay ?? 1.5;
    this.timeoutInterval = opts.timeoutInterval ?? 2000;
    this.reconnectAttempts = 0;
    this.forcedClose = false;
    this.opens = 0; // how many times it opened (tests read it)
    this.onopen = () => {};
    this.onclose = () => {};
    this.onmessage = () => {};
    this.open(false);
  }

  open(reconnectAttempt) {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    const timeout = setTimeout(() => ws.terminate(), this.timeoutInterval);
    ws.on('open', () => {
      clearTimeout(timeout);
      this.reconnectAttempts = 0;
      this.opens++;
      this.onopen({ isReconnect: reconnectAttempt });
    });
    ws.on('message', (data) => this.onmessage({ data: data.toString() }));
    ws.on('error', () => {}); // a close follows
    ws.on('close', (code) => {
      clearTimeout(timeout);
      if (this.ws !== ws) return;
      this.onclose({ code });
      if (this.forcedClose) return;
      const delay = Math.min(this.maxReconnectInterval, this.reconnectInterval * Math.pow(this.reconnectDecay, this.reconnectAttempts));
      this.reconnectAttempts++;
      this.timer = setTimeout(() => this.open(true), delay);
    });
  }

  get readyState() { return this.ws.readyState; }

  send(text) { this.ws.send(text); }

  close() {
    this.forcedClose = true;
    clearTimeout(this.timer);
    this.ws.close();
  }
}

class Consumer {
  constructor(name, options = {}) {
    this.name = name;
    this.options = options;
    this.listeners = {};
    this.pending_calls = {};
    this.cookies = {};
    this.errors = []; // what the original logs with console.error
    this.closes = [];
    this.socket = null;
  }

  url() {
    const params = this.options.params ? '?' + new URLSearchParams(this.options.params).toString() : '';
    return this.options.path + params;
  }

  connect() {
    if (this.socket) return;
    this.socket = new REWebSocket(this.url(), this.options);
    this.socket.onopen = () => {
      const pending = this.pending_calls;
      this.pending_calls = {};
      for (const event of Object.keys(pending)) this.socket.send(JSON.stringify({ event, data: pending[event] }));
    };
    this.socket.onclose = (e) => this.closes.push(e.code);
    this.socket.onmessage = (e) => this.receive(e);
  }

  send(event, data = {}) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ event, data }));
    } else {
      this.pending_calls[event] = data; // only the last data per event
    }
    this.connect();
  }

  receive(message) {
    const data = JSON.parse(message.data);
    if (data.error) {
      this.errors.push(data);
      return;
    }
    if (data.event === 'sessionid') this.cookies.sessionid = data.data;
    for (const fn of [...(this.listeners[data.event] || [])]) fn(data.data, this);
  }

  addListener(event, fn) {
    (this.listeners[event] = this.listeners[event] || []).push(fn);
    return fn;
  }

  disposeListener(event, fn) {
    this.listeners[event] = (this.listeners[event] || []).filter((f) => f !== fn);
  }

  once(event, fn) {
    const wrapper = this.addListener(event, (data, consumer) => {
      this.disposeListener(event, wrapper);
      fn(data, consumer);
    });
  }

  close() {
    if (this.socket) this.socket.close();
  }
}

// registerConsumer keeps consumers by name, as the original's registry.
const registry = {};
function registerConsumer(name, options) {
  registry[name] = new Consumer(name, options);
  return registry[name];
}

module.exports = { Consumer, REWebSocket, registerConsumer, registry };
