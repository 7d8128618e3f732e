package ws_test

// TestAutobahn runs the Go port of the Autobahn|Testsuite fuzzing client
// (autobahn_client_test.go, autobahn_cases_test.go) against an echo
// server built on this package's epoll engine, and fails on any case that
// Autobahn would report as failed. The report table in docs/autobahn.md
// comes from:
//
//	go test ./ws -run 'TestAutobahn$' -count=1 -autobahn.parallel=1 -autobahn.report=../docs/autobahn.md

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyardhq/switchyard/ws"
)

var (
	abReportFlag   = flag.String("autobahn.report", "", "write the Autobahn port's report (Markdown) to this file")
	abFullFlag     = flag.Bool("autobahn.full", false, "run groups 9, 12 and 13 at Autobahn's full sizes")
	abParallelFlag = flag.Int("autobahn.parallel", 4, "Autobahn cases run at once")
	abTimeFlag     = flag.Float64("autobahn.timescale", 2, "multiply Autobahn's timeouts (1 s for a close handshake, for the server to drop TCP, for most cases) by this: `make test` runs with -race beside other packages on 2 cores")
	abCasesFlag    = flag.String("autobahn.cases", "", "run only the Autobahn cases whose id starts with one of these comma-separated prefixes (\"6.4.,7.\")")
)

// abReduced is the scale `make test` runs at.
var abReduced = abScale{perfDiv: 16, rttCount: 100, compCount: 2}

// abEcho echoes every message with its type, like Autobahn's test servers.
type abEcho struct{}

func (abEcho) OnOpen(*ws.Conn) {}
func (abEcho) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	if typ == ws.Binary {
		c.SendBinary(context.Background(), data)
		return
	}
	c.Send(context.Background(), data)
}
func (abEcho) OnClose(*ws.Conn, error) {}

// abResult is one line of the report.
type abResult struct {
	id, desc                string
	behavior, behaviorClose string
	result, resultClose     string
	remoteCode              int
	duration                time.Duration
	reportTime              bool
	received                []abEvent
}

// outcome sums a case up the way Autobahn's report colours it: a failed
// behaviour or an unclean or wrongly closed connection fails.
func (r abResult) outcome() string {
	switch {
	case r.behavior == abInformational:
		return "info"
	case r.behavior == abFailed, r.behavior == abUnimplemented, r.behaviorClose == abFailed, r.behaviorClose == abUnclean:
		return "fail"
	case r.behavior == abNonStrict, r.behaviorClose == abWrongCode, r.behaviorClose == abFailedByClient:
		return "non-strict"
	}
	return "pass"
}

func TestAutobahn(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Log("no epoll here: the engine serves with goroutines")
	}
	sc := abReduced
	if *abFullFlag {
		sc = abFull
	}
	eng, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Upgrade(w, r, eng, abEcho{}, ws.MaxMessageSize(32<<20), ws.Compression(true), ws.PingInterval(0))
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	var cases []abCase
	for _, c := range abCases(sc) {
		if abSelected(c.id) {
			cases = append(cases, c)
		}
	}
	results := make([]abResult, len(cases))
	sem := make(chan struct{}, max(*abParallelFlag, 1))
	var wg sync.WaitGroup
	for i, c := range cases {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = runAutobahnCase(addr, c)
		})
	}
	wg.Wait()

	counts := map[string]int{}
	for _, r := range results {
		counts[r.outcome()]++
		switch r.outcome() {
		case "fail":
			t.Errorf("case %s (%s): %s / %s: %s; %s; received %v", r.id, r.desc, r.behavior, r.behaviorClose, r.result, r.resultClose, r.received)
		case "non-strict":
			t.Logf("case %s is non-strict (%s): %s / %s: %s; %s", r.id, r.desc, r.behavior, r.behaviorClose, r.result, r.resultClose)
		}
	}
	t.Logf("%d cases: %d pass, %d non-strict, %d informational, %d failed", len(results), counts["pass"], counts["non-strict"], counts["info"], counts["fail"])
	if *abReportFlag != "" {
		if err := os.WriteFile(*abReportFlag, abReport(results, sc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func abSelected(id string) bool {
	if *abCasesFlag == "" {
		return true
	}
	for p := range strings.SplitSeq(*abCasesFlag, ",") {
		if p = strings.TrimSpace(p); p != "" && (id == p || strings.HasPrefix(id, strings.TrimSuffix(p, ".")+".")) {
			return true
		}
	}
	return false
}

// runAutobahnCase connects, runs one case to the end of its connection
// and returns the verdict.
func runAutobahnCase(addr string, c abCase) abResult {
	f := newFuzzer()
	f.timeScale = *abTimeFlag
	res := abResult{id: c.id, desc: c.desc}
	start := time.Now()
	if err := f.handshake(addr, c.offers); err != nil {
		if f.nc != nil {
			f.nc.Close()
		}
		res.behavior, res.behaviorClose = abFailed, abFailed
		res.result = "opening handshake: " + err.Error()
		return res
	}
	go f.w.run()
	go f.readLoop()
	limit := c.limit
	if limit == 0 {
		limit = 30 * time.Second
	}
	watchdog := time.NewTimer(limit)
	defer watchdog.Stop()
	c.open(f)
	for !f.lost {
		select {
		case fn := <-f.q:
			fn()
		case <-watchdog.C:
			f.result = fmt.Sprintf("the case did not end within %v", limit)
			f.failConnection()
		}
	}
	close(f.done)
	for _, tm := range f.timers {
		tm.Stop()
	}
	close(f.w.stop)
	f.nc.Close()
	<-f.w.done
	res.behavior, res.behaviorClose = f.behavior, f.behaviorClose
	res.result, res.resultClose = f.result, f.resultClose
	res.remoteCode = f.remoteCloseCode
	res.duration = time.Since(start)
	res.reportTime = f.reportTime
	res.received = f.received
	return res
}

// abReport renders the results as Markdown.
func abReport(results []abResult, sc abScale) []byte {
	var b strings.Builder
	b.WriteString("# WebSocket conformance: Autobahn|Testsuite cases\n\n")
	b.WriteString("The `ws` engine (epoll mode) against a Go port of the [Autobahn|Testsuite](https://github.com/crossbario/autobahn-testsuite)\n")
	b.WriteString("fuzzing client: a raw-socket client that sends the frames of each case by hand and judges the\n")
	b.WriteString("answers as Autobahn's `Case.onConnectionLost` does (`ws/autobahn_*_test.go`). The server echoes\n")
	b.WriteString("every message (`ws.Upgrade` with `Compression(true)`, `MaxMessageSize(32 MiB)`, no pings).\n")
	b.WriteString("The Python suite itself cannot run on the build machines (no PyPI), so the port runs in\n")
	b.WriteString("`make test` and fails on any failed case.\n\n")
	b.WriteString("Regenerate this page with (one case at a time, so the times mean something):\n\n")
	b.WriteString("```sh\ngo test ./ws -run 'TestAutobahn$' -count=1 -autobahn.parallel=1 -autobahn.report=../docs/autobahn.md\n```\n\n")
	if sc == abFull {
		b.WriteString("This run used Autobahn's full sizes (`-autobahn.full`).\n\n")
	} else {
		fmt.Fprintf(&b, "Groups 9, 12 and 13 run at reduced sizes: 9.1–9.6 messages are 1/%d of Autobahn's, 9.7/9.8 send %d\n", sc.perfDiv, sc.rttCount)
		fmt.Fprintf(&b, "messages per case instead of 1000, 12.x/13.x %d instead of 1000 (`-autobahn.full` runs the original sizes). The\n", sc.compCount)
		b.WriteString("compression cases use generated data of the same kinds as Autobahn's files (JSON, a bitmap,\n")
		b.WriteString("German prose, HTML, a PDF with compressed streams).\n\n")
	}
	fmt.Fprintf(&b, "Autobahn's timeouts (1 s for the closing handshake, for the server to drop TCP, for most cases to end) are\n")
	fmt.Fprintf(&b, "multiplied by %g (`-autobahn.timescale`): `make test` runs the port with `-race` beside the other packages on 2\n", *abTimeFlag)
	b.WriteString("cores. The waits a case makes on purpose (6.4's fail-fast pauses, 5.19's) are not scaled.\n\n")
	fmt.Fprintf(&b, "Last run: %s, %s %s/%s.\n\n", time.Now().UTC().Format("2006-01-02"), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	b.WriteString("Outcomes as in Autobahn's report: **pass**; **non-strict** (conformant, but not the preferred\n")
	b.WriteString("behaviour of a SHOULD); **info** (informational case, behaviour left to the implementation);\n")
	b.WriteString("**fail**. The *close* column is Autobahn's closing behaviour (OK, WRONG CODE, UNCLEAN, FAILED BY\n")
	b.WriteString("CLIENT) and the close code the server sent.\n\n")

	type tally struct{ n, pass, nonStrict, info, fail int }
	groups := map[string]*tally{}
	var order []string
	for _, r := range results {
		g := strings.SplitN(r.id, ".", 2)[0]
		if groups[g] == nil {
			groups[g] = &tally{}
			order = append(order, g)
		}
		t := groups[g]
		t.n++
		switch r.outcome() {
		case "pass":
			t.pass++
		case "non-strict":
			t.nonStrict++
		case "info":
			t.info++
		default:
			t.fail++
		}
	}
	names := map[string]string{"1": "Framing", "2": "Pings/Pongs", "3": "Reserved Bits", "4": "Opcodes", "5": "Fragmentation",
		"6": "UTF-8 Handling", "7": "Close Handling", "9": "Limits/Performance", "12": "WebSocket Compression (different payloads)",
		"13": "WebSocket Compression (different parameters)"}
	b.WriteString("## Summary\n\n| Group | Cases | Pass | Non-strict | Info | Fail |\n|---|---:|---:|---:|---:|---:|\n")
	var total tally
	for _, g := range order {
		t := groups[g]
		fmt.Fprintf(&b, "| %s %s | %d | %d | %d | %d | %d |\n", g, names[g], t.n, t.pass, t.nonStrict, t.info, t.fail)
		total.n += t.n
		total.pass += t.pass
		total.nonStrict += t.nonStrict
		total.info += t.info
		total.fail += t.fail
	}
	fmt.Fprintf(&b, "| **All** | %d | %d | %d | %d | %d |\n\n", total.n, total.pass, total.nonStrict, total.info, total.fail)

	b.WriteString("## Cases\n\n| Case | Outcome | Behaviour | Close | Time | Description |\n|---|---|---|---|---:|---|\n")
	for _, r := range results {
		code := "none"
		if r.remoteCode != abNoCode {
			code = fmt.Sprint(r.remoteCode)
		}
		ms := ""
		if r.reportTime {
			ms = fmt.Sprintf("%d ms", r.duration.Milliseconds())
		}
		desc := strings.ReplaceAll(r.desc, "|", "\\|")
		fmt.Fprintf(&b, "| %s | %s | %s | %s %s | %s | %s |\n", r.id, r.outcome(), r.behavior, r.behaviorClose, code, ms, desc)
	}
	return []byte(b.String())
}
