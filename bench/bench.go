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

// Main runs `switchyard bench SCENARIO [flags]`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (retErr error) {
	if len(args) == 0 {
		return fmt.Errorf("usage: switchyard bench idle|fanout|resources|longpoll|soak [--target URL] [--conns N] [--json] …")
	}
	scenario, args := args[0], args[1:]
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "server to measure, e.g. http://127.0.0.1:8000 (default: start one)")
	conns := fs.Int("conns", 10000, "connections to open (up to ~19,000 here: the process limit is 20,000 open files)")
	settle := fs.Duration("settle", 5*time.Second, "wait before reading memory figures")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	channels := fs.Int("channels", 1, "fanout: channels (subscriber i joins channel i % channels)")
	rate := fs.Int("rate", 100, "fanout: publications per second, over all channels")
	duration := fs.Duration("duration", 10*time.Second, "fanout: how long to publish")
	size := fs.Int("size", 64, "fanout: payload bytes")
	apiKey := fs.String("api-key", "", "fanout with --target: a key of the server's api_keys")
	writers := fs.Int("writers", 4, "resources: connections writing rows, one request in flight each")
	secret := fs.String("secret", "", "longpoll with --target: the server's channelstream.secret")
	targetPID := fs.Int("target-pid", 0, "idle with --target: read the server's RSS from /proc/PID/status (for servers without Switchyard's /metrics)")
	churn := fs.Int("churn", 0, "soak: connections closed and replaced per second (default conns/100)")
	writes := fs.Int("writes", 30, "soak: resource writes per second (create, update, delete in turn)")
	warmup := fs.Duration("warmup", 0, "soak: load before the first measurement (default duration/10, 10s to 2m)")
	watchers := fs.Int("watchers", -1, "soak: connections that also watch every row with subscribe_list (default conns/100)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	switch scenario {
	case "idle", "fanout", "resources", "longpoll", "soak":
	default:
		return fmt.Errorf("unknown scenario %q (have: idle, fanout, resources, longpoll, soak)", scenario)
	}
	maxDuration := 10 * time.Minute
	if scenario == "soak" {
		// Soak defaults scale with the connections: every publication
		// reaches about 100 subscribers, churn replaces 1 % a second.
		maxDuration = 24 * time.Hour
		if !set["channels"] {
			*channels = max(*conns/100, 1)
		}
		if !set["rate"] {
			*rate = 50
		}
		if !set["writers"] {
			*writers = 2
		}
		if *churn == 0 {
			*churn = max(*conns/100, 1)
		}
		if *watchers < 0 {
			*watchers = *conns / 100
		}
		if *warmup == 0 {
			*warmup = min(max(*duration/10, 10*time.Second), 2*time.Minute)
		}
		if !set["settle"] {
			// Long enough for the Go runtime's forced collection (every 2
			// minutes at most): both measurements then see collected heaps,
			// not whatever garbage the load left.
			*settle = 130 * time.Second
		}
		if !set["timeout"] {
			*timeout = *duration + *warmup + 2**settle + 15*time.Minute
		}
		if *churn < 0 || *churn > 10000 || *writes < 0 || *writes > 10000 || *watchers > *conns || *warmup < 0 {
			return fmt.Errorf("want --churn 1..10000, --writes 0..10000, --watchers up to --conns, --warmup >= 0")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *writers < 1 || *writers > 1000 {
		return fmt.Errorf("--writers must be between 1 and 1000")
	}
	if *conns < 1 || *conns > 19000 {
		return fmt.Errorf("--conns must be between 1 and 19000 (the process limit is 20,000 open files)")
	}
	if *channels < 1 || *rate < 1 || *rate > 100000 || *duration <= 0 || *duration > maxDuration || *size < 0 || *size > 1<<20 {
		return fmt.Errorf("want --channels >= 1, --rate 1..100000, --duration up to %v, --size 0..1MiB", maxDuration)
	}
	if *targetPID != 0 {
		if *target == "" || scenario != "idle" {
			return fmt.Errorf("--target-pid is for idle with --target (a server this run did not start)")
		}
		if _, err := procRSS(*targetPID); err != nil {
			return fmt.Errorf("--target-pid: %w", err)
		}
	}
	base, key, csSecret := *target, *apiKey, *secret
	if base == "" {
		key, csSecret = rand.Text(), rand.Text()
		env := []string{"SWITCHYARD_API_KEYS=" + key, ResourceBenchConfig}
		if scenario == "longpoll" {
			env = append(env, "SWITCHYARD_CHANNELSTREAM_ENABLED=true", "SWITCHYARD_CHANNELSTREAM_SECRET="+csSecret)
		}
		srv, err := startServer(ctx, stderr, env...)
		if err != nil {
			return err
		}
		defer srv.stop()
		base = srv.url
	}
	u, err := checkLoopback(base)
	if err != nil {
		return err
	}
	type table interface{ WriteTable(io.Writer) }
	var res table
	switch scenario {
	case "idle":
		res, err = Idle(ctx, IdleConfig{Target: u, TargetPID: *targetPID, Conns: *conns, Settle: *settle, Progress: stderr})
	case "fanout":
		if key == "" {
			return fmt.Errorf("fanout with --target needs --api-key (the server API publishes)")
		}
		res, err = Fanout(ctx, FanoutConfig{Target: u, APIKey: key, Conns: *conns, Channels: *channels, Rate: *rate, Duration: *duration, Size: *size, Progress: stderr})
	case "resources":
		res, err = Resources(ctx, ResourcesConfig{Target: u, Writers: *writers, Conns: *conns, Duration: *duration, Progress: stderr})
	case "soak":
		if key == "" {
			return fmt.Errorf("soak with --target needs --api-key (the server API publishes)")
		}
		res, err = Soak(ctx, SoakConfig{Target: u, APIKey: key, Conns: *conns, Duration: *duration, Warmup: *warmup, Settle: *settle,
			Churn: *churn, Channels: *channels, Rate: *rate, Writes: *writes, Writers: *writers, Watchers: *watchers, Progress: stderr})
		if err == nil && !res.(*SoakResult).Pass {
			defer func() { retErr = errSoakFailed }()
		}
	case "longpoll":
		if csSecret == "" {
			return fmt.Errorf("longpoll with --target needs --secret (the scenario signs /connect and /message)")
		}
		res, err = Longpoll(ctx, LongpollConfig{Target: u, Secret: csSecret, Conns: *conns, Channels: *channels, Rate: *rate, Duration: *duration, Size: *size, Progress: stderr})
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	res.WriteTable(stdout)
	return nil
}

// errSoakFailed is returned after the soak's report when it did not pass.
var errSoakFailed = errors.New("soak: FAIL (server figures grew, or something failed)")

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
