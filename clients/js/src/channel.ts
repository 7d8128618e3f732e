import type { Client, RequestOptions } from './client';
import { uuid } from './uuid';
import { reportLater } from './emitter';
import { SwitchyardError, type ReplyPayload } from './errors';

/** A channel's position: the offset of a message in the channel's history, and the history's epoch. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** The publishing client of a message, in presence lists and join/leave. */
export interface ClientInfo {
  client_id: string;
  user: string;
  info?: unknown;
}

/** A message of a channel. */
export interface Publication<T = any> {
  offset: number;
  epoch?: string;
  data: T;
  /** The publishing client; absent when the server published. */
  info?: ClientInfo;
}

/** What a (re)subscription found. */
export interface SubscribedInfo {
  channel: string;
  offset: number;
  epoch: string;
  /** Whether the messages missed since the last position were delivered. */
  recovered: boolean;
  /** True after a reconnect. */
  resubscribed: boolean;
}

/** The gap reported when the server could not recover what was missed: reload your state. */
export interface GapInfo {
  channel: string;
  /** The last position the client had seen. */
  since: StreamPosition;
  /** The channel's position now. */
  position: StreamPosition;
}

/** Handlers of a channel subscription. */
export interface ChannelHandlers<T = any> {
  onMessage?: (data: T, pub: Publication<T>) => void;
  onJoin?: (info: ClientInfo) => void;
  onLeave?: (info: ClientInfo) => void;
  /** Called when messages were missed and cannot be recovered (history trimmed, expired or lost). */
  onGap?: (gap: GapInfo) => void;
  onSubscribed?: (info: SubscribedInfo) => void;
  /** A resubscription was refused (the subscription ended) or the server unsubscribed the client. */
  onError?: (err: SwitchyardError) => void;
  /** Start from a known position (saved earlier): the messages after it are delivered first. */
  since?: StreamPosition;
}

/**
 * ChannelSubscription is a client's subscription to a channel. It keeps the
 * position of the last message delivered; after a reconnect the client
 * subscribes again with `since`, so the missed messages come first, in
 * order and once each, or onGap says they cannot.
 */
export class ChannelSubscription<T = any> {
  /** 'subscribing' until the server's reply (and again while reconnecting), then 'subscribed'; 'unsubscribed' at the end. */
  state: 'subscribing' | 'subscribed' | 'unsubscribed' = 'subscribing';
  /** The offset of the last message delivered (0 in a namespace without history). */
  offset = 0;
  /** The channel's epoch ('' in a namespace without history). */
  epoch = '';
  /** Resolves with the first subscription's result; rejects when the server refuses it. */
  readonly ready: Promise<SubscribedInfo>;

  private readonly requestId = uuid();
  private listener = 0;
  private sentOn = 0;
  private sentSince: StreamPosition | null = null;
  private settled = false;
  private settle!: { resolve: (v: SubscribedInfo) => void; reject: (e: SwitchyardError) => void };
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: Client,
    readonly channel: string,
    private readonly handlers: ChannelHandlers<T>,
  ) {
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.ready.catch(() => {}); // handled through onError too
    if (handlers.since) {
      this.offset = handlers.since.offset;
      this.epoch = handlers.since.epoch;
    }
  }

  /** @internal */
  start(): void {
    this.listener = this.client.dispatcher.listen({ stream: '$channels', payload: { action: 'subscribe', request_id: this.requestId } }, (m) =>
      this.reply(m.payload),
    );
    const timeout = this.client.options.requestTimeout ?? 10000;
    if (timeout > 0) {
      this.timer = setTimeout(() => {
        if (!this.settled) this.end(new SwitchyardError('timeout', `no reply to subscribe ${this.channel} within ${timeout} ms`), true);
      }, timeout);
    }
    this.resubscribe();
  }

  /** @internal Sends the subscription on the current connection (once). */
  resubscribe(): void {
    if (this.state === 'unsubscribed' || this.client.state !== 'connected' || this.sentOn === this.client.connection) return;
    this.sentOn = this.client.connection;
    this.state = 'subscribing';
    const payload: Record<string, unknown> = { action: 'subscribe', channel: this.channel, request_id: this.requestId };
    this.sentSince = this.epoch ? { offset: this.offset, epoch: this.epoch } : null;
    if (this.sentSince) payload.since = this.sentSince;
    this.client.sendNow({ stream: '$channels', payload });
  }

  /** @internal */
  disconnected(): void {
    if (this.state !== 'unsubscribed') this.state = 'subscribing';
  }

  private reply(payload: ReplyPayload): void {
    if (this.state === 'unsubscribed') return;
    if (Math.floor((payload.response_status as number) / 100) !== 2) {
      this.end(SwitchyardError.fromReply(payload), true);
      return;
    }
    const d = payload.data as { offset: number; epoch: string; recovered: boolean; publications: Publication<T>[] };
    const since = this.sentSince;
    const resubscribed = this.settled;
    this.state = 'subscribed';
    if (since && !(d.recovered && d.epoch === since.epoch)) {
      this.offset = d.offset;
      this.epoch = d.epoch;
      this.call(() => this.handlers.onGap?.({ channel: this.channel, since, position: { offset: d.offset, epoch: d.epoch } }));
    } else {
      if (!since) {
        this.offset = d.offset;
        this.epoch = d.epoch;
      }
      for (const pub of d.publications ?? []) {
        if (this.accept(pub)) this.deliver(pub);
      }
      if (d.offset > this.offset) this.offset = d.offset;
    }
    const info: SubscribedInfo = { channel: this.channel, offset: this.offset, epoch: this.epoch, recovered: Boolean(since && d.recovered), resubscribed };
    if (!this.settled) {
      this.settled = true;
      clearTimeout(this.timer);
      this.settle.resolve(info);
    }
    this.call(() => this.handlers.onSubscribed?.(info));
  }

  /** @internal accept reports whether a message is new, and moves the position past it. */
  accept(pub: Publication): boolean {
    if (pub.offset > 0 && this.epoch && (pub.epoch === undefined || pub.epoch === this.epoch)) {
      if (pub.offset <= this.offset) return false;
      this.offset = pub.offset;
    } else if (pub.offset > 0 && pub.epoch) {
      this.epoch = pub.epoch;
      this.offset = pub.offset;
    }
    return true;
  }

  /** @internal */
  deliver(pub: Publication): void {
    this.call(() => this.handlers.onMessage?.(pub.data, pub));
  }

  /** @internal */
  presenceEvent(action: 'join' | 'leave', info: ClientInfo): void {
    this.call(() => (action === 'join' ? this.handlers.onJoin?.(info) : this.handlers.onLeave?.(info)));
  }

  /** @internal The server ended the subscription (server API unsubscribe). */
  serverUnsubscribed(): void {
    this.end(new SwitchyardError('forbidden', `the server unsubscribed this client from ${this.channel}`), false);
  }

  private end(err: SwitchyardError, refused: boolean): void {
    if (this.state === 'unsubscribed') return;
    this.stop();
    if (!this.settled) {
      this.settled = true;
      this.settle.reject(err);
    }
    if (refused || this.handlers.onError) this.call(() => this.handlers.onError?.(err));
  }

  private stop(): void {
    this.state = 'unsubscribed';
    clearTimeout(this.timer);
    this.client.dispatcher.cancel(this.listener);
    this.client.dropChannel(this);
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      reportLater(err);
    }
  }

  /** position returns the last position delivered: save it to resume later with `since`. */
  position(): StreamPosition {
    return { offset: this.offset, epoch: this.epoch };
  }

  /** unsubscribe ends the subscription. */
  async unsubscribe(opts?: RequestOptions): Promise<void> {
    if (this.state === 'unsubscribed') return;
    this.stop();
    if (!this.settled) {
      this.settled = true;
      this.settle.reject(new SwitchyardError('closed', `unsubscribed from ${this.channel}`));
    }
    if (this.client.state === 'connected') {
      await this.client.request('$channels', { action: 'unsubscribe', channel: this.channel }, uuid(), opts).catch((err: SwitchyardError) => {
        if (err.code !== 'bad_request' && err.code !== 'disconnected') throw err; // 400: not subscribed (never was on this connection)
      });
    }
  }

  /** publish publishes on this channel. */
  publish(data: T, opts?: RequestOptions): Promise<StreamPosition> {
    return this.client.publish(this.channel, data, opts);
  }

  /** presence lists the channel's subscribers. */
  presence(opts?: RequestOptions): Promise<ClientInfo[]> {
    return this.client.presence(this.channel, opts);
  }

  /** history returns the channel's kept messages. */
  history(options: { limit?: number; since?: StreamPosition; reverse?: boolean } = {}, opts?: RequestOptions) {
    return this.client.history<T>(this.channel, options, opts);
  }
}
