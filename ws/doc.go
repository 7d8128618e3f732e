// Package ws serves WebSocket connections (RFC 6455) from net/http.
//
// It carries the dwebsocket idea to Go: one route can answer plain HTTP and
// WebSocket requests with the same handler ([Accept]), or demand a WebSocket
// ([Require]); inside the handler, [FromRequest] returns the connection and
// its methods wait for, read, count, iterate and send messages. The
// connection closes when the handler returns.
//
// For servers that hold many mostly idle connections, [Upgrade] hands a
// connection to an [Engine] and returns at once: on Linux the engine watches
// the sockets with epoll, so an idle connection holds no goroutine and no
// read buffer, and a [Handler] is called for each message. Such an engine
// takes a plain TCP or Unix socket out of package net after the handshake
// (a duplicate of its descriptor kept as an *os.File; writes still wait in
// the runtime's netpoller under their deadlines), so an idle connection
// does not keep net's per-socket state either; [Conn.RemoteAddr] then
// asks the kernel. An [Upgrader]
// does the same with its options resolved once, for handlers that upgrade
// many connections. Both styles share one frame reader, the same limits
// and the same close codes.
//
// Limits have safe defaults: messages over 64 KiB are refused with close
// code 1009, text that is not UTF-8 with 1007, protocol violations with
// 1002; cross-origin browser requests are refused unless allowed;
// permessage-deflate is off unless enabled.
//
// Concurrency: every method of [Conn] is safe for concurrent use. Handler
// callbacks for one connection are never concurrent and arrive in the order
// of the frames.
package ws
