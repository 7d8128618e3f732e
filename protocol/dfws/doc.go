// Package dfws speaks the df_websockets wire (d9pouces/df_websockets
// 1.2.5, its unmodified df_websockets.min.js) on a socket at /ws/: signals
// called from the browser and pushed to it, for windows whose topics the
// application set when it rendered the page.
//
// The bootstrap: a page view calls the server API (POST
// /api/server/windows {topics, user?}), which calls NewWindow: a window
// key of 32 [a-z0-9], the page's topics serialized as df_websockets does
// (Topic; the window always joins WINDOW and BROADCAST, and USER with a
// user) and kept by the signal service's window store for
// signals.window_ttl, and two ready Set-Cookie values, dfwsurl (the
// socket's URL, quote_plus-encoded) and dfwskey (the key), with
// df_websockets' attributes. The JS client reads dfwsurl and opens the
// socket; the browser sends dfwskey with the handshake, and the
// connection becomes the signal window of that key, with its topics. A
// missing or unknown key is accepted, with no topics.
//
// Frames, all text:
//
//	C→S --heartbeat--                      S→C --heartbeat-- (verbatim)
//	C→S {"signal": name, "opts": {...}}    a call, run by the signal service's registry;
//	                                       never answered: a call that is not run is logged
//	S→C {"signal": name, "opts": {...}, "signal_id": uuid4}   a trigger, one id per trigger
//
// Anything else (not JSON, no signal, no opts) is ignored; the socket
// stays open.
//
// The package decodes frames, calls the signal service and encodes its
// pushes; the rules (who may call, argument validation, rates, topics)
// are the service's. Who a connection is comes from Config.Identify. It
// imports no other protocol package.
//
// Concurrency: frames of one connection are handled in order (the ws
// engine never runs two of its handler calls at once); pushes and
// heartbeat answers go through the connection's hub session outbox.
package dfws
