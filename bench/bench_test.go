package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/server"
)

const benchKey = "bench-test-key-0123456789"

// TestMain runs this binary as the floor's child process when the floor
// starts it (os.Executable is the test binary here).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == "floor-readers" {
		if err := Main(context.Background(), os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startTestServer runs a real server on a free port until the test ends;
// mutate, when not nil, adjusts its configuration.
func startTestServer(t *testing.T, mutate func(*config.Config)) *url.URL {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.APIKeys = []config.Secret{benchKey}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	u, _ := url.Parse("http://" + srv.Addr().String())
	return u
}

func TestFanoutMeasuresEveryDelivery(t *testing.T) {
	u := startTestServer(t, nil)
	res, err := Fanout(context.Background(), FanoutConfig{Target: u, APIKey: benchKey, Conns: 20, Channels: 2, Rate: 50, Duration: 500 * time.Millisecond, Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Publications < 10 || res.Deliveries != res.Expected || res.Expected != res.Publications*10 {
		t.Fatalf("result %+v", res)
	}
	l := res.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.Max > 0) || res.Disconnects != 0 || res.PublishErrors != 0 {
		t.Fatalf("latency %+v, disconnects %d, errors %d", l, res.Disconnects, res.PublishErrors)
	}
}

func TestIdleCountsServerConnections(t *testing.T) {
	u := startTestServer(t, nil)
	res, err := Idle(context.Background(), IdleConfig{Target: u, Conns: 50, Settle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Conns != 50 || res.RSSAfter == 0 || res.ConnectsPerSec <= 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	l := h.latency()
	within := func(got, want float64) bool { return got >= want && got <= want*1.02 }
	if !within(l.P50, 500) || !within(l.P99, 990) || l.Max != 1000 {
		t.Fatalf("%+v", l)
	}
}

func TestIdleWithTargetPIDReadsProc(t *testing.T) {
	u := startTestServer(t, nil) // in this process: its RSS is ours
	res, err := Idle(context.Background(), IdleConfig{Target: u, TargetPID: os.Getpid(), Conns: 30, Settle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.RSSSource != "proc" || res.Conns != 30 || res.RSSBefore == 0 || res.RSSAfter == 0 || res.HeapPerConn != 0 || res.GoroutinesPerConn != 0 {
		t.Fatalf("result %+v", res)
	}
	var out strings.Builder
	res.WriteTable(&out)
	if !strings.Contains(out.String(), " - ") {
		t.Fatalf("table shows Go runtime figures for a /proc reading:\n%s", out.String())
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tdaphne\nVmPeak:\t  300000 kB\nVmRSS:\t   51200 kB\nRssAnon:\t 40000 kB\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 51200*1024 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"Name:\tkthreadd\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Fatalf("%q: no error", bad)
		}
	}
	if _, err := procRSS(-1); err == nil {
		t.Fatal("pid -1: no error")
	}
}

func TestTargetPIDNeedsIdleWithTarget(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, args := range [][]string{
		{"idle", "--target-pid", pid, "--conns", "1"},
		{"fanout", "--target", "http://127.0.0.1:1", "--api-key", "k", "--target-pid", pid, "--conns", "1"},
		{"idle", "--target", "http://127.0.0.1:1", "--target-pid", "999999999", "--conns", "1"},
	} {
		// fanout has no --target-pid at all: a usage error naming it.
		if err := Main(context.Background(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "target-pid") {
			t.Fatalf("%v: %v", args, err)
		}
	}
}

func TestResourcesScenario(t *testing.T) {
	u := startTestServer(t, func(cfg *config.Config) {
		maxLen := 100
		cfg.Resources = []config.Resource{{Name: ResourceBenchName, PKField: "id", PageSize: 25,
			Fields:      []config.Field{{Name: "name", Type: "string", MaxLength: &maxLen}, {Name: "t", Type: "int"}},
			Permissions: config.ResourcePermissions{Read: "anyone", Create: "anyone", Update: "anyone", Delete: "anyone"}}}
	})
	res, err := Resources(context.Background(), ResourcesConfig{Target: u, Writers: 2, Conns: 3, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes < 10 || res.Deliveries != res.Expected || res.Expected != 3*res.Writes || res.LatencyMS.P50 <= 0 || res.WriteLatencyMS.P99 <= 0 {
		t.Fatalf("%+v", res)
	}
}

func TestLongpollMeasuresEveryDelivery(t *testing.T) {
	u := startTestServer(t, func(c *config.Config) {
		c.Channelstream.Enabled = true
		c.Channelstream.Secret = "bench-cs-secret"
	})
	res, err := Longpoll(context.Background(), LongpollConfig{Target: u, Secret: "bench-cs-secret", Conns: 20, Channels: 2, Rate: 20, Duration: 500 * time.Millisecond, Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Parked != 20 || res.Publications < 5 || res.Deliveries != res.Expected || res.Expected != res.Publications*10 || res.PollErrors != 0 {
		t.Fatalf("result %+v", res)
	}
	// A poll answers a batching window (250 ms) after its first message.
	if l := res.LatencyMS; !(l.P50 > 0 && l.P50 <= l.P99 && l.Max < 2000) {
		t.Fatalf("latency %+v", l)
	}
}

// The live-queries mode: a quarter of the subscribers receive each
// resource event and the rest receive none (a leak would be counted),
// every subscriber receives each channel publication, and the server's
// CPU is read for both phases.
func TestLiveQueriesMode(t *testing.T) {
	const secret = "live-queries-secret-0123456789"
	u := startTestServer(t, func(cfg *config.Config) {
		cfg.Auth.JWT.HMACSecret = secret
		cfg.Resources = []config.Resource{{Name: LiveQueryBenchName, PKField: "id", PageSize: 25,
			Fields:      []config.Field{{Name: "title", Type: "string"}, {Name: "tag", Type: "string"}, {Name: "owner", Type: "string"}, {Name: "t", Type: "int"}},
			Permissions: config.ResourcePermissions{Read: "owner:owner", Create: "authenticated", Update: "owner:owner", Delete: "owner:owner"}}}
	})
	res, err := LiveQueries(context.Background(), LiveQueriesConfig{Target: u, TargetPID: os.Getpid(), APIKey: benchKey, JWTSecret: secret, Conns: 8, Rate: 50, Duration: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, c := res.Resource, res.Channel
	if r.Events < 5 || r.Deliveries != r.Expected || r.Expected != 2*r.Events || r.Leaked != 0 {
		t.Fatalf("resource phase %+v", r)
	}
	if c.Events < 5 || c.Deliveries != c.Expected || c.Expected != 8*c.Events || c.Leaked != 0 {
		t.Fatalf("channel phase %+v", c)
	}
	if r.CPUSeconds <= 0 || c.CPUSeconds <= 0 || res.RatioPerSubscriber <= 0 {
		t.Fatalf("CPU not measured: %+v", res)
	}
}

func TestProcCPU(t *testing.T) {
	if v, err := procCPU(os.Getpid()); err != nil || v <= 0 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Fatal("no error for a missing process")
	}
}

func TestSignalsMeasuresEveryRoundTrip(t *testing.T) {
	u := startTestServer(t, nil)
	res, err := Signals(context.Background(), SignalsConfig{Callers: 4, Rate: 40, Duration: 500 * time.Millisecond, Jobs: 50, Windows: 20, Fanouts: 2, FanoutRate: 4, FanoutTarget: u, FanoutKey: benchKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []CallFigures{res.GoHandler, res.WebhookHandler, res.SyncGoHandler} {
		if f.Calls < 10 || f.Received != f.Calls || f.Failed != 0 || !(f.LatencyMS.P50 > 0 && f.LatencyMS.P50 <= f.LatencyMS.P99) {
			t.Errorf("%s: %+v", f.Signal, f)
		}
	}
	if res.QueueJobs != 50 || res.QueueRunPerSec <= 0 || res.QueueEnqueuePerSec <= 0 {
		t.Errorf("queue %+v", res)
	}
	for _, f := range []FanoutFigures{res.Topic, res.Channel} {
		if f.Sent < 1 || f.Deliveries != f.Expected || f.Expected != f.Sent*20 {
			t.Errorf("fan-out %+v", f)
		}
	}
}

func TestFloorDeliversEveryFrame(t *testing.T) {
	res, err := Floor(context.Background(), FloorConfig{Conns: 20, Rate: 50, Duration: 300 * time.Millisecond, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages < 5 || res.Expected != res.Messages*20 || res.Deliveries != res.Expected {
		t.Fatalf("result %+v", res)
	}
	if res.ShortClients != 0 || res.Disconnects != 0 || res.WriteErrors != 0 || res.CPUSeconds < 0 {
		t.Fatalf("result %+v", res)
	}
	// The frame is what /live pushes: an unmasked text frame whose payload
	// is as long as its header says.
	for _, size := range []int{0, 64, 1000, 70000} {
		f := floorFrame(size)
		hdr, n := 2, int(f[1])
		switch n {
		case 126:
			hdr, n = 4, int(f[2])<<8|int(f[3])
		case 127:
			hdr, n = 10, int(f[6])<<24|int(f[7])<<16|int(f[8])<<8|int(f[9])
		}
		if f[0] != 0x81 || n != len(f)-hdr || !bytes.HasSuffix(f, []byte(`"}}}`)) {
			t.Errorf("size %d: frame header % x, length %d", size, f[:hdr], len(f))
		}
	}
	if res.FrameBytes != len(floorFrame(64)) {
		t.Errorf("frame bytes %d", res.FrameBytes)
	}
}

// TestFloorFrameIsFanouts: the floor writes as many bytes per delivery as
// /live pushes for a fanout publication of the same size.
func TestFloorFrameIsFanouts(t *testing.T) {
	u := startTestServer(t, nil)
	c, br, err := subscribeLive(context.Background(), u, "bench0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, size := range []int{64, 1000} {
		body := fmt.Sprintf(`{"channel":"bench0","data":{"t":%d,"p":%q}}`, time.Now().UnixNano(), strings.Repeat("x", size-40))
		if err := apiPublish(context.Background(), http.DefaultClient, u, benchKey, body); err != nil {
			t.Fatal(err)
		}
		p, err := readFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		f := floorFrame(size)
		payload := f[len(f)-len(p):] // the header is 2 or 4 bytes here
		cut := bytes.Index(p, []byte(`"t":`))
		if !(f[0] == 0x81 && (len(f)-len(p) == 2 || len(f)-len(p) == 4) && cut > 0 && bytes.Equal(payload[:cut], p[:cut])) {
			t.Errorf("size %d: /live pushes %d bytes %s; the floor writes a %d-byte frame %s", size, len(p), p, len(f), f)
		}
	}
}

// TestFloorWithFanout: fanout then the floor, both complete, and the ratio
// of their CPU per delivery (the server here is this process).
func TestFloorWithFanout(t *testing.T) {
	u := startTestServer(t, nil)
	fc := FanoutConfig{Target: u, APIKey: benchKey, Conns: 20, Channels: 1, Rate: 50, Duration: 500 * time.Millisecond, Size: 64}
	cfg := FloorConfig{Conns: 20, Rate: 50, Duration: 300 * time.Millisecond, Size: 64}
	if _, err := FloorWithFanout(context.Background(), fc, cfg); err == nil {
		t.Fatal("no error without the server's process id")
	}
	fc.TargetPID = os.Getpid()
	res, err := FloorWithFanout(context.Background(), fc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := res.Fanout
	if f == nil || f.Deliveries != f.Expected || f.Expected != f.Publications*20 || res.Deliveries != res.Expected || res.Messages < 5 {
		t.Fatalf("result %+v, fanout %+v", res, f)
	}
	if f.ServerCPUSeconds <= 0 || f.CPUPer1000Deliv != f.ServerCPUSeconds*1e9/float64(f.Deliveries) {
		t.Fatalf("fanout CPU %v s, %v µs per 1,000 deliveries", f.ServerCPUSeconds, f.CPUPer1000Deliv)
	}
	if res.CPUPer1000Deliv > 0 && res.Ratio != f.CPUPer1000Deliv/res.CPUPer1000Deliv {
		t.Fatalf("ratio %v", res.Ratio)
	}
	var out strings.Builder
	res.WriteTable(&out)
	if !strings.Contains(out.String(), "fanout (server process)") || !strings.Contains(out.String(), "fanout / floor:") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// TestFloorIOURing: the io_uring rounds deliver every frame whole (the
// readers count bytes: a lost or short send would leave clients short),
// take turns with write(2), and submit one io_uring_enter per message
// when the ring holds every socket.
func TestFloorIOURing(t *testing.T) {
	res, err := Floor(context.Background(), FloorConfig{Conns: 20, Rate: 50, Duration: 200 * time.Millisecond, Size: 64, IOURing: true})
	if err != nil {
		t.Fatal(err)
	}
	u := res.IOURing
	if u == nil {
		t.Fatal("no io_uring result")
	}
	for name, w := range map[string]FloorWay{"write": u.Write, "io_uring": u.IOURing} {
		if w.Messages < 4 || w.Expected != w.Messages*20 || w.Deliveries != w.Expected || w.WriteErrors != 0 || w.CPUSeconds < 0 {
			t.Errorf("%s: %+v", name, w)
		}
	}
	if u.RingSize < 20 || u.Submits != u.IOURing.Messages {
		t.Errorf("ring of %d, %d io_uring_enter calls for %d messages", u.RingSize, u.Submits, u.IOURing.Messages)
	}
	var out strings.Builder
	res.WriteTable(&out)
	if !strings.Contains(out.String(), "io_uring / write(2):") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// TestURingSendAllBatches: a ring smaller than the sockets sends in
// batches, and every socket receives the frame once.
func TestURingSendAllBatches(t *testing.T) {
	ring, err := newURing(4)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.close()
	var fds, peers []int
	for range 10 {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		fds, peers = append(fds, p[0]), append(peers, p[1])
	}
	frame := floorFrame(64)
	if failed := ring.sendAll(fds, frame); failed != 0 {
		t.Fatalf("%d sends failed", failed)
	}
	if ring.submits != 3 {
		t.Errorf("%d io_uring_enter calls for 10 sockets and a ring of 4; want 3", ring.submits)
	}
	buf := make([]byte, 2*len(frame))
	for i, p := range peers {
		n, err := unix.Read(p, buf)
		if err != nil || !bytes.Equal(buf[:n], frame) {
			t.Errorf("socket %d: read %d bytes, %v", i, n, err)
		}
	}
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(p[0])
	unix.Close(p[1])
	if failed := ring.sendAll(p[:1], frame); failed != 1 {
		t.Errorf("a send to a closed descriptor: %d failed, want 1", failed)
	}
}

// TestFanoutCompressed: with --compress the clients negotiate
// permessage-deflate, the server's pushes arrive compressed and are
// counted whole; a server without compression is an error, not a silent
// uncompressed run. The floor's compressed frame is what the server sends,
// give or take the send time's digits.
func TestFanoutCompressed(t *testing.T) {
	ctx := context.Background()
	plain := startTestServer(t, nil)
	if _, err := Fanout(ctx, FanoutConfig{Target: plain, APIKey: benchKey, Conns: 2, Channels: 1, Rate: 50, Duration: 100 * time.Millisecond, Size: 64, Compress: true}); err == nil || !strings.Contains(err.Error(), "permessage-deflate") {
		t.Fatalf("compress against a server without compression: %v", err)
	}
	u := startTestServer(t, func(c *config.Config) { c.WebSocket.Compression = true })
	res, err := Fanout(ctx, FanoutConfig{Target: u, APIKey: benchKey, Conns: 20, Channels: 2, Rate: 50, Duration: 500 * time.Millisecond, Size: 64, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Compress || res.Publications < 10 || res.Deliveries != res.Expected || res.Expected != res.Publications*10 || res.Disconnects != 0 {
		t.Fatalf("result %+v", res)
	}

	c, br, err := subscribeLiveWith(ctx, u, "bench0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := fmt.Sprintf(`{"channel":"bench0","data":{"t":%d,"p":%q}}`, time.Now().UnixNano(), strings.Repeat("x", 24))
	if err := apiPublish(ctx, http.DefaultClient, u, benchKey, body); err != nil {
		t.Fatal(err)
	}
	p, compressed, err := readRawFrame(br)
	if err != nil || !compressed {
		t.Fatalf("push: compressed %v, %v", compressed, err)
	}
	f := floorFrameDeflate(64)
	if f[0] != 0xC1 || f[1] >= 126 || int(f[1]) != len(f)-2 || len(f)-2 < len(p)-4 || len(f)-2 > len(p)+4 || len(f) >= len(floorFrame(64)) {
		t.Errorf("the server pushes %d compressed bytes; the floor's frame is %d bytes, header % x", len(p), len(f), f[:2])
	}
	var inf *inflater
	if got, err := inf.readFrame(bufio.NewReader(bytes.NewReader(f))); err != nil || !bytes.Equal(got, floorPayload(64)) {
		t.Errorf("the floor's compressed frame inflates to %q, %v", got, err)
	}
}
