package main

// The registry of server candidates. Adding one takes a file
// server_<name>.go with a func(listen string) error and one line here; the
// harness (main.go, measure.go, client.go) does not change.
//
// The contract every candidate's function keeps (see serve.go for the
// helpers it uses):
//
//   - listen on the given address (always 127.0.0.1:0 from the harness) and,
//     once it accepts connections, call announce(ln.Addr()) exactly once: the
//     parent reads the address from the child's stdout;
//   - serve GET /stats with statsHandler (same listener, plain HTTP/1.1);
//   - serve GET /ws: complete the RFC 6455 upgrade (no compression, no
//     subprotocol), call track.opened() and send one text message "hello",
//     then keep the connection open as a real server would for an idle
//     client: echo every text message, answer ping with pong and close with
//     close, and call track.closed() when the connection ends;
//   - block until the process is killed (or return an error if serving fails).

var candidates = map[string]func(listen string) error{
	"gorilla":      serveGorilla,
	"gws":          serveGws,
	"gobwas-epoll": serveGobwasEpoll,
	"nbio":         serveNbio,

	// The project's own ws package.
	"switchyard-engine": serveSwitchyardEngine,
	"switchyard-accept": serveSwitchyardAccept,

	// Variants for comparison (not in the default list): the libraries'
	// default settings, and gorilla with its read loop moved out of the
	// net/http handler goroutine.
	"gorilla-default":  serveGorillaDefault,
	"gorilla-detached": serveGorillaDetached,
	"gws-default":      serveGwsDefault,
}

// defaultCandidates is the -candidates default, in the order they run.
const defaultCandidates = "gorilla,gws,gobwas-epoll,nbio,switchyard-engine,switchyard-accept"
