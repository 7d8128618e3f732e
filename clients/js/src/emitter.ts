/** A small typed event emitter (no dependency, same in Node and browsers). */
export class Emitter<Events extends Record<string, (...args: any[]) => void>> {
  private handlers: { [K in keyof Events]?: Events[K][] } = {};

  /** on adds a handler and returns the function that removes it. */
  on<K extends keyof Events>(event: K, fn: Events[K]): () => void {
    (this.handlers[event] ??= []).push(fn);
    return () => this.off(event, fn);
  }

  /** off removes a handler added with on. */
  off<K extends keyof Events>(event: K, fn: Events[K]): void {
    const list = this.handlers[event];
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  /** emit calls the handlers of an event; a handler that throws does not stop the others. */
  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const list = this.handlers[event];
    if (!list || list.length === 0) return;
    for (const fn of list.slice()) {
      try {
        fn(...args);
      } catch (err) {
        reportLater(err);
      }
    }
  }
}

/** reportLater rethrows an application's exception outside the client's call stack. */
export function reportLater(err: unknown): void {
  setTimeout(() => {
    throw err;
  }, 0);
}
