import { reportLater } from './emitter';

/** A selector matches a message when every key it has matches (deep, partial), like lodash.isMatch. */
export type Selector = Record<string, unknown>;
export type Handler = (message: any) => void;

interface Listener {
  id: number;
  selector: Selector;
  handler: Handler;
  once: boolean;
  key: string | null;
}

/** isMatch reports whether every key of the selector is in the value, recursively for objects. */
export function isMatch(value: unknown, selector: unknown): boolean {
  if (selector === value) return true;
  if (selector === null || typeof selector !== 'object') {
    return Number.isNaN(selector) && Number.isNaN(value);
  }
  if (value === null || typeof value !== 'object') return false;
  for (const k of Object.keys(selector as object)) {
    if (!isMatch((value as Record<string, unknown>)[k], (selector as Record<string, unknown>)[k])) return false;
  }
  return true;
}

function keyOf(stream: unknown, requestID: unknown): string | null {
  if (typeof stream !== 'string' || requestID === undefined) return null;
  return stream + '\u0000' + (typeof requestID === 'string' ? 's' + requestID : JSON.stringify(requestID));
}

/**
 * Dispatcher is dcrf-client's FifoDispatcher: listeners are called, in the
 * order they were added, for every message their selector matches.
 * Selectors naming a stream and a payload.request_id (all the client's own)
 * are found through an index, so a message costs one map lookup.
 */
export class Dispatcher {
  private next = 1;
  private indexed = new Map<string, Listener[]>();
  private general: Listener[] = [];
  private byID = new Map<number, Listener>();

  /** listen calls handler for every matching message until cancel; it returns the listener's id. */
  listen(selector: Selector, handler: Handler): number {
    return this.add(selector, handler, false);
  }

  /** once calls handler for the first matching message only. */
  once(selector: Selector, handler: Handler): number {
    return this.add(selector, handler, true);
  }

  /** cancel removes a listener; it reports whether there was one. */
  cancel(id: number): boolean {
    const l = this.byID.get(id);
    if (!l) return false;
    this.byID.delete(id);
    const list = l.key === null ? this.general : this.indexed.get(l.key);
    if (list) {
      const i = list.indexOf(l);
      if (i >= 0) list.splice(i, 1);
      if (l.key !== null && list.length === 0) this.indexed.delete(l.key);
    }
    return true;
  }

  /** dispatch calls the listeners of a message; it returns how many were called. */
  dispatch(message: any): number {
    let n = 0;
    const payload = message && message.payload;
    const key = payload && typeof payload === 'object' ? keyOf(message.stream, payload.request_id) : null;
    const bucket = key === null ? undefined : this.indexed.get(key);
    const candidates = bucket ? (this.general.length ? bucket.concat(this.general) : bucket.slice()) : this.general.slice();
    for (const l of candidates) {
      if (!this.byID.has(l.id) || !isMatch(message, l.selector)) continue;
      if (l.once) this.cancel(l.id);
      n++;
      try {
        l.handler(message);
      } catch (err) {
        reportLater(err);
      }
    }
    return n;
  }

  private add(selector: Selector, handler: Handler, once: boolean): number {
    const payload = selector.payload as Record<string, unknown> | undefined;
    const key = payload && typeof payload === 'object' ? keyOf(selector.stream, payload.request_id) : null;
    const l: Listener = { id: this.next++, selector, handler, once, key };
    this.byID.set(l.id, l);
    if (key === null) this.general.push(l);
    else {
      const list = this.indexed.get(key);
      if (list) list.push(l);
      else this.indexed.set(key, [l]);
    }
    return l.id;
  }
}
