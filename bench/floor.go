package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// FloorConfig configures the floor scenario.
type FloorConfig struct {
	Conns    int           // sockets
	Rate     int           // messages per second, each written to every socket
	Duration time.Duration // how long to write
	Size     int           // payload bytes, as for fanout (the frame carries what fanout's would)
	Progress io.Writer
}

// FloorResult is what the floor scenario measured; with --with-fanout it
// also holds the fanout run it is compared with.
type FloorResult struct {
	Scenario         string  `json:"scenario"`
	Conns            int     `json:"conns"`
	Rate             int     `json:"rate"`
	Size             int     `json:"size"`
	FrameBytes       int     `json:"frame_bytes"` // one WebSocket frame, header included
	Seconds          float64 `json:"seconds"`
	Messages         int64   `json:"messages"`
	MessagesPerSec   float64 `json:"messages_per_sec"`
	Deliveries       int64   `json:"deliveries"` // frames the clients received whole
	Expected         int64   `json:"expected_deliveries"`
	ShortClients     int     `json:"short_clients"` // clients that received fewer bytes than written to them
	Disconnects      int64   `json:"disconnects"`
	WriteErrors      int64   `json:"write_errors"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// CPU of the writing thread (getrusage RUSAGE_THREAD, user + system):
	// on loopback it includes the receiving TCP stack, as the server's
	// writev does in fanout.
	CPUSeconds      float64 `json:"writer_cpu_seconds"`
	CPUPer1000Deliv float64 `json:"cpu_us_per_1000_deliveries"`

	// With --with-fanout: the fanout run before this one, with the same
	// subscribers, rate and size, and fanout's CPU per delivery over
	// the floor's.
	Fanout *FanoutResult `json:"fanout,omitempty"`
	Ratio  float64       `json:"fanout_over_floor,omitempty"`
}

// floorFrame is the unmasked text frame the floor writes: the bytes /live
// pushes for a fanout publication of size bytes (the same envelope and
// data shape, a fixed send time; a channel without history, as fanout's:
// offset 0, no epoch), so both runs move the same bytes.
func floorFrame(size int) []byte {
	pad := strings.Repeat("x", max(size-40, 0))
	p := fmt.Appendf(nil, `{"stream":"$channels","payload":{"action":"message","channel":"bench0","offset":0,"epoch":"","data":{"t":%d,"p":%q}}}`, int64(1764680000000000000), pad)
	b := []byte{0x81}
	switch {
	case len(p) <= 125:
		b = append(b, byte(len(p)))
	case len(p) <= 0xFFFF:
		b = append(b, 126, byte(len(p)>>8), byte(len(p)))
	default:
		b = append(b, 127, 0, 0, 0, 0, byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
	}
	return append(b, p...)
}

// Floor measures the least CPU a delivery can cost on this machine: it
// opens Conns loopback TCP connections to itself, drains the client ends
// with one reader goroutine each, and for each message writes one
// pre-built WebSocket frame to every server end with write(2) on the
// (blocking) descriptor, from one goroutine locked to its thread, with no
// framing, no goroutine per socket and no allocation per write. The CPU
// figure is that thread's, read with getrusage around the writes.
func Floor(ctx context.Context, cfg FloorConfig) (*FloorResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if err := raiseOpenFiles(2*cfg.Conns + 256); err != nil {
		return nil, err
	}
	frame := floorFrame(cfg.Size)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()

	// Server ends: accepted, then moved out of the Go poller into a
	// blocking descriptor of their own (os.File.Fd sets blocking mode).
	files := make([]*os.File, 0, cfg.Conns)
	accepted := make(chan error, 1)
	go func() {
		for range cfg.Conns {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				accepted <- err
				return
			}
			f.Fd()
			files = append(files, f)
		}
		accepted <- nil
	}()
	clients := make([]net.Conn, 0, cfg.Conns)
	received := make([]atomic.Int64, cfg.Conns)
	var disconnects atomic.Int64
	var readers sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		for _, f := range files {
			f.Close()
		}
		for _, c := range clients {
			c.Close()
		}
		readers.Wait()
	}()
	var d net.Dialer
	for i := range cfg.Conns {
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			ln.Close()
			<-accepted
			return nil, fmt.Errorf("after %d connections: %w", i, err)
		}
		clients = append(clients, c)
		readers.Go(func() {
			buf := make([]byte, 4096) // bufio's default, as fanout's clients
			for {
				n, err := c.Read(buf)
				received[i].Add(int64(n))
				if err != nil {
					select {
					case <-stop:
					default:
						disconnects.Add(1)
					}
					return
				}
			}
		})
	}
	if err := <-accepted; err != nil {
		return nil, fmt.Errorf("accepting: %w", err)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	fmt.Fprintf(progress, "floor: %d sockets; writing %d-byte frames to each, %d/s for %v\n", len(fds), len(frame), cfg.Rate, cfg.Duration)

	messages, writeErrs, cpu, elapsed := writeFloor(ctx, fds, frame, cfg, progress, received)
	expected := messages * int64(cfg.Conns)
	want := messages * int64(len(frame))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if short, _ := tally(received, want, len(frame)); short == 0 {
			break
		}
	}
	short, got := tally(received, want, len(frame))
	secs := elapsed.Seconds()
	r := &FloorResult{
		Scenario:         "floor",
		Conns:            cfg.Conns,
		Rate:             cfg.Rate,
		Size:             cfg.Size,
		FrameBytes:       len(frame),
		Seconds:          secs,
		Messages:         messages,
		MessagesPerSec:   float64(messages) / secs,
		Deliveries:       got,
		Expected:         expected,
		ShortClients:     short,
		Disconnects:      disconnects.Load(),
		WriteErrors:      writeErrs,
		DeliveriesPerSec: float64(got) / secs,
		CPUSeconds:       cpu.Seconds(),
	}
	if got > 0 {
		r.CPUPer1000Deliv = float64(cpu.Microseconds()) * 1000 / float64(got)
	}
	return r, nil
}

// writeFloor writes frame to every descriptor, cfg.Rate times a second for
// cfg.Duration (back to back when it falls behind), on a thread of its own,
// and returns the messages written, the failed writes, the thread's CPU
// time and how long writing took.
func writeFloor(ctx context.Context, fds []int, frame []byte, cfg FloorConfig, progress io.Writer, received []atomic.Int64) (messages, failed int64, cpu, elapsed time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	end := start.Add(cfg.Duration)
	next, lastReport := start, start
	for time.Now().Before(end) && ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		for _, fd := range fds {
			if writeAll(fd, frame) != nil {
				failed++
			}
		}
		messages++
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			fmt.Fprintf(progress, "floor: %d messages written\n", messages)
		}
	}
	elapsed = time.Since(start)
	return messages, failed, threadCPU() - cpu0, elapsed
}

// writeAll writes p to the blocking descriptor fd.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// tally returns how many clients received fewer than want bytes, and the
// whole frames received over all clients.
func tally(received []atomic.Int64, want int64, frameLen int) (short int, frames int64) {
	for i := range received {
		n := received[i].Load()
		if n < want {
			short++
		}
		frames += n / int64(frameLen)
	}
	return short, frames
}

// threadCPU is the calling thread's user + system CPU time.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseOpenFiles makes room for n open files: the soft limit up to the
// hard one, and the hard one too when the process may (root).
func raiseOpenFiles(n int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= uint64(n) {
		return nil
	}
	want := rl
	want.Cur = uint64(n)
	if want.Max < want.Cur {
		want.Max = want.Cur
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("floor needs %d open files (two per socket) and the hard limit is %d: lower --conns or raise ulimit -Hn", n, rl.Max)
		}
		return fmt.Errorf("raising the open files limit to %d: %w", n, err)
	}
	return nil
}

// WriteTable prints the result for people.
func (r *FloorResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tsubs\tmsg/s\tdeliveries/s\tdelivered/expected\tCPU s\tCPU µs / 1,000 deliveries\t")
	if f := r.Fanout; f != nil {
		fmt.Fprintf(tw, "fanout (server process)\t%d\t%.0f\t%.0f\t%d/%d\t%.2f\t%.0f\t\n", f.Conns, f.PublicationsPerSec, f.DeliveriesPerSec, f.Deliveries, f.Expected, f.ServerCPUSeconds, f.CPUPer1000Deliv)
	}
	fmt.Fprintf(tw, "floor (writing thread)\t%d\t%.0f\t%.0f\t%d/%d\t%.2f\t%.0f\t\n", r.Conns, r.MessagesPerSec, r.DeliveriesPerSec, r.Deliveries, r.Expected, r.CPUSeconds, r.CPUPer1000Deliv)
	tw.Flush()
	if r.ShortClients > 0 || r.Disconnects > 0 || r.WriteErrors > 0 {
		fmt.Fprintf(w, "floor: %d clients short, %d disconnects, %d failed writes\n", r.ShortClients, r.Disconnects, r.WriteErrors)
	}
	if r.Fanout != nil {
		fmt.Fprintf(w, "fanout / floor: %.2f× CPU per delivery (%d-byte frames)\n", r.Ratio, r.FrameBytes)
	}
}

// FloorWithFanout runs fanout (fc, whose TargetPID must be set) and then,
// a few seconds after its sockets are closed, the floor with the same
// sockets, rate and size, and returns the floor's result holding the
// fanout's and the ratio of their CPU per delivery.
func FloorWithFanout(ctx context.Context, fc FanoutConfig, cfg FloorConfig) (*FloorResult, error) {
	if fc.TargetPID == 0 {
		return nil, errors.New("floor --with-fanout: the server's process id is needed for its CPU time")
	}
	fr, err := Fanout(ctx, fc)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	if err := sleep(ctx, 3*time.Second); err != nil { // let the server settle
		return nil, err
	}
	r, err := Floor(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r.Fanout = fr
	if r.CPUPer1000Deliv > 0 {
		r.Ratio = fr.CPUPer1000Deliv / r.CPUPer1000Deliv
	}
	return r, nil
}
