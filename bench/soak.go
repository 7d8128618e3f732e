package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// SoakConfig configures the soak scenario.
type SoakConfig struct {
	Target   *url.URL
	APIKey   string
	Conns    int           // connections kept open (each subscribed to a channel)
	Duration time.Duration // how long the load runs between the two measurements
	Warmup   time.Duration // load before the first measurement, so both see a warm server
	Settle   time.Duration // quiet time before each measurement
	Churn    int           // connections closed and replaced per second
	Channels int           // subscriber i joins channel i % Channels
	Rate     int           // publications per second through the server API
	Writes   int           // resource writes (create, update, delete in turn) per second
	Writers  int           // connections doing the resource writes
	Watchers int           // of the Conns, how many also watch every row (subscribe_list)
	// Tolerance is the growth allowed between the two measurements, as a
	// fraction (default 0.05).
	Tolerance float64
	Progress  io.Writer
}

// SoakFigure is one server figure at the start and the end.
type SoakFigure struct {
	Start  float64 `json:"start"`
	End    float64 `json:"end"`
	Change float64 `json:"change"` // (end − start) / start
	Pass   bool    `json:"pass"`
}

// SoakResult is what the soak scenario measured.
type SoakResult struct {
	Scenario              string     `json:"scenario"`
	Conns                 int        `json:"conns"`
	Seconds               float64    `json:"seconds"`
	Tolerance             float64    `json:"tolerance"`
	RSS                   SoakFigure `json:"rss_bytes"`
	Goroutines            SoakFigure `json:"goroutines"`
	OpenFDs               SoakFigure `json:"open_fds"`
	HeapInuse             SoakFigure `json:"heap_inuse_bytes"` // for information: not judged
	ServerConns           [2]float64 `json:"server_connections"`
	PeakRSS               float64    `json:"peak_rss_bytes"`
	PeakGoroutines        float64    `json:"peak_goroutines"`
	Reconnects            int64      `json:"reconnects"`
	Publications          int64      `json:"publications"`
	ResourceWrites        int64      `json:"resource_writes"`
	Deliveries            int64      `json:"deliveries"` // channel messages and resource events received
	Errors                int64      `json:"errors"`     // failed dials, publications and writes
	UnexpectedDisconnects int64      `json:"unexpected_disconnects"`
	FirstError            string     `json:"first_error,omitempty"`
	Pass                  bool       `json:"pass"`
}

// soakConn is one client connection of the soak; its reader answers
// pings (the run outlasts the server's read timeout) and counts what is
// pushed.
type soakConn struct {
	c       net.Conn
	wmu     sync.Mutex
	closing atomic.Bool
}

func (s *soakConn) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := s.c.Write(b)
	return err
}

// soak is the state of one run.
type soak struct {
	cfg                  SoakConfig
	mu                   sync.Mutex
	slots                []*soakConn
	readers              sync.WaitGroup
	deliveries, unexpect atomic.Int64
	reconnects, errs     atomic.Int64
	pubs, writes         atomic.Int64
	firstErr             atomic.Value
	writers              []*writer // live for the whole run
}

func (s *soak) fail(err error) {
	if s.errs.Add(1) == 1 {
		s.firstErr.Store(err.Error())
	}
}

// Soak keeps Conns connections on /live (every one subscribed to a
// channel, Watchers of them also watching every row of bench_items) while
// connections are closed and replaced (Churn a second), the server API
// publishes (Rate a second) and Writers create, update and delete rows
// (Writes a second). The server's resident memory, goroutines and open
// descriptors are read from its /metrics after Warmup and after Duration,
// each time with the load paused for Settle; the run passes when none of
// them grew by more than Tolerance and nothing failed.
func Soak(ctx context.Context, cfg SoakConfig) (*SoakResult, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = 0.05
	}
	cfg.Channels = max(cfg.Channels, 1)
	cfg.Watchers = min(cfg.Watchers, cfg.Conns)
	s := &soak{cfg: cfg, slots: make([]*soakConn, cfg.Conns)}
	defer s.closeAll()

	// Connect everyone, 64 at a time.
	start := time.Now()
	jobs := make(chan int)
	var dialers sync.WaitGroup
	var dialErr atomic.Value
	for range 64 {
		dialers.Go(func() {
			for i := range jobs {
				sc, err := s.dial(ctx, i)
				if err != nil {
					dialErr.CompareAndSwap(nil, err)
					continue
				}
				s.mu.Lock()
				s.slots[i] = sc
				s.mu.Unlock()
			}
		})
	}
	tick := time.NewTicker(time.Second)
	for i := 0; i < cfg.Conns && ctx.Err() == nil && dialErr.Load() == nil; i++ {
		select {
		case jobs <- i:
		case <-tick.C:
			fmt.Fprintf(cfg.Progress, "soak: %d/%d connected\n", i, cfg.Conns)
			i--
		}
	}
	tick.Stop()
	close(jobs)
	dialers.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for range cfg.Writers {
		w, err := s.newWriter(ctx)
		if err != nil {
			return nil, err
		}
		s.writers = append(s.writers, w)
	}
	fmt.Fprintf(cfg.Progress, "soak: %d connected in %.1fs; warming up for %v\n", cfg.Conns, time.Since(start).Seconds(), cfg.Warmup)

	if err := s.load(ctx, cfg.Warmup, nil); err != nil {
		return nil, err
	}
	before, err := s.measure(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "soak: start: RSS %.1f MB, %.0f goroutines, %.0f open fds; load for %v\n",
		before["process_resident_memory_bytes"]/1e6, before["go_goroutines"], before["process_open_fds"], cfg.Duration)
	pubs0, writes0, reconnects0, deliveries0 := s.pubs.Load(), s.writes.Load(), s.reconnects.Load(), s.deliveries.Load()
	peakRSS, peakG := before["process_resident_memory_bytes"], before["go_goroutines"]
	loadStart := time.Now()
	err = s.load(ctx, cfg.Duration, func(m map[string]float64) {
		peakRSS = max(peakRSS, m["process_resident_memory_bytes"])
		peakG = max(peakG, m["go_goroutines"])
	})
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(loadStart)
	after, err := s.measure(ctx)
	if err != nil {
		return nil, err
	}
	fig := func(name string) SoakFigure {
		f := SoakFigure{Start: before[name], End: after[name]}
		if f.Start > 0 {
			f.Change = (f.End - f.Start) / f.Start
		}
		f.Pass = f.End <= f.Start*(1+cfg.Tolerance)
		return f
	}
	res := &SoakResult{
		Scenario:              "soak",
		Conns:                 cfg.Conns,
		Seconds:               elapsed.Seconds(),
		Tolerance:             cfg.Tolerance,
		RSS:                   fig("process_resident_memory_bytes"),
		Goroutines:            fig("go_goroutines"),
		OpenFDs:               fig("process_open_fds"),
		HeapInuse:             fig("go_memstats_heap_inuse_bytes"),
		ServerConns:           [2]float64{before["switchyard_connections"], after["switchyard_connections"]},
		PeakRSS:               peakRSS,
		PeakGoroutines:        peakG,
		Reconnects:            s.reconnects.Load() - reconnects0,
		Publications:          s.pubs.Load() - pubs0,
		ResourceWrites:        s.writes.Load() - writes0,
		Deliveries:            s.deliveries.Load() - deliveries0,
		Errors:                s.errs.Load(),
		UnexpectedDisconnects: s.unexpect.Load(),
	}
	res.FirstError, _ = s.firstErr.Load().(string)
	res.Pass = res.RSS.Pass && res.Goroutines.Pass && res.OpenFDs.Pass && res.Errors == 0 && res.UnexpectedDisconnects == 0 &&
		int(res.ServerConns[0]) == cfg.Conns+cfg.Writers && int(res.ServerConns[1]) == cfg.Conns+cfg.Writers
	return res, nil
}

// dial opens connection i and subscribes it (and, for a watcher, its
// live query).
func (s *soak) dial(ctx context.Context, i int) (*soakConn, error) {
	c, br, err := subscribeLive(ctx, s.cfg.Target, fmt.Sprintf("soak%d", i%s.cfg.Channels))
	if err != nil {
		return nil, err
	}
	if i < s.cfg.Watchers {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(maskedFrame(fmt.Appendf(nil, `{"stream":%q,"payload":{"action":"subscribe_list","request_id":"watch"}}`, ResourceBenchName)))
		for {
			reply, err := readFrame(br)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("subscribe_list: %w", err)
			}
			if bytes.Contains(reply, []byte(`"request_id":"watch"`)) {
				if !bytes.Contains(reply, []byte(`"response_status":201`)) {
					c.Close()
					return nil, fmt.Errorf("subscribe_list: %q", reply)
				}
				break
			}
		}
		c.SetDeadline(time.Time{})
	}
	sc := &soakConn{c: c}
	s.readers.Go(func() { s.read(sc, br) })
	return sc, nil
}

// read counts pushed frames and answers pings until the connection ends.
func (s *soak) read(sc *soakConn, br *bufio.Reader) {
	for {
		op, p, err := readAnyFrame(br)
		if err == nil && op == 0x8 {
			err = fmt.Errorf("closed by the server: %q", p)
		}
		if err != nil {
			if !sc.closing.Load() {
				if s.unexpect.Add(1) == 1 {
					s.firstErr.CompareAndSwap(nil, "unexpected disconnect: "+err.Error())
				}
			}
			return
		}
		switch op {
		case 0x9:
			sc.write(controlFrame(0xA, p))
		case 0x1, 0x2:
			s.deliveries.Add(1)
		}
	}
}

// load runs churn, publications and resource writes for d, then stops
// them; every 10 s it prints a progress line with the server's figures
// (passed to sample).
func (s *soak) load(ctx context.Context, d time.Duration, sample func(map[string]float64)) error {
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.churn(lctx) })
	wg.Go(func() { s.publish(lctx) })
	wg.Go(func() { s.write(lctx, s.writers) })
	wg.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		begin := time.Now()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			m, err := scrape(lctx, s.cfg.Target)
			if err != nil {
				continue
			}
			if sample != nil {
				sample(m)
			}
			fmt.Fprintf(s.cfg.Progress, "soak: %v: RSS %.1f MB, %.0f goroutines, %.0f fds, %.0f conns; %d reconnects, %d published, %d writes, %d delivered, %d errors\n",
				time.Since(begin).Round(time.Second), m["process_resident_memory_bytes"]/1e6, m["go_goroutines"], m["process_open_fds"], m["switchyard_connections"],
				s.reconnects.Load(), s.pubs.Load(), s.writes.Load(), s.deliveries.Load(), s.errs.Load())
		}
	})
	wg.Wait()
	return ctx.Err()
}

// measure lets the server settle with every connection open and no load
// running, then reads its figures.
func (s *soak) measure(ctx context.Context) (map[string]float64, error) {
	if err := sleep(ctx, s.cfg.Settle); err != nil {
		return nil, err
	}
	return scrape(ctx, s.cfg.Target)
}

// churn closes random connections and opens their replacements, Churn a
// second.
func (s *soak) churn(ctx context.Context) {
	if s.cfg.Churn <= 0 {
		<-ctx.Done()
		return
	}
	interval := time.Second / time.Duration(s.cfg.Churn)
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // replacements are behind: do not pile up
		}
		i := rand.IntN(len(s.slots))
		wg.Go(func() {
			defer func() { <-sem }()
			s.mu.Lock()
			old := s.slots[i]
			s.slots[i] = nil
			s.mu.Unlock()
			if old == nil {
				return // being replaced already
			}
			old.closing.Store(true)
			if rand.IntN(2) == 0 { // half say goodbye, half just go
				old.write(controlFrame(0x8, []byte{0x03, 0xe8}))
			}
			old.c.Close()
			sc, err := s.dial(context.WithoutCancel(ctx), i)
			if err != nil {
				s.fail(fmt.Errorf("reconnect: %w", err))
				sc, err = s.dial(context.WithoutCancel(ctx), i) // keep the count of connections
				if err != nil {
					return
				}
			}
			s.mu.Lock()
			s.slots[i] = sc
			s.mu.Unlock()
			s.reconnects.Add(1)
		})
	}
}

// publish publishes through the server API at Rate, round-robin over the
// channels.
func (s *soak) publish(ctx context.Context) {
	if s.cfg.Rate <= 0 {
		<-ctx.Done()
		return
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var n int
	interval := time.Second / time.Duration(s.cfg.Rate)
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n++
		body := fmt.Sprintf(`{"channel":"soak%d","data":{"n":%d}}`, n%s.cfg.Channels, n)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := apiPublish(context.WithoutCancel(ctx), client, s.cfg.Target, s.cfg.APIKey, body); err != nil {
				s.fail(fmt.Errorf("publish: %w", err))
				return
			}
			s.pubs.Add(1)
		})
	}
}

// writer is a connection that writes bench_items rows. Its reader
// answers the server's pings (a writer is silent while the load is
// paused, longer than the server's read timeout) and hands the replies to
// do.
type writer struct {
	sc      *soakConn
	replies chan []byte
	done    chan struct{}
	n       int
}

func (s *soak) newWriter(ctx context.Context) (*writer, error) {
	c, br, err := handshake(ctx, s.cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	if _, err := readFrame(br); err != nil {
		c.Close()
		return nil, fmt.Errorf("writer: %w", err)
	}
	c.SetDeadline(time.Time{})
	w := &writer{sc: &soakConn{c: c}, replies: make(chan []byte, 16), done: make(chan struct{})}
	s.readers.Go(func() {
		defer close(w.done)
		for {
			op, p, err := readAnyFrame(br)
			if err == nil && op == 0x8 {
				err = fmt.Errorf("closed by the server: %q", p)
			}
			if err != nil {
				if !w.sc.closing.Load() {
					s.unexpect.Add(1)
					s.firstErr.CompareAndSwap(nil, "writer disconnected: "+err.Error())
				}
				return
			}
			switch op {
			case 0x9:
				w.sc.write(controlFrame(0xA, p))
			case 0x1:
				w.replies <- p
			}
		}
	})
	return w, nil
}

func (w *writer) close() {
	w.sc.closing.Store(true)
	w.sc.write(controlFrame(0x8, []byte{0x03, 0xe8}))
	w.sc.c.Close()
}

// do sends one request and waits for its reply.
func (w *writer) do(action string, fields string) ([]byte, error) {
	w.n++
	id := fmt.Sprintf("w%d", w.n)
	req := fmt.Appendf(nil, `{"stream":%q,"payload":{"action":%q,"request_id":%q%s}}`, ResourceBenchName, action, id, fields)
	if err := w.sc.write(maskedFrame(req)); err != nil {
		return nil, err
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case reply := <-w.replies:
			if bytes.Contains(reply, []byte(`"request_id":"`+id+`"`)) {
				return reply, nil
			}
		case <-w.done:
			return nil, errors.New("the connection ended")
		case <-timeout.C:
			return nil, fmt.Errorf("no reply to %s in 10 s", action)
		}
	}
}

// write cycles rows through create, update and delete, Writes a second
// over the writers, so the table does not grow.
func (s *soak) write(ctx context.Context, ws []*writer) {
	if s.cfg.Writes <= 0 || len(ws) == 0 {
		<-ctx.Done()
		return
	}
	per := time.Second * time.Duration(len(ws)) / time.Duration(s.cfg.Writes)
	var wg sync.WaitGroup
	for k, w := range ws {
		wg.Go(func() {
			t := time.NewTicker(max(per, time.Millisecond))
			defer t.Stop()
			var pk int64
			for step := 0; ; step++ {
				select {
				case <-ctx.Done():
					if pk != 0 { // leave no row behind
						w.do("delete", fmt.Sprintf(`,"pk":%d`, pk))
					}
					return
				case <-t.C:
				}
				var reply []byte
				var err error
				switch {
				case pk == 0:
					reply, err = w.do("create", fmt.Sprintf(`,"data":{"name":"soak-%d-%d","t":0}`, k, step))
					if err == nil {
						pk = replyPK(reply)
					}
				case step%3 == 1:
					reply, err = w.do("patch", fmt.Sprintf(`,"pk":%d,"data":{"t":%d}`, pk, step))
				default:
					reply, err = w.do("delete", fmt.Sprintf(`,"pk":%d`, pk))
					pk = 0
				}
				if err == nil && !bytes.Contains(reply, []byte(`"response_status":20`)) {
					err = fmt.Errorf("refused: %q", reply)
				}
				if err != nil {
					s.fail(fmt.Errorf("resource write: %w", err))
					pk = 0
					continue
				}
				s.writes.Add(1)
			}
		})
	}
	wg.Wait()
}

// replyPK finds the created row's id in a create reply.
func replyPK(reply []byte) int64 {
	i := bytes.Index(reply, []byte(`"id":`))
	if i < 0 {
		return 0
	}
	var pk int64
	for _, c := range reply[i+5:] {
		if c < '0' || c > '9' {
			break
		}
		pk = pk*10 + int64(c-'0')
	}
	return pk
}

func (s *soak) closeAll() {
	for _, w := range s.writers {
		w.close()
	}
	s.mu.Lock()
	for _, sc := range s.slots {
		if sc != nil {
			sc.closing.Store(true)
			sc.c.Close()
		}
	}
	s.mu.Unlock()
	s.readers.Wait()
}

// WriteTable prints the result for people.
func (r *SoakResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "soak: %d connections for %.0fs: %d reconnects, %d publications, %d resource writes, %d frames delivered, %d errors, %d unexpected disconnects\n",
		r.Conns, r.Seconds, r.Reconnects, r.Publications, r.ResourceWrites, r.Deliveries, r.Errors, r.UnexpectedDisconnects)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server figure\tstart\tend\tchange\tlimit\tresult\t")
	verdict := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "FAIL"
	}
	row := func(name string, f SoakFigure, unit func(float64) string, judged bool) {
		res := "-"
		limit := "-"
		if judged {
			res = verdict(f.Pass)
			limit = fmt.Sprintf("+%.0f %%", r.Tolerance*100)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%+.1f %%\t%s\t%s\t\n", name, unit(f.Start), unit(f.End), f.Change*100, limit, res)
	}
	mb := func(v float64) string { return fmt.Sprintf("%.1f MB", v/1e6) }
	num := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	row("RSS", r.RSS, mb, true)
	row("goroutines", r.Goroutines, num, true)
	row("open fds", r.OpenFDs, num, true)
	row("heap in use", r.HeapInuse, mb, false)
	fmt.Fprintf(tw, "connections\t%.0f\t%.0f\t\t\t\t\n", r.ServerConns[0], r.ServerConns[1])
	tw.Flush()
	fmt.Fprintf(w, "peak during the run: RSS %.1f MB, %.0f goroutines\n", r.PeakRSS/1e6, r.PeakGoroutines)
	fmt.Fprintf(w, "result: %s\n", map[bool]string{true: "PASS", false: "FAIL"}[r.Pass])
}

// readAnyFrame reads one server frame and returns its opcode and payload.
func readAnyFrame(br *bufio.Reader) (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint64(b[:]))
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	return hdr[0] & 0x0F, p, nil
}

// controlFrame encodes a masked client control frame (zero mask).
func controlFrame(op byte, p []byte) []byte {
	return append([]byte{0x80 | op, 0x80 | byte(len(p)), 0, 0, 0, 0}, p...)
}
