import { Dispatcher, type Selector } from './dispatcher';
import { Emitter, reportLater } from './emitter';
import { SwitchyardError, type ReplyPayload } from './errors';
import { expiresAt } from './jwt';
import { uuid } from './uuid';

export { uuid };
import { LiveQuery, type LiveQueryOptions } from './livequery';
import { ChannelSubscription, type ChannelHandlers, type Publication, type StreamPosition } from './channel';

/** The WebSocket constructor the client uses: the browser's, Node's global one, or `ws`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The part of the WebSocket interface the client needs. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
}

/** The connection states, announced by the `state` event. */
export type State = 'disconnected' | 'connecting' | 'connected';

/** Reconnection: the n-th retry waits min(maxDelay, minDelay·factorⁿ), less a random part of up to `jitter` of it. */
export interface ReconnectOptions {
  /** First retry delay, ms (default 250). */
  minDelay?: number;
  /** Cap of the delay, ms (default 10000). */
  maxDelay?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Fraction of each delay drawn at random, 0..1 (default 0.5): clients that lost the same server do not return together. */
  jitter?: number;
}

/** Options of connect and createClient. */
export interface ClientOptions {
  /** A token (JWT), sent as `?token=` on every connection. */
  token?: string;
  /** Returns a fresh token: called before connecting when there is none or it expires soon, and before the token expires (`$session refresh`). */
  getToken?: () => string | Promise<string>;
  /** Refresh the token this long before it expires, ms (default 30000, at most half its remaining life). */
  refreshBefore?: number;
  /** The WebSocket constructor (default: the global WebSocket; in Node 20, pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Reject a request not answered within this many ms (default 10000; 0: never). */
  requestTimeout?: number;
  /** Give up a connection attempt after this many ms (default 10000). */
  connectTimeout?: number;
  /** Reconnection backoff; `false` never reconnects. */
  reconnect?: ReconnectOptions | false;
  /** Resubscribe resource instances with `since` to get what changed while disconnected (default true). */
  catchUp?: boolean;

  // dcrf-client's options.
  /** dcrf-client: the primary key's name in records (default 'pk'). */
  pkField?: string;
  /** dcrf-client: rename `pk` to pkField in delete events (default true). */
  ensurePkFieldInDeleteEvents?: boolean;
  /** dcrf-client: `websocket` options of reconnecting-websocket; `WebSocket`, `minReconnectionDelay`, `maxReconnectionDelay`, `reconnectionDelayGrowFactor`, `connectionTimeout` are honoured. */
  websocket?: {
    WebSocket?: WebSocketConstructor;
    minReconnectionDelay?: number;
    maxReconnectionDelay?: number;
    reconnectionDelayGrowFactor?: number;
    connectionTimeout?: number;
    [key: string]: unknown;
  };
  buildMultiplexedMessage?: (stream: string, payload: any) => any;
  buildRequestResponseSelector?: (stream: string, requestId: string) => Selector;
  buildSubscribeCreateSelector?: (stream: string, requestId: string) => Selector;
  buildSubscribeUpdateSelector?: (stream: string, requestId: string) => Selector;
  buildSubscribeDeleteSelector?: (stream: string, requestId: string) => Selector;
  buildSubscribePayload?: (action: string, args: object, requestId: string) => any;
  buildUnsubscribePayload?: (action: string, args: object, requestId: string) => any;
  preprocessPayload?: (stream: string, payload: any, requestId: string) => any;
  preprocessMessage?: (message: any) => any;
}

/** dcrf-client's subscribe options. */
export interface SubscribeOptions {
  requestId?: string;
  subscribeAction?: string;
  unsubscribeAction?: string;
  includeCreateEvents?: boolean;
}

/** The promise of subscribe: it resolves when the server accepted the subscription; cancel ends it. */
export interface SubscriptionPromise<T> extends Promise<T> {
  cancel(): Promise<boolean>;
  readonly requestId: string;
}

/** A signal pushed by the server. */
export interface SignalMessage {
  signal: string;
  kwargs: any;
  signal_id: string;
}

/** What the server said when the connection opened. */
export interface ConnectedInfo {
  client_id: string;
  user: string;
}

/** Why the connection closed. */
export interface DisconnectInfo {
  code: number;
  reason: string;
  /** Whether the client will reconnect by itself. */
  reconnect: boolean;
}

/** Events of the client: `client.on(event, fn)`. */
export type ClientEvents = {
  state: (state: State, previous: State) => void;
  connected: (info: ConnectedInfo) => void;
  disconnected: (info: DisconnectInfo) => void;
  error: (err: SwitchyardError) => void;
  /** A reconnection is scheduled: attempt n (from 1) in delay ms. */
  reconnecting: (info: { attempt: number; delay: number }) => void;
  /** Every channel message, including those of channels the server subscribed this connection to. */
  message: (channel: string, pub: Publication) => void;
  /** The server subscribed this connection to a channel (token claim, server API). */
  subscribed: (channel: string, result: any) => void;
  unsubscribed: (channel: string) => void;
  join: (channel: string, info: any) => void;
  leave: (channel: string, info: any) => void;
};

/** Options of one request. */
export interface RequestOptions {
  /** Override the client's requestTimeout, ms. */
  timeout?: number;
}

interface Pending {
  listener: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  reject: (err: SwitchyardError) => void;
  /** Set once written to a socket: a pending request rejects when that socket closes. */
  sent: boolean;
}

interface Resubscriber {
  resubscribe(): void;
  disconnected?(): void;
}

interface InstanceSub extends Resubscriber {
  cancel(): Promise<boolean>;
}

/** dcrf-client's transport: `client.transport.on('connect' | 'reconnect' | 'disconnect', fn)`. */
export class Transport extends Emitter<{ connect: () => void; reconnect: () => void; disconnect: () => void }> {
  constructor(private readonly client: Client) {
    super();
  }
  /** isConnected reports whether the socket is open and the server said hello. */
  isConnected(): boolean {
    return this.client.state === 'connected';
  }
  /** @internal */
  fire(event: 'connect' | 'reconnect' | 'disconnect'): void {
    this.emit(event);
  }
}

const OPEN = 1;

/**
 * Client is a connection to a Switchyard server's `/live` socket. It
 * reconnects by itself, resubscribes everything (with catch-up), queues
 * requests made while disconnected, and rejects requests that time out.
 */
export class Client extends Emitter<ClientEvents> {
  /** dcrf-client's dispatcher: `listen(selector, fn)`, `once`, `cancel`. */
  readonly dispatcher = new Dispatcher();
  /** dcrf-client's transport events. */
  readonly transport: Transport;
  /** The connection state. */
  state: State = 'disconnected';
  /** Set by close: the client will not connect again. */
  closed = false;
  /** The server's id of the current connection (presence, server API). */
  clientId = '';
  /** The token's user, '' for anonymous. */
  user = '';
  /** @internal How many times the client connected: subscriptions are sent once per connection. */
  connection = 0;

  readonly url: string;
  readonly options: ClientOptions;
  private readonly pkField: string;
  private readonly WS: WebSocketConstructor | undefined;
  private ws: WebSocketLike | null = null;
  private token: string | undefined;
  private attempts = 0;
  private everConnected = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private queue: { message: any; pending?: Pending }[] = [];
  private pending = new Set<Pending>();
  private instanceSubs = new Map<string, InstanceSub>();
  /** live queries and channel subscriptions, resubscribed after each reconnect. */
  private resubscribers = new Set<Resubscriber>();
  private channelSubs = new Map<string, ChannelSubscription>();
  private signalHandlers = new Map<string, Set<(kwargs: any, msg: SignalMessage) => void>>();
  private initialized = false;

  /** The signals of the server: `call(name, kwargs)` and `on(name, fn)`. */
  readonly signals = {
    call: (name: string, kwargs: Record<string, unknown> = {}, opts?: RequestOptions) => this.call(name, kwargs, opts),
    on: (name: string, fn: (kwargs: any, msg: SignalMessage) => void) => this.onSignal(name, fn),
  };

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = url;
    this.options = options;
    this.pkField = options.pkField ?? 'pk';
    this.token = options.token;
    this.WS = options.WebSocket ?? options.websocket?.WebSocket ?? (globalThis as any).WebSocket;
    this.transport = new Transport(this);
  }

  /** initialize opens the connection (connect does it for you; dcrf-client's createClient does not). */
  initialize(): void {
    if (this.initialized || this.closed) return;
    this.initialized = true;
    if (!this.WS) {
      throw new SwitchyardError('error', 'no WebSocket: pass {WebSocket} (in Node 20: the ws package) to connect');
    }
    void this.open();
  }

  /** close closes the connection for good: pending requests reject with code "closed". */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.refreshTimer);
    const ws = this.ws;
    this.ws = null;
    const err = new SwitchyardError('closed', 'the client was closed');
    for (const p of [...this.pending]) this.fail(p, err);
    this.queue = [];
    this.setState('disconnected');
    if (!ws) return Promise.resolve();
    return new Promise((resolve) => {
      ws.onclose = () => resolve();
      ws.onerror = () => {}; // ws reports closing a connecting socket as an error
      ws.onmessage = null;
      try {
        ws.close(1000, 'client closed');
      } catch {
        resolve();
      }
      if (ws.readyState === 3) resolve();
    });
  }

  // ---- the connection ----------------------------------------------------

  private reconnectOptions(): Required<ReconnectOptions> | null {
    if (this.options.reconnect === false) return null;
    const r = this.options.reconnect ?? {};
    const w = this.options.websocket ?? {};
    return {
      minDelay: r.minDelay ?? w.minReconnectionDelay ?? 250,
      maxDelay: r.maxDelay ?? w.maxReconnectionDelay ?? 10000,
      factor: r.factor ?? w.reconnectionDelayGrowFactor ?? 2,
      jitter: r.jitter ?? 0.5,
    };
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    this.setState('connecting');
    try {
      const g = this.options.getToken;
      if (g) {
        const exp = expiresAt(this.token);
        if (!this.token || (exp && exp - Date.now() < this.refreshMargin(exp))) this.token = await g();
      }
    } catch (err) {
      this.emit('error', new SwitchyardError('unauthorized', `getToken failed: ${String(err)}`));
      this.scheduleReconnect();
      return;
    }
    if (this.closed) return;
    let url = this.url;
    if (this.token) url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(this.token);
    let ws: WebSocketLike;
    try {
      ws = new this.WS!(url);
    } catch (err) {
      this.emit('error', new SwitchyardError('error', `cannot open ${this.url}: ${String(err)}`));
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    const timeout = this.options.connectTimeout ?? (this.options.websocket?.connectionTimeout as number | undefined) ?? 10000;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && this.state !== 'connected') {
        try {
          ws.close();
        } catch {
          /* closing anyway */
        }
        this.closed_(ws, 4000, 'connect timeout');
      }
    }, timeout);
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.receive(typeof ev.data === 'string' ? ev.data : String(ev.data));
    };
    ws.onclose = (ev) => this.closed_(ws, ev?.code ?? 1006, ev?.reason ?? '');
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  /** closed_ handles the end of a socket (once per socket). */
  private closed_(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.connectTimer);
    clearTimeout(this.refreshTimer);
    const wasConnected = this.state === 'connected';
    const err = new SwitchyardError('disconnected', `the connection closed (${code}) before the reply`);
    for (const p of [...this.pending]) if (p.sent) this.fail(p, err);
    for (const r of this.resubscribers) r.disconnected?.();
    // 4003: disconnected by the application; 4001 without getToken: the token cannot be renewed.
    let reconnect = !this.closed && this.reconnectOptions() !== null && code !== 4003;
    if (code === 4001) {
      if (this.options.getToken) this.token = undefined;
      else reconnect = false;
    }
    this.setState('disconnected');
    if (wasConnected) this.transport.fire('disconnect');
    this.emit('disconnected', { code, reason, reconnect });
    if (reconnect) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const r = this.reconnectOptions();
    if (this.closed || !r) {
      this.setState('disconnected');
      return;
    }
    const base = Math.min(r.maxDelay, r.minDelay * Math.pow(r.factor, this.attempts));
    const delay = base * (1 - r.jitter * Math.random());
    this.attempts++;
    this.setState('disconnected');
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
    this.emit('reconnecting', { attempt: this.attempts, delay });
  }

  private setState(s: State): void {
    if (s === this.state) return;
    const prev = this.state;
    this.state = s;
    this.emit('state', s, prev);
  }

  private refreshMargin(exp: number): number {
    return Math.min(this.options.refreshBefore ?? 30000, Math.max(0, (exp - Date.now()) / 2));
  }

  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    const exp = expiresAt(this.token);
    if (!exp || !this.options.getToken) return;
    const delay = Math.max(0, exp - Date.now() - this.refreshMargin(exp));
    this.refreshTimer = setTimeout(() => void this.refresh(), Math.min(delay, 2 ** 31 - 1));
  }

  /** refresh gets a new token from getToken and hands it to the server ($session refresh). */
  async refresh(): Promise<void> {
    const g = this.options.getToken;
    if (!g) throw new SwitchyardError('bad_request', 'refresh needs the getToken option');
    try {
      this.token = await g();
      await this.request('$session', { action: 'refresh', token: this.token });
      this.scheduleRefresh();
    } catch (err) {
      const e = err instanceof SwitchyardError ? err : new SwitchyardError('unauthorized', String(err));
      this.emit('error', e);
      // Try again shortly while the old token lasts; the server closes with 4001 when it ends.
      clearTimeout(this.refreshTimer);
      if (this.state === 'connected' && !this.closed) this.refreshTimer = setTimeout(() => void this.refresh(), 1000);
    }
  }

  private onConnected(info: ConnectedInfo): void {
    clearTimeout(this.connectTimer);
    this.attempts = 0;
    this.clientId = info.client_id;
    this.user = info.user;
    this.setState('connected');
    this.scheduleRefresh();
    const first = !this.everConnected;
    this.everConnected = true;
    this.connection++;
    // (Re)subscribe first, then the requests queued while disconnected (as dcrf-client).
    for (const s of [...this.instanceSubs.values()]) s.resubscribe();
    for (const r of [...this.resubscribers]) r.resubscribe();
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) this.write(q.message, q.pending);
    this.emit('connected', info);
    this.transport.fire(first ? 'connect' : 'reconnect');
  }

  // ---- frames --------------------------------------------------------------

  private receive(text: string): void {
    let message: any;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const payload = message && message.payload;
    if (!payload || typeof payload !== 'object') return;
    switch (message.stream) {
      case '$session':
        if (payload.action === 'connected' && payload.request_id === undefined) {
          this.onConnected({ client_id: payload.client_id, user: payload.user ?? '' });
          return;
        }
        break;
      case '$channels':
        if (payload.request_id === undefined && this.channelPush(payload)) return;
        break;
      case '$signals':
        if (payload.action === 'signal' && payload.request_id === undefined) {
          this.signalPush(payload);
          return;
        }
        break;
    }
    this.dispatcher.dispatch(message);
  }

  private write(message: any, pending?: Pending): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.state !== 'connected') {
      this.queue.push({ message, pending });
      return;
    }
    if (pending) pending.sent = true;
    ws.send(JSON.stringify(message));
  }

  /** send sends a message now when connected, or queues it until the next connection (dcrf-client's send). */
  send(message: any): void {
    this.write(message);
  }

  /** sendNow sends a message if connected and drops it otherwise; it reports whether it was sent. */
  sendNow(message: any): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  private fail(p: Pending, err: SwitchyardError): void {
    if (!this.pending.delete(p)) return;
    clearTimeout(p.timer);
    this.dispatcher.cancel(p.listener);
    const i = this.queue.findIndex((q) => q.pending === p);
    if (i >= 0) this.queue.splice(i, 1);
    p.reject(err);
  }

  // ---- dcrf-client's builders ----------------------------------------------

  buildMultiplexedMessage(stream: string, payload: any): any {
    return this.options.buildMultiplexedMessage ? this.options.buildMultiplexedMessage.call(this, stream, payload) : { stream, payload };
  }
  buildRequestResponseSelector(stream: string, requestId: string): Selector {
    return this.options.buildRequestResponseSelector
      ? this.options.buildRequestResponseSelector.call(this, stream, requestId)
      : { stream, payload: { request_id: requestId } };
  }
  buildSubscribeCreateSelector(stream: string, requestId: string): Selector {
    return this.options.buildSubscribeCreateSelector
      ? this.options.buildSubscribeCreateSelector.call(this, stream, requestId)
      : { stream, payload: { action: 'create', request_id: requestId } };
  }
  buildSubscribeUpdateSelector(stream: string, requestId: string): Selector {
    return this.options.buildSubscribeUpdateSelector
      ? this.options.buildSubscribeUpdateSelector.call(this, stream, requestId)
      : { stream, payload: { action: 'update', request_id: requestId } };
  }
  buildSubscribeDeleteSelector(stream: string, requestId: string): Selector {
    return this.options.buildSubscribeDeleteSelector
      ? this.options.buildSubscribeDeleteSelector.call(this, stream, requestId)
      : { stream, payload: { action: 'delete', request_id: requestId } };
  }
  buildSubscribePayload(action: string, args: object, requestId: string): any {
    return this.options.buildSubscribePayload
      ? this.options.buildSubscribePayload.call(this, action, args, requestId)
      : { action, request_id: requestId, ...args };
  }
  buildUnsubscribePayload(action: string, args: object, requestId: string): any {
    return this.options.buildUnsubscribePayload
      ? this.options.buildUnsubscribePayload.call(this, action, args, requestId)
      : { action, request_id: requestId, ...args };
  }

  // ---- requests ------------------------------------------------------------

  /**
   * request sends a payload on a stream and resolves with the reply's data
   * (2xx), or rejects with a SwitchyardError: the server's error, `timeout`,
   * `disconnected` (the socket closed before the reply) or `closed`.
   * Requests made while disconnected are queued until the next connection.
   */
  request<T = any>(stream: string, payload: object, requestId: string = uuid(), opts: RequestOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new SwitchyardError('closed', 'the client was closed'));
    let p: any = { ...payload, request_id: requestId };
    if (this.options.preprocessPayload) p = this.options.preprocessPayload.call(this, stream, p, requestId) || p;
    let message = this.buildMultiplexedMessage(stream, p);
    if (this.options.preprocessMessage) message = this.options.preprocessMessage.call(this, message) || message;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { listener: 0, timer: undefined, reject, sent: false };
      pending.listener = this.dispatcher.once(this.buildRequestResponseSelector(stream, requestId), (reply) => {
        if (!this.pending.delete(pending)) return;
        clearTimeout(pending.timer);
        const rp = reply.payload as ReplyPayload;
        if (Math.floor((rp.response_status as number) / 100) === 2) resolve(rp.data as T);
        else reject(SwitchyardError.fromReply(rp));
      });
      const timeout = opts.timeout ?? this.options.requestTimeout ?? 10000;
      if (timeout > 0) {
        pending.timer = setTimeout(
          () => this.fail(pending, new SwitchyardError('timeout', `no reply to ${stream} ${String((payload as any).action)} within ${timeout} ms`)),
          timeout,
        );
      }
      this.pending.add(pending);
      this.write(message, pending);
    });
  }

  list<T = any>(stream: string, data: object = {}, requestId?: string): Promise<T[]> {
    return this.request(stream, { action: 'list', data }, requestId);
  }
  create<T = any>(stream: string, props: object, requestId?: string): Promise<T> {
    return this.request(stream, { action: 'create', data: props }, requestId);
  }
  retrieve<T = any>(stream: string, pk: unknown, data: object = {}, requestId?: string): Promise<T> {
    return this.request(stream, { action: 'retrieve', pk, data }, requestId);
  }
  update<T = any>(stream: string, pk: unknown, props: object, requestId?: string): Promise<T> {
    return this.request(stream, { action: 'update', pk, data: props }, requestId);
  }
  patch<T = any>(stream: string, pk: unknown, props: object, requestId?: string): Promise<T> {
    return this.request(stream, { action: 'patch', pk, data: props }, requestId);
  }
  delete(stream: string, pk: unknown, data: object = {}, requestId?: string): Promise<null> {
    return this.request(stream, { action: 'delete', pk, data }, requestId);
  }

  /**
   * subscribe follows a record (`pk`) or a custom subscription (`args` with
   * options.subscribeAction), as dcrf-client does: callback(data, action)
   * for every event. Instance subscriptions are made with `since`, so after
   * a reconnect the changes missed meanwhile arrive first (catch-up).
   */
  subscribe<T = any>(
    stream: string,
    pkOrArgs: number | string | object,
    callback: (data: T, action: string) => void,
    options: SubscribeOptions | string = {},
  ): SubscriptionPromise<any> {
    const o: SubscribeOptions = typeof options === 'string' ? { requestId: options } : options;
    const requestId = o.requestId ?? uuid();
    const subscribeAction = o.subscribeAction ?? 'subscribe_instance';
    const unsubscribeAction = o.unsubscribeAction ?? 'unsubscribe_instance';
    const args: object =
      typeof pkOrArgs === 'object' && pkOrArgs !== null
        ? pkOrArgs
        : subscribeAction === 'subscribe_instance'
          ? { pk: pkOrArgs }
          : { [this.pkField]: pkOrArgs };
    const catchUp = subscribeAction === 'subscribe_instance' && this.options.catchUp !== false;
    let seq = -1; // the highest change seen: -1 before the first reply
    const ensurePk = this.options.ensurePkFieldInDeleteEvents !== false;
    const listeners: number[] = [];
    const onEvent = (message: any) => {
      const payload = message.payload;
      if (typeof payload.seq === 'number') {
        if (payload.seq <= seq) return; // delivered before the reconnect
        seq = payload.seq;
      }
      let data = payload.data;
      if (payload.action === 'delete' && ensurePk && data && typeof data === 'object' && !(this.pkField in data)) {
        data[this.pkField] = data.pk;
        delete data.pk;
      }
      callback(data, payload.action);
    };
    if (o.includeCreateEvents) listeners.push(this.dispatcher.listen(this.buildSubscribeCreateSelector(stream, requestId), onEvent));
    listeners.push(this.dispatcher.listen(this.buildSubscribeUpdateSelector(stream, requestId), onEvent));
    listeners.push(this.dispatcher.listen(this.buildSubscribeDeleteSelector(stream, requestId), onEvent));

    let settle: { resolve: (v: any) => void; reject: (e: any) => void };
    const promise = new Promise<any>((resolve, reject) => (settle = { resolve, reject })) as SubscriptionPromise<any>;
    let settled = false;
    let active = true;
    const stop = () => {
      active = false;
      for (const id of listeners) this.dispatcher.cancel(id);
      this.dispatcher.cancel(replyListener);
      this.instanceSubs.delete(requestId);
    };
    const replyListener = this.dispatcher.listen(
      { stream, payload: { action: subscribeAction, request_id: requestId } },
      (message) => {
        const payload = message.payload as ReplyPayload;
        const ok = Math.floor((payload.response_status as number) / 100) === 2;
        if (ok) {
          const d = payload.data as any;
          if (d && typeof d.seq === 'number' && seq < 0) seq = d.seq;
          if (!settled) {
            settled = true;
            settle.resolve(payload.data);
          }
          return;
        }
        const err = SwitchyardError.fromReply(payload);
        stop();
        if (!settled) {
          settled = true;
          settle.reject(err);
        } else this.emit('error', err);
      },
    );
    const frame = () => {
      const payload = this.buildSubscribePayload(subscribeAction, args, requestId);
      if (catchUp) payload.since = Math.max(seq, 0);
      return payload;
    };
    const sendSubscribe = () => {
      let p = { ...frame(), request_id: requestId };
      if (this.options.preprocessPayload) p = this.options.preprocessPayload.call(this, stream, p, requestId) || p;
      let m = this.buildMultiplexedMessage(stream, p);
      if (this.options.preprocessMessage) m = this.options.preprocessMessage.call(this, m) || m;
      return m;
    };
    let sentOn = 0;
    const sub: InstanceSub = {
      resubscribe: () => {
        if (!active || sentOn === this.connection || this.state !== 'connected') return;
        sentOn = this.connection;
        this.sendNow(sendSubscribe());
      },
      cancel: () => promise.cancel(),
    };
    this.instanceSubs.set(requestId, sub);
    const timeout = this.options.requestTimeout ?? 10000;
    if (timeout > 0) {
      const timer = setTimeout(() => {
        if (!settled) {
          settled = true;
          stop();
          settle.reject(new SwitchyardError('timeout', `no reply to ${stream} ${subscribeAction} within ${timeout} ms`));
        }
      }, timeout);
      promise.then(
        () => clearTimeout(timer),
        () => clearTimeout(timer),
      );
    }
    (promise as any).requestId = requestId;
    promise.cancel = async () => {
      const wasActive = active;
      stop();
      if (!wasActive || this.closed) return wasActive;
      await this.request(stream, this.buildUnsubscribePayload(unsubscribeAction, args, requestId), requestId);
      return true;
    };
    sub.resubscribe();
    return promise;
  }

  /** unsubscribeAll ends every resource subscription made with subscribe; it resolves with how many there were. */
  async unsubscribeAll(): Promise<number> {
    const subs = [...this.instanceSubs.values()];
    await Promise.all(subs.map((s) => s.cancel().catch(() => false)));
    return subs.length;
  }

  /** resubscribe sends the resource subscriptions not yet sent on this connection (the client does it after each reconnect). */
  resubscribe(): void {
    for (const s of [...this.instanceSubs.values()]) s.resubscribe();
  }

  // ---- typed handles and live queries -----------------------------------------

  /** resource returns a handle on one resource; with the generated types (`switchyard codegen ts`) it knows the fields. */
  resource<K extends ResourceName>(name: K): ResourceHandle<RecordOf<K>> {
    return new ResourceHandle<RecordOf<K>>(this, name);
  }

  /**
   * liveQuery keeps the rows of a resource that match a filter: the rows now
   * (list), then every change (subscribe_list). It works with React's
   * useSyncExternalStore: `useSyncExternalStore(q.subscribe, q.getSnapshot)`.
   */
  liveQuery<K extends ResourceName>(resource: K, options: LiveQueryOptions<RecordOf<K>> = {}): LiveQuery<RecordOf<K>> {
    return new LiveQuery<RecordOf<K>>(this, resource, options, this.options.pkField);
  }

  /** @internal */
  addResubscriber(r: Resubscriber): void {
    this.resubscribers.add(r);
  }
  /** @internal */
  removeResubscriber(r: Resubscriber): void {
    this.resubscribers.delete(r);
  }

  // ---- channels ---------------------------------------------------------------

  /**
   * channel subscribes to a channel: handlers get its messages (and
   * join/leave with presence). After a reconnect the client resubscribes
   * with the last position it saw: the missed messages arrive first, in
   * order, once each; when the server cannot recover them, onGap is called.
   */
  channel<T = any>(name: string, handlers: ChannelHandlers<T> = {}): ChannelSubscription<T> {
    if (this.channelSubs.has(name)) throw new SwitchyardError('bad_request', `already subscribed to ${name}`);
    const sub = new ChannelSubscription<T>(this, name, handlers);
    this.channelSubs.set(name, sub as ChannelSubscription);
    this.resubscribers.add(sub);
    sub.start();
    return sub;
  }

  /** @internal */
  dropChannel(sub: ChannelSubscription<any>): void {
    if (this.channelSubs.get(sub.channel) === sub) this.channelSubs.delete(sub.channel);
    this.resubscribers.delete(sub);
  }

  /** publish publishes data on a channel (the namespace must allow it); it resolves with the message's position. */
  publish(channel: string, data: unknown, opts?: RequestOptions): Promise<StreamPosition> {
    return this.request('$channels', { action: 'publish', channel, data }, uuid(), opts);
  }

  /** presence lists the clients subscribed to a channel (namespaces with presence). */
  async presence(channel: string, opts?: RequestOptions): Promise<{ client_id: string; user: string; info?: unknown }[]> {
    const r = await this.request<{ clients: any[] }>('$channels', { action: 'presence', channel }, uuid(), opts);
    return r.clients;
  }

  /**
   * history returns a channel's kept messages, oldest first (newest first
   * with `reverse`), at most `limit`, after `since` when given.
   */
  history<T = any>(
    channel: string,
    options: { limit?: number; since?: StreamPosition; reverse?: boolean } = {},
    opts?: RequestOptions,
  ): Promise<{ publications: Publication<T>[]; offset: number; epoch: string }> {
    return this.request('$channels', { action: 'history', channel, ...options }, uuid(), opts);
  }

  private channelPush(payload: any): boolean {
    const name = payload.channel as string;
    const sub = this.channelSubs.get(name);
    switch (payload.action) {
      case 'message': {
        const pub: Publication = { offset: payload.offset, epoch: payload.epoch, data: payload.data, info: payload.info };
        if (sub) {
          if (!sub.accept(pub)) return true; // already delivered (recovery)
          this.emit('message', name, pub);
          sub.deliver(pub);
        } else this.emit('message', name, pub);
        return true;
      }
      case 'join':
      case 'leave':
        this.emit(payload.action, name, payload.info);
        sub?.presenceEvent(payload.action, payload.info);
        return true;
      case 'subscribed':
        this.emit('subscribed', name, payload);
        for (const p of payload.publications ?? []) this.emit('message', name, p);
        return true;
      case 'unsubscribed':
        this.emit('unsubscribed', name);
        sub?.serverUnsubscribed();
        return true;
    }
    return false;
  }

  // ---- signals -----------------------------------------------------------------

  /** call calls a signal: it resolves with the server's answer ({job_id} when queued, the result of a sync signal). */
  call<T = any>(name: string, kwargs: Record<string, unknown> = {}, opts?: RequestOptions): Promise<T> {
    return this.request('$signals', { action: 'call', signal: name, kwargs }, uuid(), opts);
  }

  /** onSignal calls fn for every push of a signal; it returns the function that stops it. */
  onSignal(name: string, fn: (kwargs: any, msg: SignalMessage) => void): () => void {
    let set = this.signalHandlers.get(name);
    if (!set) this.signalHandlers.set(name, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
    };
  }

  private signalPush(payload: any): void {
    const msg: SignalMessage = { signal: payload.signal, kwargs: payload.kwargs ?? {}, signal_id: payload.signal_id };
    for (const key of [msg.signal, '*']) {
      const set = this.signalHandlers.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(msg.kwargs, msg);
        } catch (err) {
          reportLater(err);
        }
      }
    }
  }
}

/**
 * Resources maps resource names to their record types. `switchyard codegen
 * ts` generates an augmentation of it, so `client.resource("todos")` knows
 * the fields of a todo; without it, any name and any record are accepted.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface Resources {}

/** ResourceName is a declared resource's name (any string without generated types). */
export type ResourceName = keyof Resources extends never ? string : Extract<keyof Resources, string>;
/** RecordOf is the record type of a resource (any without generated types). */
export type RecordOf<K> = K extends keyof Resources ? Resources[K] : any;

/** ResourceHandle is a resource's operations, typed by its record. */
export class ResourceHandle<T> {
  constructor(
    readonly client: Client,
    readonly name: string,
  ) {}
  create(data: Partial<T>, opts?: RequestOptions): Promise<T> {
    return this.client.request(this.name, { action: 'create', data }, uuid(), opts);
  }
  retrieve(pk: number, opts?: RequestOptions): Promise<T> {
    return this.client.request(this.name, { action: 'retrieve', pk }, uuid(), opts);
  }
  /** list returns the rows (all of them, or a page with limit/offset). */
  list(query: ListQuery<T> = {}, opts?: RequestOptions): Promise<T[]> {
    const { limit, offset, ...data } = query;
    if (limit !== undefined || offset !== undefined) {
      return this.client
        .request<{ results: T[] }>(this.name, { action: 'list', data, limit, offset }, uuid(), opts)
        .then((r) => r.results);
    }
    return this.client.request(this.name, { action: 'list', data }, uuid(), opts);
  }
  update(pk: number, data: Partial<T>, opts?: RequestOptions): Promise<T> {
    return this.client.request(this.name, { action: 'update', pk, data }, uuid(), opts);
  }
  patch(pk: number, data: Partial<T>, opts?: RequestOptions): Promise<T> {
    return this.client.request(this.name, { action: 'patch', pk, data }, uuid(), opts);
  }
  delete(pk: number, opts?: RequestOptions): Promise<null> {
    return this.client.request(this.name, { action: 'delete', pk }, uuid(), opts);
  }
  /** subscribe follows one record, with catch-up after reconnects. */
  subscribe(pk: number, callback: (data: T, action: 'update' | 'delete' | 'create') => void): SubscriptionPromise<unknown> {
    return this.client.subscribe(this.name, pk, callback as any);
  }
  /** live keeps the rows matching a filter (see Client.liveQuery). */
  live(options: LiveQueryOptions<T> = {}): LiveQuery<T> {
    return new LiveQuery<T>(this.client, this.name, options, this.client.options.pkField);
  }
}

/** ListQuery is list's query: equality filters, ordering, search, and paging. */
export interface ListQuery<T> {
  filter?: Partial<T>;
  ordering?: string | string[];
  search?: string;
  limit?: number;
  offset?: number;
}
