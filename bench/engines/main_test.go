package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary act as the server child, as the real binary
// does: startChild re-executes os.Executable() with "serve <candidate>".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// TestCandidates runs every registered candidate with a few connections:
// upgrade, hello, the child's count, echo on all of them, teardown.
func TestCandidates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process per candidate")
	}
	cfg := config{
		conns:          50,
		concurrency:    10,
		timeout:        30 * time.Second,
		baselineSettle: 10 * time.Millisecond,
		settle:         10 * time.Millisecond,
		echoChecks:     50,
		dialTimeout:    5 * time.Second,
	}
	for _, name := range candidateNames() {
		t.Run(name, func(t *testing.T) {
			res := runOne(context.Background(), cfg, name, 1)
			if res.Err != "" {
				t.Fatal(res.Err)
			}
			if res.EchoOK != cfg.conns || res.ConnectedEnd != int64(cfg.conns) {
				t.Fatalf("echo %d/%d, connected at end %d", res.EchoOK, res.EchoChecked, res.ConnectedEnd)
			}
			if res.RSSAfter == 0 || res.After.NumGoroutine == 0 {
				t.Fatalf("no figures: %+v", res)
			}
		})
	}
}

// TestServeRefusesNonLoopback: the child only listens on loopback.
func TestServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.0.0.1:0", ":0"} {
		if err := serveMain([]string{"gorilla", "-listen", addr}); err == nil {
			t.Errorf("serve -listen %s: no error", addr)
		}
	}
}

func TestNewStat(t *testing.T) {
	s := newStat([]float64{3, 1, 2})
	if s.Median != 2 || s.Min != 1 || s.Max != 3 {
		t.Fatalf("%+v", s)
	}
	if s := newStat([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Fatalf("even median %+v", s)
	}
}

// writeRawFrame writes one masked client frame with the given first byte
// (FIN bit and opcode).
func writeRawFrame(t *testing.T, c net.Conn, b0 byte, payload string) {
	t.Helper()
	frame := []byte{b0, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i := 0; i < len(payload); i++ {
		frame = append(frame, payload[i]^frame[2+i%4])
	}
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// TestCandidatesProtocol: every candidate answers ping, reassembles a
// fragmented text message (with a ping between the fragments) and answers
// close, as a real server would.
func TestCandidatesProtocol(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process per candidate")
	}
	for _, name := range candidateNames() {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ch, err := startChild(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.kill()
			c, err := dialWS(ctx, ch.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			expect := func(wantOp byte, want string) {
				t.Helper()
				op, p, err := readServerFrame(c)
				if err != nil {
					t.Fatal(err)
				}
				if op != wantOp || (want != "" && string(p) != want) {
					t.Fatalf("got opcode %d %q, want %d %q", op, p, wantOp, want)
				}
			}

			writeRawFrame(t, c, 0x80|opPing, "p1")
			expect(opPong, "p1")

			writeRawFrame(t, c, opText, "frag") // text, FIN=0
			writeRawFrame(t, c, 0x80|opPing, "p2")
			expect(opPong, "p2")
			writeRawFrame(t, c, 0x80, "mented") // continuation, FIN=1
			expect(opText, "fragmented")

			writeRawFrame(t, c, 0x80|opClose, "\x03\xe8") // 1000
			expect(opClose, "")
		})
	}
}
