// Package bench is the load generator behind `switchyard bench`. Each
// scenario runs against a server it starts itself (a child process of the
// same binary, so the two do not share memory figures) or one given with
// --target, which must be on the loopback interface. Every scenario is
// bounded in count and time and stops by itself.
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Scenarios are the scenarios of `switchyard bench`, with what each
// measures.
var scenarios = []struct{ name, about string }{
	{"idle", "server memory per idle WebSocket connection"},
	{"fanout", "publish -> receive latency and deliveries per second over /live"},
	{"floor", "the least CPU a delivery costs here: one pre-built frame written with write(2) to as many loopback sockets as fanout's subscribers; --with-fanout runs fanout first and prints fanout CPU per delivery / floor's"},
	{"resources", "resource writes per second and write -> subscriber event latency (--mode writes), or server CPU per resource event to live queries against a channel publication (--mode live-queries)"},
	{"longpoll", "parked Channelstream /listen polls and their delivery latency"},
	{"signals", "signal call -> handler -> trigger round trips, durable queue throughput, topic vs channel fan-out"},
	{"capture", "external writes to an existing PostgreSQL table (plain SQL) -> live-query events through the capture trigger, and the write overhead the trigger adds to the app's writes (needs --store-url)"},
	{"soak", "a long run with connection churn, publications and resource writes: server RSS, goroutines and descriptors at start and end (flat = pass)"},
}

const overview = `Usage: switchyard bench SCENARIO [flags]

Measures a server it starts itself (a child process of this binary), or the
one given with --target (loopback only). See docs/BENCHMARKS.md.

Scenarios:
`

// Main runs `switchyard bench SCENARIO [flags]`. `bench --help` lists the
// scenarios and `bench SCENARIO --help` the flags of one, on stdout.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (retErr error) {
	if len(args) == 0 {
		return UsageError{errors.New("usage: switchyard bench idle|fanout|floor|resources|longpoll|signals|soak|capture [flags] (switchyard bench --help lists them)")}
	}
	scenario, args := args[0], args[1:]
	if scenario == "floor-readers" { // the floor's child process, not listed
		fs := flag.NewFlagSet("bench floor-readers", flag.ContinueOnError)
		fs.SetOutput(stderr)
		addr := fs.String("addr", "", "address to connect to")
		conns := fs.Int("conns", 0, "connections")
		frame := fs.Int("frame", 0, "frame bytes")
		if err := fs.Parse(args); err != nil {
			return UsageError{err}
		}
		if *addr == "" || *conns < 1 || *frame < 2 {
			return UsageError{errors.New("bench floor-readers: want --addr, --conns and --frame (it is started by bench floor)")}
		}
		return runFloorReaders(ctx, *addr, *conns, *frame, os.Stdin, stdout)
	}
	switch scenario {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, overview)
		for _, sc := range scenarios {
			fmt.Fprintf(stdout, "  %-10s %s\n", sc.name, sc.about)
		}
		fmt.Fprintln(stdout, "\nswitchyard bench SCENARIO --help shows the flags of a scenario.")
		return nil
	case "idle", "fanout", "floor", "resources", "longpoll", "signals", "soak", "capture":
	default:
		return UsageError{fmt.Errorf("unknown scenario %q (have: idle, fanout, floor, resources, longpoll, signals, soak, capture; see switchyard bench --help)", scenario)}
	}
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	target := fs.String("target", "", "server to measure, e.g. http://127.0.0.1:8000 (default: start one); fanout takes several, comma-separated: subscribers are spread over them, the first publishes")
	conns := fs.Int("conns", 10000, "connections to open (up to ~19,000 here: the process limit is 20,000 open files)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	// Scenario flags: defined for every scenario (their defaults are
	// read), registered on the flag set of those that use them.
	settle := 5 * time.Second
	channels, rate, duration, size, writers := 1, 100, 10*time.Second, 64, 4
	apiKey, secret, targetPID, mode, jwtSecret := "", "", 0, "writes", ""
	callers, jobs, fanouts, fanoutRate := 50, 5000, 20, 10
	storeURL, withFanout, ioURing, compress := "", false, false, false
	brokerURL := ""
	subscribers, overheadWrites := 1, 1000
	churn, writes, warmup, watchers := 0, 30, time.Duration(0), -1
	var serverEnv []string
	fs.Func("server-env", "KEY=VALUE for the server started for the run, e.g. SWITCHYARD_LIMITS_IDLE_RELEASE=0s or SWITCHYARD_LIMITS_IO_URING=off (repeatable; the caller's SWITCHYARD_ variables are not passed on)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || !strings.HasPrefix(k, "SWITCHYARD_") {
			return fmt.Errorf("want SWITCHYARD_KEY=VALUE, got %q", v)
		}
		serverEnv = append(serverEnv, v)
		return nil
	})
	switch scenario {
	case "idle":
		fs.DurationVar(&settle, "settle", settle, "wait before reading memory figures")
		fs.IntVar(&targetPID, "target-pid", targetPID, "with --target: read the server's RSS from /proc/PID/status (for servers without Switchyard's /metrics)")
	case "fanout", "longpoll":
		fs.IntVar(&channels, "channels", channels, "channels (subscriber i joins channel i % channels)")
		fs.IntVar(&rate, "rate", rate, "publications per second, over all channels")
		fs.DurationVar(&duration, "duration", duration, "how long to publish")
		fs.IntVar(&size, "size", size, "payload bytes")
		if scenario == "fanout" {
			fs.StringVar(&apiKey, "api-key", apiKey, "with --target: a key of the server's api_keys")
			fs.BoolVar(&compress, "compress", compress, "the clients offer permessage-deflate (a server started for the run has websocket.compression on); each counts every compressed message and inflates one in 8 for the latency")
		} else {
			fs.StringVar(&secret, "secret", secret, "with --target: the server's channelstream.secret")
		}
	case "floor":
		fs.IntVar(&rate, "rate", rate, "messages per second, each written to every socket (fanout's default)")
		fs.DurationVar(&duration, "duration", duration, "how long to write")
		fs.IntVar(&size, "size", size, "payload bytes: the frame is the one /live pushes for a fanout publication of this size")
		fs.BoolVar(&withFanout, "with-fanout", withFanout, "first run fanout (one channel, same --conns, --rate, --size, --duration) against a server started for it, then the floor, and print the ratio of their CPU per delivery")
		fs.BoolVar(&compress, "compress", compress, "write the frame a permessage-deflate connection receives (compressed once); with --with-fanout the fanout clients negotiate compression too")
		fs.BoolVar(&ioURing, "io-uring", ioURing, "after the floor, write the same sockets in turn with write(2) and with one io_uring submission (IORING_OP_SEND per socket) per message, --duration each, twice, and print the ratio of their CPU per delivery")
		fs.StringVar(&apiKey, "api-key", apiKey, "--with-fanout with --target: a key of the server's api_keys")
		fs.IntVar(&targetPID, "target-pid", targetPID, "--with-fanout with --target: the server's process id, for its CPU time")
	case "signals":
		fs.IntVar(&rate, "rate", rate, "signal calls per second, over all callers")
		fs.DurationVar(&duration, "duration", duration, "how long to call")
		fs.IntVar(&callers, "callers", callers, "connections calling signals (--rate calls/s over them)")
		fs.IntVar(&jobs, "jobs", jobs, "jobs enqueued for the queue throughput figure")
		fs.IntVar(&fanouts, "fanouts", fanouts, "triggers to the topic (then publications to the channel) of --conns windows")
		fs.IntVar(&fanoutRate, "fanout-rate", fanoutRate, "those per second")
		fs.StringVar(&storeURL, "store-url", storeURL, "a postgres:// database for the store and the queue (in a schema of their own, dropped afterwards; default: SQLite)")
	case "capture":
		fs.IntVar(&rate, "rate", 2000, "external writes per second")
		fs.DurationVar(&duration, "duration", duration, "how long to write")
		fs.IntVar(&writers, "writers", 8, "connections writing (the app's, plain SQL)")
		fs.IntVar(&subscribers, "subscribers", subscribers, "/live connections running a live query on the table")
		fs.IntVar(&overheadWrites, "overhead-writes", overheadWrites, "writes per round of the write-overhead measurement (3 rounds with the trigger, 3 without)")
		fs.StringVar(&storeURL, "store-url", storeURL, "a postgres:// database (required): the table and Switchyard's tables go in a schema of their own, dropped afterwards")
		fs.StringVar(&brokerURL, "broker-url", brokerURL, "a redis:// URL: the server uses the Redis broker (one process leads and publishes captured changes through Redis; keys under a prefix of the run's own, deleted afterwards); default: the memory broker")
	case "soak":
		fs.IntVar(&channels, "channels", channels, "channels (default conns/100: every publication reaches about 100 subscribers)")
		fs.IntVar(&rate, "rate", 50, "publications per second through the server API")
		fs.DurationVar(&duration, "duration", duration, "how long to load the server (up to 24h)")
		fs.IntVar(&writers, "writers", 2, "connections writing resource rows")
		fs.StringVar(&apiKey, "api-key", apiKey, "with --target: a key of the server's api_keys")
		fs.DurationVar(&settle, "settle", 130*time.Second, "wait with the load paused before each measurement (long enough for the Go runtime's forced collection)")
		fs.IntVar(&churn, "churn", churn, "connections closed and replaced per second (default conns/100)")
		fs.IntVar(&writes, "writes", writes, "resource writes per second (create, update, delete in turn)")
		fs.DurationVar(&warmup, "warmup", warmup, "load before the first measurement (default duration/10, 10s to 2m)")
		fs.IntVar(&watchers, "watchers", watchers, "connections that also watch every row with subscribe_list (default conns/100)")
	case "resources":
		fs.StringVar(&mode, "mode", mode, "writes (writers create rows, every subscriber watches them) or live-queries (server CPU per resource event to owner-checked, filtered live queries, against a channel publication to the same subscribers)")
		fs.IntVar(&writers, "writers", writers, "--mode writes: connections writing rows, one request in flight each")
		fs.DurationVar(&duration, "duration", duration, "how long to write (--mode live-queries: each phase)")
		fs.IntVar(&rate, "rate", rate, "--mode live-queries: events (then publications) per second")
		fs.StringVar(&apiKey, "api-key", apiKey, "--mode live-queries with --target: a key of the server's api_keys")
		fs.StringVar(&jwtSecret, "jwt-secret", jwtSecret, "--mode live-queries with --target: the server's auth.jwt.hmac_secret")
		fs.IntVar(&targetPID, "target-pid", targetPID, "--mode live-queries with --target: the server's process id, for its CPU time")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: switchyard bench %s [flags]\n\n", scenario)
			for _, sc := range scenarios {
				if sc.name == scenario {
					fmt.Fprintf(stdout, "Measures %s.\n\nFlags:\n", sc.about)
				}
			}
			fs.VisitAll(func(f *flag.Flag) {
				kind, usage := flag.UnquoteUsage(f)
				fmt.Fprintf(stdout, "  --%s\n      %s", strings.TrimSpace(f.Name+" "+kind), usage)
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
					fmt.Fprintf(stdout, " (default %s)", f.DefValue)
				}
				fmt.Fprintln(stdout)
			})
			return nil
		}
		return UsageError{fmt.Errorf("bench %s: %w (see switchyard bench %s --help)", scenario, err, scenario)}
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Errorf("bench %s: unexpected arguments: %s", scenario, strings.Join(fs.Args(), " "))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	maxDuration := 10 * time.Minute
	if scenario == "soak" {
		// Soak defaults scale with the connections: every publication
		// reaches about 100 subscribers, churn replaces 1 % a second.
		maxDuration = 24 * time.Hour
		if !set["channels"] {
			channels = max(*conns/100, 1)
		}
		if churn == 0 {
			churn = max(*conns/100, 1)
		}
		if watchers < 0 {
			watchers = *conns / 100
		}
		if warmup == 0 {
			warmup = min(max(duration/10, 10*time.Second), 2*time.Minute)
		}
		if !set["timeout"] {
			*timeout = duration + warmup + 2*settle + 15*time.Minute
		}
		if churn < 0 || churn > 10000 || writes < 0 || writes > 10000 || watchers > *conns || warmup < 0 {
			return fmt.Errorf("want --churn 1..10000, --writes 0..10000, --watchers up to --conns, --warmup >= 0")
		}
	}
	if writers < 1 || writers > 1000 {
		return fmt.Errorf("--writers must be between 1 and 1000")
	}
	if *conns < 1 || *conns > 19000 {
		return fmt.Errorf("--conns must be between 1 and 19000 (the process limit is 20,000 open files)")
	}
	if channels < 1 || rate < 1 || rate > 100000 || duration <= 0 || duration > maxDuration || size < 0 || size > 1<<20 {
		return fmt.Errorf("want --channels >= 1, --rate 1..100000, --duration up to %v, --size 0..1MiB", maxDuration)
	}
	liveQueries := scenario == "resources" && mode == "live-queries"
	if scenario == "resources" && mode != "writes" && !liveQueries {
		return UsageError{fmt.Errorf("bench resources: --mode %q: want writes or live-queries", mode)}
	}
	if scenario == "floor" && *target != "" && (!withFanout || targetPID == 0) {
		return fmt.Errorf("floor: --target is for --with-fanout, with --target-pid (the floor itself needs no server)")
	}
	if targetPID != 0 {
		if *target == "" {
			return fmt.Errorf("--target-pid is for a server given with --target (one this run did not start)")
		}
		if _, err := procRSS(targetPID); err != nil {
			return fmt.Errorf("--target-pid: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if scenario == "capture" {
		if *target != "" {
			return errors.New("capture runs its own server in this process, on the database of --store-url: --target is not supported")
		}
		if subscribers < 1 || subscribers > 10000 || overheadWrites < 10 {
			return fmt.Errorf("want --subscribers 1..10000, --overhead-writes >= 10")
		}
		res, err := Capture(ctx, CaptureConfig{StoreURL: storeURL, BrokerURL: brokerURL, Rate: rate, Duration: duration, Writers: writers, Subscribers: subscribers, OverheadWrites: overheadWrites, Progress: stderr})
		if err != nil {
			return err
		}
		return report(stdout, *asJSON, res)
	}
	if scenario == "signals" {
		if *target != "" {
			return errSignalsTarget
		}
		if callers < 1 || callers > 1000 || jobs < 1 || jobs > 1000000 || fanouts < 1 || fanoutRate < 1 || fanoutRate > 1000 {
			return fmt.Errorf("want --callers 1..1000, --jobs 1..1000000, --fanouts >= 1, --fanout-rate 1..1000")
		}
		res, err := Signals(ctx, SignalsConfig{Callers: callers, Rate: rate, Duration: duration, Jobs: jobs, Windows: *conns, Fanouts: fanouts, FanoutRate: fanoutRate, StoreURL: storeURL, Progress: stderr})
		if err != nil {
			return err
		}
		return report(stdout, *asJSON, res)
	}

	floorCfg := FloorConfig{Conns: *conns, Rate: rate, Duration: duration, Size: size, IOURing: ioURing, Compress: compress, Progress: stderr}
	if scenario == "floor" && !withFanout {
		res, err := Floor(ctx, floorCfg)
		if err != nil {
			return err
		}
		return report(stdout, *asJSON, res)
	}

	base, key, csSecret, jwtKey, pid := *target, apiKey, secret, jwtSecret, targetPID
	if base == "" {
		key, csSecret, jwtKey = rand.Text(), rand.Text(), rand.Text()
		env := []string{"SWITCHYARD_API_KEYS=" + key, ResourceBenchConfig}
		if compress {
			env = append(env, "SWITCHYARD_WEBSOCKET_COMPRESSION=true")
		}
		switch {
		case scenario == "longpoll":
			env = append(env, "SWITCHYARD_CHANNELSTREAM_ENABLED=true", "SWITCHYARD_CHANNELSTREAM_SECRET="+csSecret)
		case liveQueries:
			env = []string{"SWITCHYARD_API_KEYS=" + key, LiveQueryBenchConfig, "SWITCHYARD_AUTH_JWT_HMAC_SECRET=" + jwtKey}
		}
		srv, err := startServer(ctx, stderr, append(env, serverEnv...)...)
		if err != nil {
			return err
		}
		defer srv.stop()
		base, pid = srv.url, srv.cmd.Process.Pid
	}
	var targets []*url.URL
	for _, t := range strings.Split(base, ",") {
		u, err := checkLoopback(strings.TrimSpace(t))
		if err != nil {
			return err
		}
		targets = append(targets, u)
	}
	if len(targets) > 1 && scenario != "fanout" {
		return fmt.Errorf("several --target servers are for fanout only")
	}
	u := targets[0]
	var err error
	type table interface{ WriteTable(io.Writer) }
	var res table
	switch scenario {
	case "idle":
		res, err = Idle(ctx, IdleConfig{Target: u, TargetPID: targetPID, Conns: *conns, Settle: settle, Progress: stderr})
	case "fanout":
		if key == "" {
			return fmt.Errorf("fanout with --target needs --api-key (the server API publishes)")
		}
		res, err = Fanout(ctx, FanoutConfig{Target: u, Subscribe: targets, APIKey: key, Conns: *conns, Channels: channels, Rate: rate, Duration: duration, Size: size, TargetPID: pid, Compress: compress, Progress: stderr})
	case "floor":
		if key == "" {
			return fmt.Errorf("floor --with-fanout with --target needs --api-key (the server API publishes)")
		}
		res, err = FloorWithFanout(ctx, FanoutConfig{Target: u, APIKey: key, Conns: *conns, Channels: 1, Rate: rate, Duration: duration, Size: size, TargetPID: pid, Compress: compress, Progress: stderr}, floorCfg)
	case "resources":
		if !liveQueries {
			res, err = Resources(ctx, ResourcesConfig{Target: u, Writers: writers, Conns: *conns, Duration: duration, Progress: stderr})
			break
		}
		if key == "" || jwtKey == "" || pid == 0 {
			return fmt.Errorf("resources --mode live-queries with --target needs --api-key, --jwt-secret and --target-pid")
		}
		res, err = LiveQueries(ctx, LiveQueriesConfig{Target: u, TargetPID: pid, APIKey: key, JWTSecret: jwtKey, Conns: *conns, Rate: rate, Duration: duration, Progress: stderr})
	case "soak":
		if key == "" {
			return fmt.Errorf("soak with --target needs --api-key (the server API publishes)")
		}
		res, err = Soak(ctx, SoakConfig{Target: u, APIKey: key, Conns: *conns, Duration: duration, Warmup: warmup, Settle: settle,
			Churn: churn, Channels: channels, Rate: rate, Writes: writes, Writers: writers, Watchers: watchers, Progress: stderr})
		if err == nil && !res.(*SoakResult).Pass {
			defer func() { retErr = errSoakFailed }()
		}
	case "longpoll":
		if csSecret == "" {
			return fmt.Errorf("longpoll with --target needs --secret (the scenario signs /connect and /message)")
		}
		res, err = Longpoll(ctx, LongpollConfig{Target: u, Secret: csSecret, Conns: *conns, Channels: channels, Rate: rate, Duration: duration, Size: size, Progress: stderr})
	}
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, res)
}

// report prints a scenario's result: one JSON object, or its table.
func report(w io.Writer, asJSON bool, res interface{ WriteTable(io.Writer) }) error {
	if asJSON {
		return json.NewEncoder(w).Encode(res)
	}
	res.WriteTable(w)
	return nil
}

// UsageError is a mistake on the command line (an unknown scenario or
// flag): cmd/switchyard exits 2 for it.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e UsageError) Unwrap() error { return e.Err }

// checkLoopback parses the target and refuses anything but loopback.
func checkLoopback(target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--target %q: want a URL like http://127.0.0.1:8000", target)
	}
	host := u.Hostname()
	if host == "localhost" {
		return u, nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--target %q: only loopback addresses may be load-tested", target)
	}
	return u, nil
}

// child is a server started by the benchmark.
type child struct {
	cmd    *exec.Cmd
	url    string
	dir    string
	exited chan struct{}
}

// startServer runs this binary's serve command on a free loopback port
// with a fresh data directory and waits until it is healthy.
func startServer(ctx context.Context, stderr io.Writer, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "switchyard-bench-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "serve", "--listen", addr, "--data-dir", dir, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.Env = append(cleanEnv(os.Environ()), env...)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &child{cmd: cmd, url: "http://" + addr, dir: dir, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(c.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(c.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c, nil
			}
		}
		select {
		case <-c.exited:
			os.RemoveAll(dir)
			return nil, errors.New("the server exited while starting")
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, errors.New("the server did not become healthy in 15 s")
		}
	}
}

// cleanEnv drops SWITCHYARD_* settings so the child runs on defaults.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SWITCHYARD_") {
			out = append(out, kv)
		}
	}
	return out
}

func (c *child) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	os.RemoveAll(c.dir)
}

// procRSS reads a process's resident memory (VmRSS) from /proc/PID/status,
// in bytes.
func procRSS(pid int) (float64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("pid %d: want a positive process id", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS finds the "VmRSS: N kB" line of a /proc/PID/status text.
func parseVmRSS(status []byte) (float64, error) {
	sc := bufio.NewScanner(strings.NewReader(string(status)))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
		}
		return kb * 1024, nil
	}
	return 0, errors.New("no VmRSS in /proc/PID/status (a kernel thread or a zombie?)")
}

// scrape reads the numeric samples of /metrics (names without labels, or
// the first sample of a labelled metric).
func scrape(ctx context.Context, base *url.URL) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base.JoinPath("/metrics").String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("scrape /metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		if _, seen := out[name]; seen {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// errSoakFailed is returned after the soak's report when it did not pass.
var errSoakFailed = errors.New("soak: FAIL (server figures grew, or something failed)")
