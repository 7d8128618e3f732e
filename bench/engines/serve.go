package main

// The child side of the harness: `engines serve <candidate> -listen ADDR`,
// plus the helpers every candidate uses (announce, statsHandler, track).

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// announcePrefix starts the one line of the child's stdout that the parent
// waits for; anything else a library prints on stdout is ignored.
const announcePrefix = "LISTEN "

// childLifetime bounds a server child even if its parent vanished without
// killing it (the parent also sets Pdeathsig).
const childLifetime = 15 * time.Minute

// wsPath is the path every candidate upgrades on.
const wsPath = "/ws"

// helloMessage is the text message each server sends right after the upgrade.
const helloMessage = "hello"

// tracker counts the WebSocket connections a child holds open.
type tracker struct{ n atomic.Int64 }

func (t *tracker) opened() { t.n.Add(1) }
func (t *tracker) closed() { t.n.Add(-1) }

// track is the child's one connection counter, reported by /stats.
var track tracker

// announce prints the listen address for the parent; call it once.
func announce(addr net.Addr) {
	fmt.Printf("%s%s\n", announcePrefix, addr.String())
}

// stats is the JSON body of GET /stats.
type stats struct {
	Connected    int64  `json:"connected"`
	HeapInuse    uint64 `json:"heap_inuse"`
	HeapAlloc    uint64 `json:"heap_alloc"`
	HeapObjects  uint64 `json:"heap_objects"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"`
	HeapReleased uint64 `json:"heap_released"`
	NumGoroutine int    `json:"num_goroutine"`
	NumGC        uint32 `json:"num_gc"`
}

// statsHandler serves GET /stats. With gc=1 it runs runtime.GC() first; with
// free=1 it runs debug.FreeOSMemory() (a GC plus returning freed pages to the
// OS) first. The figures are read after that.
func statsHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("gc") == "1" {
		runtime.GC()
	}
	if q.Get("free") == "1" {
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := stats{
		Connected:    track.n.Load(),
		HeapInuse:    ms.HeapInuse,
		HeapAlloc:    ms.HeapAlloc,
		HeapObjects:  ms.HeapObjects,
		StackInuse:   ms.StackInuse,
		Sys:          ms.Sys,
		HeapReleased: ms.HeapReleased,
		NumGoroutine: runtime.NumGoroutine(),
		NumGC:        ms.NumGC,
	}
	body, _ := json.Marshal(s)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	_, _ = w.Write(body)
}

// listenAnnounce listens on addr (TCP) and announces the chosen address.
func listenAnnounce(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	announce(ln.Addr())
	return ln, nil
}

// serveHTTP runs a plain net/http server with /stats and the given /ws
// handler on addr: the common shape of the net/http based candidates.
func serveHTTP(addr string, ws http.HandlerFunc) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", statsHandler)
	mux.HandleFunc("GET "+wsPath, ws)
	ln, err := listenAnnounce(addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// candidateNames lists the registry, sorted.
func candidateNames() []string {
	names := make([]string, 0, len(candidates))
	for n := range candidates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// serveMain is the child: `serve <candidate> -listen ADDR`.
func serveMain(args []string) error {
	if len(args) < 1 {
		return errors.New("usage: engines serve <candidate> [-listen 127.0.0.1:0]")
	}
	name := args[0]
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (loopback only)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}
	serve, ok := candidates[name]
	if !ok {
		return fmt.Errorf("unknown candidate %q (have: %s)", name, strings.Join(candidateNames(), ", "))
	}
	time.AfterFunc(childLifetime, func() {
		fmt.Fprintf(os.Stderr, "serve %s: lifetime of %v reached, exiting\n", name, childLifetime)
		os.Exit(3)
	})
	return serve(*listen)
}

// checkLoopback refuses any listen address that is not on the loopback
// interface: the harness only ever targets 127.0.0.1.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not a loopback address", addr)
	}
	return nil
}
