// An imitation of df_websockets.min.js (d9pouces/df_websockets 1.2.5,
// npm/df_websockets/app.js), which is not on npm: window.DFSignals as
// specs/bindings-signals.md §B.7 describes its source, over a small
// browser (a cookie jar, document.cookie, and a WebSocket that sends the
// jar's cookies with its handshake, as a browser does).
'use strict';
const WebSocket = require('ws');

// Browser is one browser profile: its cookies, set by Set-Cookie values.
class Browser {
  constructor() {
    this.jar = new Map();
    this.frames = []; // every frame its sockets received (the devtools' view)
  }

  // setCookie applies a Set-Cookie header value (name=value; attributes).
  setCookie(header) {
    const [pair] = header.split(';');
    const i = pair.indexOf('=');
    this.jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
  }

  // document.cookie
  get cookie() {
    return [...this.jar].map(([k, v]) => k + '=' + v).join('; ');
  }

  // WebSocket opens a socket the way the browser does: with its cookies.
  WebSocket(url) {
    const ws = new WebSocket(url, { headers: { Cookie: this.cookie } });
    ws.on('message', (data) => this.frames.push(data.toString()));
    return ws;
  }
}

// getCookie is app.js's cookie reader.
function getCookie(document, name) {
  for (const part of document.cookie.split(';')) {
    const c = part.trim();
    if (c.startsWith(name + '=')) return c.substring(name.length + 1);
  }
  return '';
}

// DFSignals is window.DFSignals for one page of a browser.
class DFSignals {
  constructor(browser, { heartbeatInterval = 60000, reconnectDelay = 3000 } = {}) {
    this.browser = browser;
    this.connection = null;
    this.buffer = [];
    this.registry = {}; // signal names → handlers, and signal ids → true (one object, as in app.js)
    this.wsurl = null;
    this.heartbeatInterval = heartbeatInterval; // app.js: 60000
    this.reconnectDelay = reconnectDelay; // app.js: 3000
    this.stopped = false;
    this.log = [];
  }

  // connect(signal, fn): fn(opts, signal_id) on every call of signal.
  connect(signal, fn) {
    if (this.registry[signal] === undefined) this.registry[signal] = [];
    this.registry[signal].push(fn);
  }

  // call runs the local handlers, and sends a browser-originated call
  // (no id) to the server, or buffers it until the socket is open.
  call(signal, opts, id) {
    if (id !== undefined) {
      if (this.registry[id] !== undefined) return false; // dedup on signal_id
      this.registry[id] = true;
    }
    const handlers = this.registry[signal];
    if (Array.isArray(handlers)) for (const fn of handlers) fn(opts, id);
    if (id === undefined) {
      const msg = JSON.stringify({ signal, opts });
      if (this.connection) this.connection.send(msg);
      else this.buffer.push(msg);
    }
    return false;
  }

  // websocketConnect runs on DOMContentLoaded, and 3 s after every close.
  websocketConnect() {
    if (this.stopped) return;
    if (this.wsurl === null) {
      const raw = getCookie(this.browser, 'dfwsurl');
      this.wsurl = decodeURIComponent(decodeURIComponent(raw));
    }
    if (!this.wsurl) {
      this.log.push('no dfwsurl cookie: not connecting');
      return;
    }
    const ws = this.browser.WebSocket(this.wsurl);
    this.socket = ws;
    ws.onopen = () => {
      this.connection = ws;
      this.log.push('open');
      while (this.buffer.length > 0) ws.send(this.buffer.shift());
      this.heartbeat = setInterval(() => ws.send('--heartbeat--'), this.heartbeatInterval);
    };
    ws.onmessage = (e) => {
      if (e.data === '--heartbeat--') return; // console.debug in app.js
      const msg = JSON.parse(e.data);
      if (msg.signal && msg.signal_id) this.call(msg.signal, msg.opts, msg.signal_id);
    };
    ws.onerror = () => {};
    ws.onclose = (e) => {
      this.connection = null;
      clearInterval(this.heartbeat);
      this.log.push('close ' + e.code);
      if (this.onclosed) this.onclosed(e.code);
      this.reconnect = setTimeout(() => this.websocketConnect(), this.reconnectDelay);
    };
  }

  // stop is the page going away (beforeunload closes the socket); the
  // test's end, so no reconnect is scheduled.
  stop() {
    this.stopped = true;
    clearTimeout(this.reconnect);
    clearInterval(this.heartbeat);
    if (this.socket) this.socket.close();
  }
}

module.exports = { Browser, DFSignals };
