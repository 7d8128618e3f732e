package bench

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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
	// IOURing adds io_uring rounds: the same sockets written in turn by
	// write(2) and by one io_uring submission of IORING_OP_SEND entries
	// per message, Duration each, twice (see FloorResult.IOURing).
	IOURing bool
	// Compress writes the frame a permessage-deflate connection receives
	// (the payload compressed once, as the server's shared compression
	// does) instead of the plain one.
	Compress bool
	Progress io.Writer
}

// FloorURing compares, on the floor's sockets, write(2) with io_uring:
// two rounds of Duration each way, taken in turn (write, io_uring, write,
// io_uring), summed per way.
type FloorURing struct {
	Write   FloorWay `json:"write"`
	IOURing FloorWay `json:"io_uring"`
	// Submits is how many io_uring_enter calls the io_uring rounds made
	// (one per message when the ring holds every socket's send).
	Submits  int64 `json:"io_uring_enter_calls"`
	RingSize int   `json:"ring_entries"`
	// Ratio is io_uring's writing-thread CPU per delivery over write(2)'s;
	// ProcessRatio the same for the whole process, AllRatio for the
	// writer, the readers and ksoftirqd together.
	Ratio        float64 `json:"io_uring_over_write"`
	ProcessRatio float64 `json:"io_uring_over_write_process"`
	AllRatio     float64 `json:"io_uring_over_write_all"`
}

// FloorWay is what one way of writing did over its rounds.
type FloorWay struct {
	Messages          int64   `json:"messages"`
	Deliveries        int64   `json:"deliveries"`
	Expected          int64   `json:"expected_deliveries"`
	WriteErrors       int64   `json:"write_errors"`
	Seconds           float64 `json:"seconds"`
	CPUSeconds        float64 `json:"writer_cpu_seconds"`
	ProcessCPUSeconds float64 `json:"process_cpu_seconds"`
	CPUPer1000Deliv   float64 `json:"cpu_us_per_1000_deliveries"`
	ProcessPer1000    float64 `json:"process_cpu_us_per_1000_deliveries"`
	// The readers' process and the kernel's softirq threads (ksoftirqd,
	// where the receiving stack runs when it is not run inline by the
	// sender) over the rounds and the readers' drain: work a cheaper
	// sender may have moved rather than saved. The ksoftirqd figure is
	// the machine's, other processes' traffic included.
	ReadersCPUSeconds float64 `json:"readers_cpu_seconds"`
	SoftirqCPUSeconds float64 `json:"ksoftirqd_cpu_seconds"`
	// AllPer1000 is writer process + readers + ksoftirqd per 1,000
	// deliveries.
	AllPer1000 float64 `json:"all_cpu_us_per_1000_deliveries"`
}

// FloorResult is what the floor scenario measured; with --with-fanout it
// also holds the fanout run it is compared with.
type FloorResult struct {
	Scenario         string  `json:"scenario"`
	Conns            int     `json:"conns"`
	Rate             int     `json:"rate"`
	Size             int     `json:"size"`
	Compress         bool    `json:"compress,omitempty"`
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
	// The writing process's CPU over the same time (the thread, the Go
	// runtime's own threads; the clients are in another process).
	ProcessCPUSeconds float64 `json:"process_cpu_seconds"`

	// With --with-fanout: the fanout run before this one, with the same
	// subscribers, rate and size, and fanout's CPU per delivery over
	// the floor's.
	Fanout *FanoutResult `json:"fanout,omitempty"`
	Ratio  float64       `json:"fanout_over_floor,omitempty"`

	// With --io-uring: write(2) against io_uring, after the run above.
	IOURing *FloorURing `json:"io_uring,omitempty"`
}

// floorFrame is the unmasked text frame the floor writes: the bytes /live
// pushes for a fanout publication of size bytes (the same envelope and
// data shape, a fixed send time, digits as varied as a real one; a channel without history, as fanout's:
// offset 0, no epoch), so both runs move the same bytes.
func floorFrame(size int) []byte {
	return wsFrame(0x81, floorPayload(size))
}

// floorFrameDeflate is floorFrame as a permessage-deflate connection
// receives it (--compress): the payload compressed as the server does
// (one message, no context takeover, the fastest level, the final 00 00
// ff ff removed) in a frame with RSV1 set.
func floorFrameDeflate(size int) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(floorPayload(size))
	w.Flush()
	out := buf.Bytes()
	return wsFrame(0xC1, out[:len(out)-4])
}

func floorPayload(size int) []byte {
	pad := strings.Repeat("x", max(size-40, 0))
	return fmt.Appendf(nil, `{"stream":"$channels","payload":{"action":"message","channel":"bench0","offset":0,"epoch":"","data":{"t":%d,"p":%q}}}`, int64(1764683917250496183), pad)
}

// wsFrame is an unmasked frame: the first byte b0, then p's length, then p.
func wsFrame(b0 byte, p []byte) []byte {
	b := []byte{b0}
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
// opens Conns loopback TCP connections to itself from a child process
// (this binary's hidden `bench floor-readers`, which drains each client
// end with a reader goroutine, as fanout's clients do, and counts the
// bytes), and for each message writes one pre-built WebSocket frame to
// every server end with write(2) on the (blocking) descriptor, from one
// goroutine locked to its thread, with no framing, no goroutine per socket
// and no allocation per write. The CPU figure is that thread's, read with
// getrusage around the writes; the clients' CPU is in the other process,
// as in fanout.
func Floor(ctx context.Context, cfg FloorConfig) (*FloorResult, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	if err := raiseOpenFiles(cfg.Conns + 256); err != nil {
		return nil, err
	}
	frame := floorFrame(cfg.Size)
	if cfg.Compress {
		frame = floorFrameDeflate(cfg.Size)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	rd, err := startFloorReaders(ctx, ln.Addr().String(), cfg.Conns, len(frame), progress)
	if err != nil {
		return nil, err
	}
	defer rd.stop()
	go func() {
		select { // unblock Accept if the readers die or time runs out
		case <-rd.exited:
		case <-ctx.Done():
		}
		ln.Close()
	}()

	// Server ends: accepted, then moved out of the Go poller into a
	// blocking descriptor of their own (os.File.Fd sets blocking mode).
	files := make([]*os.File, 0, cfg.Conns)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	fds := make([]int, 0, cfg.Conns)
	for range cfg.Conns {
		c, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("after %d connections: %w", len(files), err)
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		fds = append(fds, int(f.Fd()))
	}
	if line, err := rd.out.ReadString('\n'); err != nil || line != "ready\n" {
		return nil, fmt.Errorf("floor readers: %q %v", line, err)
	}
	fmt.Fprintf(progress, "floor: %d sockets; writing %d-byte frames to each, %d/s for %v\n", len(fds), len(frame), cfg.Rate, cfg.Duration)

	w := writeFloor(ctx, fds, frame, cfg, progress, nil)
	// The readers wait (up to 5 s) for every byte, then count.
	written := w.messages
	short, got, disconnects, err := rd.count(written * int64(len(frame)))
	if err != nil {
		return nil, err
	}
	secs := w.elapsed.Seconds()
	r := &FloorResult{
		Scenario:          "floor",
		Conns:             cfg.Conns,
		Rate:              cfg.Rate,
		Size:              cfg.Size,
		Compress:          cfg.Compress,
		FrameBytes:        len(frame),
		Seconds:           secs,
		Messages:          w.messages,
		MessagesPerSec:    float64(w.messages) / secs,
		Deliveries:        got,
		Expected:          w.messages * int64(cfg.Conns),
		ShortClients:      short,
		Disconnects:       disconnects,
		WriteErrors:       w.failed,
		DeliveriesPerSec:  float64(got) / secs,
		CPUSeconds:        w.thread.Seconds(),
		ProcessCPUSeconds: w.process.Seconds(),
	}
	if got > 0 {
		r.CPUPer1000Deliv = float64(w.thread.Microseconds()) * 1000 / float64(got)
	}
	if cfg.IOURing {
		if r.IOURing, err = floorURing(ctx, fds, frame, cfg, progress, rd, written, got); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// floorURing runs the io_uring rounds on the floor's sockets, which
// have had written messages (got frames counted) so far.
func floorURing(ctx context.Context, fds []int, frame []byte, cfg FloorConfig, progress io.Writer, rd *floorReaders, written, got int64) (*FloorURing, error) {
	ring, err := newURing(uint32(min(len(fds), 16384)))
	if err != nil {
		return nil, err
	}
	defer ring.close()
	u := &FloorURing{RingSize: ring.entries}
	for round := range 4 {
		way, r := &u.Write, (*floorRing)(nil)
		if round%2 == 1 {
			way, r = &u.IOURing, ring
		}
		readers0, softirq0 := procCPUOr0(rd.cmd.Process.Pid), softirqCPU()
		w := writeFloor(ctx, fds, frame, cfg, progress, r)
		written += w.messages
		_, total, _, err := rd.count(written * int64(len(frame)))
		if err != nil {
			return nil, err
		}
		way.ReadersCPUSeconds += procCPUOr0(rd.cmd.Process.Pid) - readers0
		way.SoftirqCPUSeconds += softirqCPU() - softirq0
		way.Messages += w.messages
		way.Deliveries += total - got
		way.Expected += w.messages * int64(len(fds))
		way.WriteErrors += w.failed
		way.Seconds += w.elapsed.Seconds()
		way.CPUSeconds += w.thread.Seconds()
		way.ProcessCPUSeconds += w.process.Seconds()
		got = total
	}
	u.Submits = ring.submits
	for _, way := range []*FloorWay{&u.Write, &u.IOURing} {
		if way.Deliveries > 0 {
			way.CPUPer1000Deliv = way.CPUSeconds * 1e9 / float64(way.Deliveries)
			way.ProcessPer1000 = way.ProcessCPUSeconds * 1e9 / float64(way.Deliveries)
			way.AllPer1000 = (way.ProcessCPUSeconds + way.ReadersCPUSeconds + way.SoftirqCPUSeconds) * 1e9 / float64(way.Deliveries)
		}
	}
	if u.Write.CPUPer1000Deliv > 0 && u.Write.ProcessPer1000 > 0 && u.Write.AllPer1000 > 0 {
		u.Ratio = u.IOURing.CPUPer1000Deliv / u.Write.CPUPer1000Deliv
		u.ProcessRatio = u.IOURing.ProcessPer1000 / u.Write.ProcessPer1000
		u.AllRatio = u.IOURing.AllPer1000 / u.Write.AllPer1000
	}
	return u, nil
}

// procCPUOr0 is procCPU, 0 when it cannot be read.
func procCPUOr0(pid int) float64 {
	s, err := procCPU(pid)
	if err != nil {
		return 0
	}
	return s
}

// softirqCPU is the CPU time of the kernel's ksoftirqd threads, in
// seconds (0 when /proc cannot tell).
func softirqCPU() float64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.HasPrefix(string(comm), "ksoftirqd/") {
			total += procCPUOr0(pid)
		}
	}
	return total
}

// count asks the readers to wait (up to 5 s) until every connection has
// received want bytes in all, and returns the connections short of it,
// the whole frames received so far over all, and the disconnects.
func (rd *floorReaders) count(want int64) (short int, frames, disconnects int64, err error) {
	fmt.Fprintf(rd.in, "want %d\n", want)
	line, err := rd.out.ReadString('\n')
	if err != nil {
		return 0, 0, 0, fmt.Errorf("floor readers: %w", err)
	}
	if _, err := fmt.Sscanf(line, "short %d frames %d disconnects %d", &short, &frames, &disconnects); err != nil {
		return 0, 0, 0, fmt.Errorf("floor readers: %q: %w", line, err)
	}
	return short, frames, disconnects, nil
}

// floorReaders is the child process holding the client ends.
type floorReaders struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	exited chan struct{}
}

func startFloorReaders(ctx context.Context, addr string, conns, frameLen int, stderr io.Writer) (*floorReaders, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "bench", "floor-readers", "--addr", addr, "--conns", strconv.Itoa(conns), "--frame", strconv.Itoa(frameLen))
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	rd := &floorReaders{cmd: cmd, in: in, out: bufio.NewReader(out), exited: make(chan struct{})}
	go func() { cmd.Wait(); close(rd.exited) }()
	return rd, nil
}

// stop closes the readers' stdin, which ends them, and waits.
func (rd *floorReaders) stop() {
	rd.in.Close()
	select {
	case <-rd.exited:
	case <-time.After(10 * time.Second):
		rd.cmd.Process.Kill()
		<-rd.exited
	}
}

// runFloorReaders is the child process of the floor scenario (`switchyard
// bench floor-readers`, not listed): it opens conns connections to addr,
// reads them until they close, counting bytes per connection, and prints
// "ready" once all are open. For each line "want N" on in it waits (up to
// 5 s) until every connection has received N bytes and prints "short S
// frames F disconnects D": the connections that received fewer, the whole
// frames of frameLen bytes received over all, and the connections that
// ended early. It returns when in ends.
func runFloorReaders(ctx context.Context, addr string, conns, frameLen int, in io.Reader, out io.Writer) error {
	if err := raiseOpenFiles(conns + 256); err != nil {
		return err
	}
	received := make([]atomic.Int64, conns)
	var disconnects atomic.Int64
	clients := make([]net.Conn, 0, conns)
	var readers sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		close(stop)
		for _, c := range clients {
			c.Close()
		}
		readers.Wait()
	}()
	var d net.Dialer
	for i := range conns {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("after %d connections: %w", i, err)
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
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var want int64
		if _, err := fmt.Sscanf(sc.Text(), "want %d", &want); err != nil {
			return fmt.Errorf("floor readers: %q: %w", sc.Text(), err)
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if short, _ := tally(received, want, frameLen); short == 0 {
				break
			}
		}
		short, frames := tally(received, want, frameLen)
		fmt.Fprintf(out, "short %d frames %d disconnects %d\n", short, frames, disconnects.Load())
	}
	return sc.Err()
}

// floorWrites is what writeFloor did.
type floorWrites struct {
	messages, failed int64
	thread, process  time.Duration // CPU time of the writing thread and of this process
	elapsed          time.Duration
}

// writeFloor writes frame to every descriptor, cfg.Rate times a second for
// cfg.Duration (back to back when it falls behind), on a thread of its own:
// with write(2), or through ring when it is not nil.
func writeFloor(ctx context.Context, fds []int, frame []byte, cfg FloorConfig, progress io.Writer, ring *floorRing) floorWrites {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var w floorWrites
	thread0, process0 := cpuTime(rusageThread), cpuTime(unix.RUSAGE_SELF)
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	end := start.Add(cfg.Duration)
	next, lastReport := start, start
	for time.Now().Before(end) && ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		if ring != nil {
			w.failed += ring.sendAll(fds, frame)
		} else {
			for _, fd := range fds {
				if writeAll(fd, frame) != nil {
					w.failed++
				}
			}
		}
		w.messages++
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			fmt.Fprintf(progress, "floor: %d messages written\n", w.messages)
		}
	}
	w.elapsed = time.Since(start)
	w.thread, w.process = cpuTime(rusageThread)-thread0, cpuTime(unix.RUSAGE_SELF)-process0
	return w
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

// cpuTime is the user + system CPU time of the calling thread
// (unix.RUSAGE_THREAD) or process (unix.RUSAGE_SELF).
func cpuTime(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
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
			return fmt.Errorf("floor needs %d open files (one per socket in each process) and the hard limit is %d: lower --conns or raise ulimit -Hn", n, rl.Max)
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
	fmt.Fprintf(w, "floor: the writing process used %.2f s of CPU (the thread, the Go runtime)\n", r.ProcessCPUSeconds)
	if r.ShortClients > 0 || r.Disconnects > 0 || r.WriteErrors > 0 {
		fmt.Fprintf(w, "floor: %d clients short, %d disconnects, %d failed writes\n", r.ShortClients, r.Disconnects, r.WriteErrors)
	}
	if r.Fanout != nil {
		fmt.Fprintf(w, "fanout / floor: %.2f× CPU per delivery (%d-byte frames)\n", r.Ratio, r.FrameBytes)
	}
	if u := r.IOURing; u != nil {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "then, in turn\tmessages\tdelivered/expected\tthread CPU s\tprocess CPU s\treaders CPU s\tksoftirqd CPU s\tthread µs / 1,000\tprocess µs / 1,000\tall µs / 1,000\t")
		for _, x := range []struct {
			name string
			way  FloorWay
		}{{"write(2)", u.Write}, {"io_uring", u.IOURing}} {
			fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f\t\n", x.name, x.way.Messages, x.way.Deliveries, x.way.Expected, x.way.CPUSeconds, x.way.ProcessCPUSeconds,
				x.way.ReadersCPUSeconds, x.way.SoftirqCPUSeconds, x.way.CPUPer1000Deliv, x.way.ProcessPer1000, x.way.AllPer1000)
		}
		tw.Flush()
		fmt.Fprintf(w, "io_uring / write(2): %.2f× the thread's CPU per delivery, %.2f× the process's, %.2f× with the readers and ksoftirqd (%d io_uring_enter calls, ring of %d)\n", u.Ratio, u.ProcessRatio, u.AllRatio, u.Submits, u.RingSize)
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
