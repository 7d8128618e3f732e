package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// LiveQueryBenchName is the resource of the live-queries mode: notes
// {title, tag, owner, t}, readable by their owner only.
const LiveQueryBenchName = "bench_notes"

// LiveQueryBenchConfig is the environment that declares bench_notes for a
// server the benchmark starts (a --target must declare it too, with a JWT
// HMAC secret given to the benchmark with --jwt-secret).
const LiveQueryBenchConfig = "SWITCHYARD_RESOURCES={bench_notes: {fields: {title: {type: string}, tag: {type: string}, owner: {type: string}, t: {type: int}}, permissions: {read: owner:owner, create: authenticated, update: owner:owner, delete: owner:owner}}}"

// LiveQueriesConfig configures the live-queries mode of the resources
// scenario.
type LiveQueriesConfig struct {
	Target *url.URL
	// TargetPID is the server's process id, for its CPU time
	// (/proc/PID/stat).
	TargetPID int
	APIKey    string
	JWTSecret string
	Conns     int           // subscribers
	Rate      int           // events (and, in the second phase, publications) per second
	Duration  time.Duration // each phase
	Progress  io.Writer
}

// PhaseResult is one phase of the live-queries mode.
type PhaseResult struct {
	Events      int64   `json:"events"`
	Deliveries  int64   `json:"deliveries"`
	Expected    int64   `json:"expected_deliveries"`
	Leaked      int64   `json:"leaked_deliveries"` // to subscribers that must not receive them
	CPUSeconds  float64 `json:"server_cpu_seconds"`
	CPUPerDeliv float64 `json:"server_cpu_us_per_delivery"`
	CPUPerSub   float64 `json:"server_cpu_us_per_subscriber_event"` // CPU / (events × subscribers)
	LatencyMS   Latency `json:"latency_ms"`
}

// LiveQueriesResult is what the live-queries mode measured: the same
// subscribers first receive resource events through live queries, then
// channel publications, at the same rate, on the same server.
type LiveQueriesResult struct {
	Scenario string      `json:"scenario"`
	Mode     string      `json:"mode"`
	Conns    int         `json:"conns"`
	Rate     int         `json:"rate"`
	Seconds  float64     `json:"seconds_per_phase"`
	Resource PhaseResult `json:"resource"`
	Channel  PhaseResult `json:"channel"`
	// Ratios of the resource phase's server CPU to the channel phase's.
	RatioPerDelivery   float64 `json:"ratio_per_delivery"`
	RatioPerSubscriber float64 `json:"ratio_per_subscriber"`
}

// LiveQueries measures the server CPU a resource event costs per live
// query. Conns clients, alternately alice's and bob's, each hold one
// subscribe_list on bench_notes (read: owner:owner): half with the filter
// {tag: a}, half {tag: b}; each also subscribes to one channel. Phase 1:
// alice updates one note tagged a, Rate times a second over REST — a
// quarter of the subscribers (alice's, with tag a) must receive each
// event, and the others must not (counted as leaks). Phase 2: the server
// API publishes to the channel at the same rate — every subscriber
// receives it. The server's CPU time is read from /proc/PID/stat around
// each phase.
func LiveQueries(ctx context.Context, cfg LiveQueriesConfig) (*LiveQueriesResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if cfg.Conns < 4 {
		return nil, fmt.Errorf("live-queries needs at least 4 subscribers")
	}
	mint := func(user string) (string, error) {
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(cfg.JWTSecret))
	}
	tokens := map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		t, err := mint(u)
		if err != nil {
			return nil, err
		}
		tokens[u] = t
	}
	var conns []net.Conn
	var readers sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()
	// Counters by phase: deliveries where they belong, and leaks.
	type counters struct {
		got, leaked atomic.Int64
		lat         *histogram
	}
	var phase atomic.Int32 // 0: resource events, 1: channel publications
	ph := [2]*counters{{lat: newHistogram()}, {lat: newHistogram()}}
	var disconnects atomic.Int64
	for i := range cfg.Conns {
		user := []string{"alice", "bob"}[i%2]
		tag := []string{"a", "a", "b", "b"}[i%4]
		entitled := user == "alice" && tag == "a"
		c, br, err := handshakeQuery(ctx, cfg.Target, "token="+tokens[user])
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		conns = append(conns, c)
		if _, err := readFrame(br); err != nil {
			return nil, err
		}
		c.Write(maskedFrame(fmt.Appendf(nil, `{"stream":%q,"payload":{"action":"subscribe_list","request_id":"q","filter":{"tag":%q}}}`, LiveQueryBenchName, tag)))
		if reply, err := readFrame(br); err != nil || !bytes.Contains(reply, []byte(`"response_status":201`)) {
			return nil, fmt.Errorf("subscribe_list: %q %v (does the target declare %s?)", reply, err, LiveQueryBenchName)
		}
		c.Write(maskedFrame([]byte(`{"stream":"$channels","payload":{"action":"subscribe","request_id":"c","channel":"bench"}}`)))
		if reply, err := readFrame(br); err != nil || !bytes.Contains(reply, []byte(`"response_status":200`)) {
			return nil, fmt.Errorf("subscribe: %q %v", reply, err)
		}
		c.SetDeadline(time.Time{})
		readers.Go(func() {
			for {
				p, err := readFrame(br)
				if err != nil {
					select {
					case <-stop:
					default:
						disconnects.Add(1)
					}
					return
				}
				isChannel := bytes.HasPrefix(p, []byte(`{"stream":"$channels"`))
				k := ph[0]
				if isChannel {
					k = ph[1]
				}
				if !isChannel && !entitled {
					k.leaked.Add(1)
					continue
				}
				sentTimes(p, func(sent int64) {
					k.lat.add(time.Duration(time.Now().UnixNano() - sent))
					k.got.Add(1)
				})
			}
		})
	}
	fmt.Fprintf(progress, "resources live-queries: %d subscribers, %d events/s for %v per phase\n", cfg.Conns, cfg.Rate, cfg.Duration)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	rest := func(method, path, auth, body string, want int) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, cfg.Target.JoinPath(path).String(), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b, nil
	}
	created, err := rest("POST", "/api/resources/"+LiveQueryBenchName+"/", "Bearer "+tokens["alice"], `{"title": "watched", "tag": "a", "t": 0}`, 201)
	if err != nil {
		return nil, err
	}
	id := string(bytes.TrimSpace(jsonField(created, "id")))
	// The create itself reaches the entitled quarter: wait for it, then
	// start counting from zero.
	drain(&ph[0].got, int64(cfg.Conns/4), 5*time.Second)
	ph[0].got.Store(0)
	ph[0].lat = newHistogram()

	res := &LiveQueriesResult{Scenario: "resources", Mode: "live-queries", Conns: cfg.Conns, Rate: cfg.Rate, Seconds: cfg.Duration.Seconds()}
	runPhase := func(i int, per int64, publish func(n int) error) (PhaseResult, error) {
		phase.Store(int32(i))
		cpu0, err := procCPU(cfg.TargetPID)
		if err != nil {
			return PhaseResult{}, err
		}
		name := []string{"resource events", "channel publications"}[i]
		ok, failed, _ := pace(ctx, cfg.Rate, cfg.Duration, progress, name, &ph[i].got, publish)
		if failed > 0 {
			return PhaseResult{}, fmt.Errorf("%s: %d failed", name, failed)
		}
		drain(&ph[i].got, ok*per, 5*time.Second)
		cpu1, err := procCPU(cfg.TargetPID)
		if err != nil {
			return PhaseResult{}, err
		}
		r := PhaseResult{Events: ok, Deliveries: ph[i].got.Load(), Expected: ok * per, Leaked: ph[i].leaked.Load(), CPUSeconds: cpu1 - cpu0, LatencyMS: ph[i].lat.latency()}
		if r.Deliveries > 0 {
			r.CPUPerDeliv = r.CPUSeconds * 1e6 / float64(r.Deliveries)
		}
		if r.Events > 0 {
			r.CPUPerSub = r.CPUSeconds * 1e6 / float64(r.Events*int64(cfg.Conns))
		}
		return r, nil
	}
	if res.Resource, err = runPhase(0, int64(cfg.Conns/4), func(n int) error {
		_, err := rest("PATCH", "/api/resources/"+LiveQueryBenchName+"/"+id+"/", "Bearer "+tokens["alice"], fmt.Sprintf(`{"t": %d}`, time.Now().UnixNano()), 200)
		return err
	}); err != nil {
		return nil, err
	}
	if res.Channel, err = runPhase(1, int64(cfg.Conns), func(n int) error {
		return apiPublish(ctx, client, cfg.Target, cfg.APIKey, fmt.Sprintf(`{"channel":"bench","data":{"t":%d}}`, time.Now().UnixNano()))
	}); err != nil {
		return nil, err
	}
	if res.Channel.CPUPerDeliv > 0 {
		res.RatioPerDelivery = res.Resource.CPUPerDeliv / res.Channel.CPUPerDeliv
	}
	if res.Channel.CPUPerSub > 0 {
		res.RatioPerSubscriber = res.Resource.CPUPerSub / res.Channel.CPUPerSub
	}
	if d := disconnects.Load(); d > 0 {
		return res, fmt.Errorf("%d subscribers were disconnected", d)
	}
	return res, nil
}

// jsonField finds a top-level number field of a flat JSON object (enough
// for a record's id).
func jsonField(b []byte, name string) []byte {
	i := bytes.Index(b, []byte(`"`+name+`":`))
	if i < 0 {
		return nil
	}
	rest := b[i+len(name)+3:]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return nil
	}
	return rest[:j]
}

// procCPU reads a process's user + system CPU time in seconds from
// /proc/PID/stat (clock ticks of 1/100 s, Linux's USER_HZ).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	// Fields after the command name (which may hold spaces), from field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("server CPU: unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("server CPU: unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("server CPU: unexpected /proc/%d/stat", pid)
	}
	return (utime + stime) / 100, nil
}

// WriteTable prints the result for people.
func (r *LiveQueriesResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tsubs\tevents\tdelivered/expected\tleaked\tserver CPU s\tµs/delivery\tµs/subscriber·event\tp50 ms\tp99 ms\t")
	for _, p := range []struct {
		name string
		r    PhaseResult
	}{{"resource (live queries)", r.Resource}, {"channel", r.Channel}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d/%d\t%d\t%.2f\t%.2f\t%.3f\t%.2f\t%.2f\t\n", p.name, r.Conns, p.r.Events, p.r.Deliveries, p.r.Expected, p.r.Leaked, p.r.CPUSeconds, p.r.CPUPerDeliv, p.r.CPUPerSub, p.r.LatencyMS.P50, p.r.LatencyMS.P99)
	}
	tw.Flush()
	fmt.Fprintf(w, "resource / channel: %.2f× per delivery, %.2f× per subscriber·event\n", r.RatioPerDelivery, r.RatioPerSubscriber)
}

// handshakeQuery is handshake with a query string on /live (a token).
func handshakeQuery(ctx context.Context, base *url.URL, query string) (net.Conn, *bufio.Reader, error) {
	u := *base
	u.RawQuery = query
	return handshake(ctx, &u)
}
