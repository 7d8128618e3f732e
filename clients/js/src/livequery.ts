import type { Client } from './client';
import { uuid } from './uuid';
import { Emitter } from './emitter';
import { SwitchyardError, type ReplyPayload } from './errors';

/** Options of a live query. */
export interface LiveQueryOptions<T = any> {
  /** Equality on declared fields, as list's filter. */
  filter?: Partial<T>;
  /** Keep rows sorted by these fields ("-field" descending); without it, new rows are appended. */
  ordering?: string | string[];
  /** The records' primary key (default: the client's pkField, else "pk" when records have one, else "id"). */
  pkField?: string;
}

/** Events of a live query. */
export type LiveQueryEvents<T> = {
  /** A row entered the query: created, or changed into the filter. */
  enter: (row: T) => void;
  /** A row of the query changed. */
  update: (row: T, previous: T) => void;
  /** A row left the query: deleted, or changed out of the filter (or out of what you may read). */
  leave: (row: T) => void;
  /** The rows changed (once per batch). */
  change: (rows: readonly T[]) => void;
  error: (err: SwitchyardError) => void;
};

/**
 * LiveQuery is a reactive list: the rows of a resource matching a filter,
 * kept in sync by the server's events. After a reconnect it lists again
 * and reports the difference as enter/update/leave, so nothing is lost.
 *
 * For React: `const rows = useSyncExternalStore(q.subscribe, q.getSnapshot)`.
 * getSnapshot returns the same array until something changes.
 */
export class LiveQuery<T = any> extends Emitter<LiveQueryEvents<T>> {
  /** 'loading' until the first rows, then 'ready'; 'error' when the server refused the query; 'closed' after close. */
  status: 'loading' | 'ready' | 'error' | 'closed' = 'loading';
  /** The error that stopped the query. */
  error: SwitchyardError | undefined;
  /** Resolves with the first rows. */
  readonly ready: Promise<readonly T[]>;

  private rows: readonly T[] = [];
  private byPK = new Map<unknown, T>();
  private readonly requestId = uuid();
  private listener: number;
  private sentOn = 0;
  private buffer: any[] | null = null;
  private listeners = new Set<() => void>();
  private pkField: string | undefined;
  private readonly ordering: { field: string; desc: boolean }[];
  private settle!: { resolve: (rows: readonly T[]) => void; reject: (e: SwitchyardError) => void };

  constructor(
    private readonly client: Client,
    readonly resource: string,
    private readonly options: LiveQueryOptions<T>,
    clientPKField: string | undefined,
  ) {
    super();
    this.pkField = options.pkField ?? clientPKField;
    const ord = options.ordering === undefined ? [] : Array.isArray(options.ordering) ? options.ordering : [options.ordering];
    this.ordering = ord.map((f) => (f.startsWith('-') ? { field: f.slice(1), desc: true } : { field: f, desc: false }));
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.ready.catch(() => {}); // also reported by the error event
    this.listener = client.dispatcher.listen({ stream: resource, payload: { request_id: this.requestId } }, (m) => this.frame(m.payload));
    client.addResubscriber(this);
    this.resubscribe();
  }

  /** getSnapshot returns the rows now (an array that is replaced, never changed). */
  getSnapshot = (): readonly T[] => this.rows;

  /** subscribe calls listener after every change; it returns the function that stops it. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** @internal Subscribes and lists on the current connection (once). */
  resubscribe(): void {
    if (this.status === 'closed' || this.status === 'error' || this.client.state !== 'connected' || this.sentOn === this.client.connection) return;
    this.sentOn = this.client.connection;
    this.buffer = [];
    const filter = this.options.filter;
    const sub: Record<string, unknown> = { action: 'subscribe_list', request_id: this.requestId };
    if (filter) sub.filter = filter;
    this.client.sendNow({ stream: this.resource, payload: sub });
    const data: Record<string, unknown> = {};
    if (filter) data.filter = filter;
    if (this.ordering.length) data.ordering = this.ordering.map((o) => (o.desc ? '-' : '') + o.field);
    const connection = this.client.connection;
    this.client.list<T>(this.resource, data).then(
      (rows) => {
        if (connection === this.client.connection && this.status !== 'closed') this.reset(rows);
      },
      (err: SwitchyardError) => {
        if (err.code !== 'disconnected' && err.code !== 'closed') this.fail(err);
      },
    );
  }

  /** @internal */
  disconnected(): void {
    this.buffer = null;
  }

  private frame(payload: ReplyPayload): void {
    if (this.status === 'closed' || this.status === 'error') return;
    if (payload.action === 'subscribe_list') {
      if (Math.floor((payload.response_status as number) / 100) !== 2) this.fail(SwitchyardError.fromReply(payload));
      return;
    }
    if (this.buffer) this.buffer.push(payload);
    else if (this.apply(payload)) this.changed();
  }

  private pk(row: any): unknown {
    if (!this.pkField) this.pkField = row && 'pk' in row ? 'pk' : 'id';
    return row[this.pkField];
  }

  /** reset replaces the rows with a fresh list, reports the difference, then applies the events received meanwhile. */
  private reset(list: T[]): void {
    const old = this.byPK;
    const next = new Map<unknown, T>();
    for (const row of list) next.set(this.pk(row), row);
    this.byPK = next;
    this.rows = list;
    for (const [pk, row] of old) if (!next.has(pk)) this.emit('leave', row);
    for (const [pk, row] of next) {
      const prev = old.get(pk);
      if (prev === undefined) this.emit('enter', row);
      else if (JSON.stringify(prev) !== JSON.stringify(row)) this.emit('update', row, prev);
    }
    const buffered = this.buffer ?? [];
    this.buffer = null;
    for (const p of buffered) this.apply(p);
    if (this.status === 'loading') {
      this.status = 'ready';
      this.settle.resolve(this.rows);
    }
    this.changed();
  }

  /** apply applies one event; it reports whether the rows changed. */
  private apply(payload: any): boolean {
    const data = payload.data;
    if (!data || typeof data !== 'object') return false;
    if (payload.action === 'delete') {
      const pk = 'pk' in data ? data.pk : this.pk(data);
      const prev = this.byPK.get(pk);
      if (prev === undefined) return false;
      this.byPK.delete(pk);
      this.rows = this.rows.filter((r) => r !== prev);
      this.emit('leave', prev);
      return true;
    }
    if (payload.action !== 'create' && payload.action !== 'update') return false;
    const pk = this.pk(data);
    const prev = this.byPK.get(pk);
    this.byPK.set(pk, data);
    const rows = this.rows.slice();
    const at = prev === undefined ? -1 : rows.indexOf(prev);
    if (this.ordering.length === 0) {
      if (at >= 0) rows[at] = data;
      else rows.push(data);
    } else {
      if (at >= 0) rows.splice(at, 1);
      // Binary search: the first row that sorts after the new one.
      let lo = 0;
      let hi = rows.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.compare(rows[mid], data) <= 0) lo = mid + 1;
        else hi = mid;
      }
      rows.splice(lo, 0, data);
    }
    this.rows = rows;
    if (prev === undefined) this.emit('enter', data);
    else this.emit('update', data, prev);
    return true;
  }

  private compare(a: any, b: any): number {
    for (const { field, desc } of this.ordering) {
      const x = a[field];
      const y = b[field];
      if (x === y) continue;
      const c = x === null || x === undefined ? -1 : y === null || y === undefined ? 1 : x < y ? -1 : x > y ? 1 : 0;
      if (c !== 0) return desc ? -c : c;
    }
    const x = this.pk(a) as any;
    const y = this.pk(b) as any;
    return x < y ? -1 : x > y ? 1 : 0;
  }

  private changed(): void {
    this.emit('change', this.rows);
    for (const l of [...this.listeners]) l();
  }

  private fail(err: SwitchyardError): void {
    if (this.status === 'closed') return;
    const first = this.status === 'loading';
    this.status = 'error';
    this.error = err;
    this.client.dispatcher.cancel(this.listener);
    this.client.removeResubscriber(this);
    if (first) this.settle.reject(err);
    this.emit('error', err);
    for (const l of [...this.listeners]) l();
  }

  /** close ends the live query. */
  async close(): Promise<void> {
    if (this.status === 'closed') return;
    const wasLive = this.status !== 'error';
    this.status = 'closed';
    this.client.dispatcher.cancel(this.listener);
    this.client.removeResubscriber(this);
    if (wasLive && this.client.state === 'connected') {
      await this.client.request(this.resource, { action: 'unsubscribe_list' }, this.requestId).catch(() => {});
    }
  }
}
