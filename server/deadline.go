package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// limitRequests applies the HTTP time limits to every request that
// reaches a handler (net/http itself bounds the headers and the idle
// keep-alive time):
//
//   - reading the body: limits.read_timeout from when the handler starts,
//     lifted once the body has been read to its end (so a long-poll or a
//     slow query is never cut for it);
//   - writing the answer: limits.write_timeout from its first byte, so a
//     long-poll's wait does not count but a client that does not read
//     its answer is disconnected and the answer's memory freed;
//   - an answer given before the body was read (a 401, a 413, a 415)
//     closes the connection: net/http would otherwise try to drain the
//     rest of the body first, and a client trickling it would get no
//     answer at all.
//
// WebSocket upgrades are left alone once hijacked: the engine owns their
// deadlines. Requests in flight are counted so that Shutdown can wait for
// the handlers a forced close ended.
func (s *Server) limitRequests(next http.Handler) http.Handler {
	readTimeout := time.Duration(s.cfg.Limits.ReadTimeout)
	writeTimeout := time.Duration(s.cfg.Limits.WriteTimeout)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		s.active.Add(1)
		defer func() {
			s.active.Add(-1)
			s.inflight.Done()
		}()
		lw := &limitWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: writeTimeout}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			lw.rc.SetReadDeadline(time.Now().Add(readTimeout))
			lw.body = &limitBody{ReadCloser: r.Body, rc: lw.rc}
			r.Body = lw.body
		}
		next.ServeHTTP(lw, r)
		lw.arm() // an answer the handler left empty is written after this
	})
}

// limitBody lifts the read deadline once the body is read to its end.
type limitBody struct {
	io.ReadCloser
	rc *http.ResponseController

	mu   sync.Mutex
	done bool
}

func (b *limitBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.mu.Lock()
		if !b.done {
			b.done = true
			b.rc.SetReadDeadline(time.Time{})
		}
		b.mu.Unlock()
	}
	return n, err
}

// read reports whether the body was read to its end.
func (b *limitBody) read() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done
}

// limitWriter sets the write deadline at the answer's first byte.
type limitWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	body    *limitBody // nil: the request has no body

	armed, wroteHeader, hijacked bool
}

func (w *limitWriter) arm() {
	if w.armed || w.hijacked {
		return
	}
	w.armed = true
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
}

func (w *limitWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		if w.body != nil && !w.body.read() {
			w.Header().Set("Connection", "close")
		}
		w.arm()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *limitWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Hijack hands the connection over (a WebSocket upgrade): its deadlines
// are no longer this request's.
func (w *limitWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach Flush and the deadlines.
func (w *limitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
