// Command engines measures the memory cost of an idle WebSocket connection
// for several Go WebSocket server engines.
//
//	go run . [-conns 10000] [-candidates gorilla,gws,gobwas-epoll,nbio] [-rounds 1] [-json]
//
// Each candidate's server runs as a child process of this binary
// (`engines serve <candidate> -listen 127.0.0.1:0`), so its memory is not
// mixed with the client's; this process opens the connections with a raw
// client. Everything targets 127.0.0.1 only and is bounded in count and time.
// See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// maxConns keeps both processes under the 20,000 open-file limit.
const maxConns = 19000

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		return
	}
	if err := benchMain(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "engines:", err)
		os.Exit(1)
	}
}

func benchMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("engines", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{}
	fs.IntVar(&cfg.conns, "conns", 10000, fmt.Sprintf("idle connections per run (1..%d: the open-file limit is 20,000 per process)", maxConns))
	list := fs.String("candidates", defaultCandidates, "comma-separated candidates (have: "+strings.Join(candidateNames(), ", ")+")")
	rounds := fs.Int("rounds", 1, "runs per candidate (interleaved); medians are reported")
	asJSON := fs.Bool("json", false, "print one JSON object per candidate instead of a table")
	fs.DurationVar(&cfg.timeout, "timeout", 120*time.Second, "hard limit for one candidate run")
	fs.DurationVar(&cfg.baselineSettle, "baseline-settle", 2*time.Second, "wait after the server starts, before the baseline reading")
	fs.DurationVar(&cfg.settle, "settle", 3*time.Second, "wait after the last connection, before the reading")
	fs.IntVar(&cfg.concurrency, "concurrency", 200, "concurrent dials")
	fs.IntVar(&cfg.echoChecks, "echo", 100, "connections checked with an echo at the end")
	fs.BoolVar(&cfg.verbose, "v", false, "log each step to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.dialTimeout = 10 * time.Second
	if cfg.conns < 1 || cfg.conns > maxConns {
		return fmt.Errorf("-conns must be between 1 and %d (the open-file limit is 20,000 per process)", maxConns)
	}
	if *rounds < 1 || *rounds > 20 {
		return errors.New("-rounds must be between 1 and 20")
	}
	if cfg.concurrency < 1 || cfg.concurrency > 1000 {
		return errors.New("-concurrency must be between 1 and 1000")
	}
	if cfg.timeout <= 0 || cfg.timeout > 10*time.Minute {
		return errors.New("-timeout must be positive and at most 10m")
	}
	var names []string
	for _, n := range strings.Split(*list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := candidates[n]; !ok {
			return fmt.Errorf("unknown candidate %q (have: %s)", n, strings.Join(candidateNames(), ", "))
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return errors.New("no candidates")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	byName := map[string][]result{}
	failed := 0
	for r := 1; r <= *rounds; r++ {
		for _, n := range names {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res := runOne(ctx, cfg, n, r)
			byName[n] = append(byName[n], res)
			if res.Err != "" {
				failed++
				fmt.Fprintf(stderr, "round %d %-16s FAILED: %s\n", r, n, res.Err)
				continue
			}
			fmt.Fprintf(stderr, "round %d %-16s %6d conns  %7.0f conn/s  rss/conn %7.0f B (freed %7.0f)  heap/conn %6.0f  stack/conn %6.0f  goroutines/conn %.2f  echo %d/%d\n",
				r, n, res.Conns, res.ConnectRate, res.RSSPerConn, res.RSSFreedPerConn, res.HeapPerConn, res.StackPerConn, res.GoroutinesPerConn, res.EchoOK, res.EchoChecked)
		}
	}

	sums := make([]summary, 0, len(names))
	for _, n := range names {
		sums = append(sums, summarize(n, cfg.conns, byName[n]))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, s := range sums {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
	} else {
		printTable(stdout, sums)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d runs failed", failed, *rounds*len(names))
	}
	return nil
}

// stat is the median and the spread (min, max) of one figure over rounds.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func newStat(vs []float64) stat {
	if len(vs) == 0 {
		return stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// summary is one candidate over all its rounds: the -json output.
type summary struct {
	Candidate         string   `json:"candidate"`
	Conns             int      `json:"conns"`
	Rounds            int      `json:"rounds"`
	OK                int      `json:"rounds_ok"`
	ConnectRate       stat     `json:"connect_rate"`
	RSSPerConn        stat     `json:"rss_per_conn"`
	RSSFreedPerConn   stat     `json:"rss_freed_per_conn"`
	HeapPerConn       stat     `json:"heap_per_conn"`
	StackPerConn      stat     `json:"stack_per_conn"`
	SysPerConn        stat     `json:"sys_per_conn"`
	GoroutinesPerConn stat     `json:"goroutines_per_conn"`
	GoVersion         string   `json:"go_version"`
	Errors            []string `json:"errors,omitempty"`
	Runs              []result `json:"runs"`
}

func summarize(name string, conns int, runs []result) summary {
	s := summary{Candidate: name, Conns: conns, Rounds: len(runs), GoVersion: runtime.Version(), Runs: runs}
	pick := func(f func(result) float64) stat {
		var vs []float64
		for _, r := range runs {
			if r.Err == "" {
				vs = append(vs, f(r))
			}
		}
		return newStat(vs)
	}
	for _, r := range runs {
		if r.Err == "" {
			s.OK++
		} else {
			s.Errors = append(s.Errors, fmt.Sprintf("round %d: %s", r.Round, r.Err))
		}
	}
	s.ConnectRate = pick(func(r result) float64 { return r.ConnectRate })
	s.RSSPerConn = pick(func(r result) float64 { return r.RSSPerConn })
	s.RSSFreedPerConn = pick(func(r result) float64 { return r.RSSFreedPerConn })
	s.HeapPerConn = pick(func(r result) float64 { return r.HeapPerConn })
	s.StackPerConn = pick(func(r result) float64 { return r.StackPerConn })
	s.SysPerConn = pick(func(r result) float64 { return r.SysPerConn })
	s.GoroutinesPerConn = pick(func(r result) float64 { return r.GoroutinesPerConn })
	return s
}

// fmtStat prints "median (min–max)", or just the median for one round.
func fmtStat(s stat, prec int) string {
	if math.IsNaN(s.Median) {
		return "-"
	}
	f := func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
	if s.Min == s.Max {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

func printTable(w io.Writer, sums []summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "candidate\tconns\trounds ok\tconnect/s\tRSS/conn B (after GC)\tRSS/conn B (after FreeOSMemory)\theap/conn B\tstack/conn B\tgoroutines/conn")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.Candidate, s.Conns, s.OK, s.Rounds,
			fmtStat(s.ConnectRate, 0), fmtStat(s.RSSPerConn, 0), fmtStat(s.RSSFreedPerConn, 0),
			fmtStat(s.HeapPerConn, 0), fmtStat(s.StackPerConn, 0), fmtStat(s.GoroutinesPerConn, 2))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "median (min–max) over rounds; %s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOMAXPROCS(0))
}
