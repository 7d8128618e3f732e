package ws

import (
	"net/http"
)

// An Acceptor is a handler that takes WebSocket upgrades itself. Accept,
// Require and AcceptAll return one; a handler that calls Upgrade can be
// one by having an AcceptsWebSocket method that returns true. Middleware
// lets upgrade requests through to acceptors only.
type Acceptor interface {
	http.Handler
	AcceptsWebSocket() bool
}

// router is what *http.ServeMux offers to find the handler of a request
// without running it.
type router interface {
	Handler(r *http.Request) (h http.Handler, pattern string)
}

// route returns the handler that would serve r below next, and whether
// next could name one (false: next routes requests in a way that cannot be
// looked at, or no pattern matched).
func route(next http.Handler, r *http.Request) (http.Handler, bool) {
	rt, ok := next.(router)
	if !ok {
		return next, true
	}
	h, pattern := rt.Handler(r)
	return h, pattern != ""
}

// accepts reports whether h takes upgrades itself.
func accepts(h http.Handler) bool {
	a, ok := h.(Acceptor)
	return ok && a.AcceptsWebSocket()
}

// Middleware is dwebsocket's WebSocketMiddleware without
// WEBSOCKET_ACCEPT_ALL: a WebSocket upgrade request whose handler did not
// opt in (Accept, Require, AcceptAll or another Acceptor) is answered 400
// before that handler runs, instead of reaching code written for plain
// HTTP. next is typically an *http.ServeMux, whose Handler method names
// the handler of a request; any other handler counts as the handler
// itself. Requests that are not upgrades, and upgrades to a path no
// pattern matches (404), go through unchanged.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsUpgradeRequest(r) && FromRequest(r) == nil {
			if h, found := route(next, r); found && !accepts(h) {
				WriteError(w, http.StatusBadRequest, "websocket_not_accepted", "this endpoint does not accept WebSocket connections")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// AcceptAll is dwebsocket's WEBSOCKET_ACCEPT_ALL: every handler behind it
// (typically an *http.ServeMux) accepts WebSocket upgrades as if wrapped
// in Accept with opts, and finds the connection with FromRequest. A
// handler behind it that is an Acceptor itself (Accept, Require) upgrades
// its requests with its own options. Plain HTTP requests go through
// unchanged.
func AcceptAll(next http.Handler, opts ...Option) http.Handler {
	return &acceptAll{next: next, upgrade: newConnHandler(next, false, opts)}
}

type acceptAll struct {
	next    http.Handler
	upgrade *connHandler
}

// AcceptsWebSocket implements Acceptor.
func (a *acceptAll) AcceptsWebSocket() bool { return true }

func (a *acceptAll) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !IsUpgradeRequest(r) || FromRequest(r) != nil {
		a.next.ServeHTTP(w, r)
		return
	}
	if h, found := route(a.next, r); found && accepts(h) {
		a.next.ServeHTTP(w, r) // that handler upgrades with its options
		return
	}
	a.upgrade.ServeHTTP(w, r)
}
