/**
 * @switchyard/client: the client of a Switchyard server's `/live` socket.
 *
 * ```js
 * import { connect } from '@switchyard/client'; // or, with no build step: from '/switchyard.js'
 * const sy = connect('wss://example.com/live', { getToken });
 * const todos = sy.liveQuery('todos', { filter: { done: false }, ordering: '-id' });
 * ```
 *
 * Code written for dcrf-client works by changing its import: the default
 * export has dcrf-client's connect and createClient.
 */
import { Client, type ClientOptions } from './client';

export { Client, ResourceHandle, Transport, uuid } from './client';
export type {
  ClientOptions,
  ClientEvents,
  ConnectedInfo,
  DisconnectInfo,
  ListQuery,
  ReconnectOptions,
  RecordOf,
  RequestOptions,
  ResourceName,
  Resources,
  SignalMessage,
  State,
  SubscribeOptions,
  SubscriptionPromise,
  WebSocketConstructor,
  WebSocketLike,
} from './client';
export { LiveQuery } from './livequery';
export type { LiveQueryEvents, LiveQueryOptions } from './livequery';
export { ChannelSubscription } from './channel';
export type { ChannelHandlers, ClientInfo, GapInfo, Publication, StreamPosition, SubscribedInfo } from './channel';
export { SwitchyardError } from './errors';
export type { ErrorCode, ReplyPayload } from './errors';
export { Dispatcher, isMatch } from './dispatcher';

/** connect creates a client and opens its connection. */
export function connect(url: string, options?: ClientOptions): Client {
  const c = new Client(url, options);
  c.initialize();
  return c;
}

/** createClient creates a client without connecting: call initialize() (dcrf-client's createClient). */
export function createClient(url: string, options?: ClientOptions): Client {
  return new Client(url, options);
}

export default { connect, createClient };
