package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// These tests attack a real `flashd frontdoor` process with its default
// limits from loopback, as the crowd's worst members would, and check that
// its memory stays bounded and that real clients still claim.

// doorMemoryMax is what the issue allows a front door under attack.
const doorMemoryMax = 300 << 20

// rss is the resident memory of process pid, from /proc.
func rss(t testing.TB, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the door's memory: %v", err)
	}
	return rssOf(data)
}

// openFiles counts the files process pid holds.
func openFiles(t testing.TB, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count the door's files: %v", err)
	}
	return len(fds)
}

// fileLimit is process pid's limit on open files, from /proc.
func fileLimit(t testing.TB, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatalf("read the door's limits: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					return n
				}
			}
		}
	}
	t.Fatalf("no open-file limit in /proc/%d/limits", pid)
	return 0
}

// raiseFileLimit lets this process hold n files. Opening thousands of
// connections needs a file limit to match; raising the hard limit needs
// root (CAP_SYS_RESOURCE).
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the file limit: %w", err)
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the file limit to %d: %w", n, err)
	}
	return nil
}

// watchMemory samples pid's resident memory until stop is closed and
// returns the highest sample.
func watchMemory(pid int, stop <-chan struct{}) <-chan int64 {
	peak := make(chan int64, 1)
	go func() {
		var hi int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				hi = max(hi, rssOf(b))
			}
			select {
			case <-stop:
				peak <- hi
				return
			case <-tick.C:
			}
		}
	}()
	return peak
}

// rssOf reads VmRSS from a /proc/PID/status file.
func rssOf(status []byte) int64 {
	i := bytes.Index(status, []byte("VmRSS:"))
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(status[i+len("VmRSS:"):]))
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb << 10
}

// stalledConn is a raw HTTP/2 connection to a gRPC server that opens
// streams and never sends their requests: each stream's handler waits for
// a message that does not come.
type stalledConn struct {
	conn    net.Conn
	mu      sync.Mutex // guards the framer's writes and the encoder
	fr      *http2.Framer
	hbuf    bytes.Buffer
	enc     *hpack.Encoder
	refused atomic.Int64 // streams the server reset or ended
	done    chan struct{}
}

func dialStalled(addr string, local net.Addr) (*stalledConn, error) {
	d := net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &stalledConn{conn: conn, done: make(chan struct{})}
	s.fr = http2.NewFramer(conn, conn)
	s.enc = hpack.NewEncoder(&s.hbuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := s.fr.WriteSettings(); err != nil {
		conn.Close()
		return nil, err
	}
	go s.read()
	return s, nil
}

// read answers the server's settings and pings and counts the streams it
// ends, until the connection closes.
func (s *stalledConn) read() {
	defer close(s.done)
	fr := http2.NewFramer(nil, s.conn)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				s.mu.Lock()
				s.fr.WriteSettingsAck()
				s.mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				s.mu.Lock()
				s.fr.WritePing(true, f.Data)
				s.mu.Unlock()
			}
		case *http2.RSTStreamFrame:
			s.refused.Add(1)
		case *http2.HeadersFrame:
			if f.StreamEnded() { // a trailers-only answer: the call ended
				s.refused.Add(1)
			}
		}
	}
}

// open starts stream id, a unary Claim call, with headers only.
func (s *stalledConn) open(id uint32, authority string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hbuf.Reset()
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/" + pb.FrontDoor_ServiceDesc.ServiceName + "/Claim"},
		{":authority", authority}, {"content-type", "application/grpc"}, {"te", "trailers"}, {"x-user-id", "mallory"},
	} {
		s.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	return s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: s.hbuf.Bytes(), EndHeaders: true})
}

func (s *stalledConn) close() {
	s.conn.Close()
	<-s.done
}

// claimAsNewClient claims through a new connection from 127.0.0.1, as a
// real client arriving during the attack would. Any business answer
// (granted, sold out, limit reached) means the door served it.
func claimAsNewClient(t *testing.T, addr, user, campaign, item string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-user-id", user), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = pb.NewFrontDoorClient(conn).Claim(ctx, &pb.FrontDoorClaimRequest{CampaignId: campaign, ItemId: item, Quantity: 1})
	t.Logf("a new client's claim: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if code := status.Code(err); code == codes.OK || code == codes.FailedPrecondition {
		return nil
	}
	return err
}

// 20 connections holding 5,000 stalled streams each: the door's memory
// stays under 300 MB and a new client still claims.
func TestFrontDoorStalledStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	const conns, streamsPerConn = 20, 5000
	c := startBinCluster(t)
	openSale(c, "spring", "lantern", 100)
	f := c.startFrontDoor(t, "f1")
	pid := f.cmd.Process.Pid
	before := rss(t, pid)
	stop := make(chan struct{})
	peak := watchMemory(pid, stop)

	var attackers []*stalledConn
	defer func() {
		for _, a := range attackers {
			a.close()
		}
	}()
	for range conns {
		a, err := dialStalled(f.grpcAddr, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		attackers = append(attackers, a)
	}
	var wg sync.WaitGroup
	for _, a := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range streamsPerConn {
				if a.open(uint32(2*i+1), f.grpcAddr) != nil {
					return // the door closed the connection
				}
			}
		}()
	}
	wg.Wait()
	// Let the door take in what was sent: until its goroutines stop
	// changing (bounded).
	settle(t, f.httpAddr)
	if err := claimAsNewClient(t, f.grpcAddr, "alice", "spring", "lantern"); err != nil {
		t.Errorf("a real client during the attack: %v", err)
	}
	close(stop)
	hi := <-peak
	var refused int64
	for _, a := range attackers {
		refused += a.refused.Load()
	}
	t.Logf("door memory: %d MB before, %d MB peak under %d stalled streams on %d connections (%d streams refused or ended)",
		before>>20, hi>>20, conns*streamsPerConn, conns, refused)
	if hi >= doorMemoryMax {
		t.Errorf("door memory peaked at %d MB, over %d MB", hi>>20, doorMemoryMax>>20)
	}
}

// settle waits until the door's goroutine count holds still for a second,
// for at most a minute.
func settle(t *testing.T, httpAddr string) {
	t.Helper()
	last, still := -1.0, 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && still < 10; {
		g := metric(scrape(t, httpAddr), "go_goroutines")
		if g == last {
			still++
		} else {
			still = 0
		}
		last = g
		time.Sleep(100 * time.Millisecond)
	}
}

// 20,000 idle connections from one address (127.0.0.2): the door's memory
// stays under 300 MB and a client from another address still claims. The
// connections are held by helper processes (this test binary again), so
// that no process needs a file limit above its default.
func TestFrontDoorIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	const helpers, perHelper = 4, 5000
	c := startBinCluster(t)
	openSale(c, "spring", "lantern", 100)
	f := c.startFrontDoor(t, "f1")
	pid := f.cmd.Process.Pid
	before := rss(t, pid)
	stop := make(chan struct{})
	peak := watchMemory(pid, stop)

	var held, failed int
	for range helpers {
		h, err := startConnHolder(f.grpcAddr, "127.0.0.2", perHelper)
		if err != nil {
			t.Fatal(err)
		}
		defer h.stop()
		line, err := h.report()
		if strings.HasPrefix(line, "skip") {
			t.Skipf("helper: %s", line)
		}
		var n, m int
		if _, err2 := fmt.Sscanf(line, "held %d failed %d", &n, &m); err != nil || err2 != nil {
			t.Fatalf("helper: %q %v %v", line, err, err2)
		}
		held, failed = held+n, failed+m
	}
	if held == 0 {
		t.Skipf("no connection from 127.0.0.2 (%d dials failed): this system routes only 127.0.0.1", failed)
	}
	settle(t, f.httpAddr)
	files, fileMax := openFiles(t, pid), fileLimit(t, pid)
	t.Logf("the door holds %d files of its limit of %d", files, fileMax)
	if files >= fileMax-16 {
		t.Errorf("the door is at its file limit: %d files of %d", files, fileMax)
	}
	if err := claimAsNewClient(t, f.grpcAddr, "alice", "spring", "lantern"); err != nil {
		t.Errorf("a real client during the attack: %v", err)
	}
	close(stop)
	hi := <-peak
	m := scrape(t, f.httpAddr)
	t.Logf("door memory: %d MB before, %d MB peak; %d idle connections opened from 127.0.0.2 (%d dials failed); metrics: %v open, %v refused",
		before>>20, hi>>20, held, failed,
		metric(m, "flashd_grpc_connections"), metric(m, "flashd_grpc_connections_refused_total"))
	if hi >= doorMemoryMax {
		t.Errorf("door memory peaked at %d MB, over %d MB", hi>>20, doorMemoryMax>>20)
	}
}

// connHolder is a helper process holding idle connections.
type connHolder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// Environment of a connHolder: what to connect to, from where, how often.
const envHoldConns = "FLASHD_TEST_HOLD_CONNS" // "addr local-ip count"

func startConnHolder(addr, localIP string, n int) (*connHolder, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestConnHolderHelper$", "-test.v=false")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", envHoldConns, addr, localIP, n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &connHolder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}, nil
}

// report waits for the helper's line: "held N failed M" or "skip: why".
func (h *connHolder) report() (string, error) {
	for {
		line, err := h.out.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("connection holder: %w", err)
		}
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "held ") || strings.HasPrefix(line, "skip") {
			return line, nil
		}
	}
}

// stop closes the helper's stdin (it closes its connections and exits) and
// waits for it.
func (h *connHolder) stop() {
	h.stdin.Close()
	io.Copy(io.Discard, h.out)
	h.cmd.Wait()
}

// TestConnHolderHelper is the body of a connHolder process; it does
// nothing in a normal test run.
func TestConnHolderHelper(t *testing.T) {
	spec := os.Getenv(envHoldConns)
	if spec == "" {
		t.Skip("helper process only")
	}
	var addr, localIP string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %s %d", &addr, &localIP, &n); err != nil {
		t.Fatalf("%s=%q: %v", envHoldConns, spec, err)
	}
	if err := raiseFileLimit(uint64(n) + 256); err != nil {
		fmt.Printf("skip: %v\n", err)
		return
	}
	local := &net.TCPAddr{IP: net.ParseIP(localIP)}
	var (
		mu      sync.Mutex
		held    []net.Conn
		failed  atomic.Int64
		next    atomic.Int64
		workers sync.WaitGroup
	)
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
			for next.Add(1) <= int64(n) {
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				// An HTTP/2 client's opening, then nothing.
				conn.Write([]byte(http2.ClientPreface))
				http2.NewFramer(conn, nil).WriteSettings()
				mu.Lock()
				held = append(held, conn)
				mu.Unlock()
			}
		}()
	}
	workers.Wait()
	fmt.Printf("held %d failed %d\n", len(held), failed.Load())
	io.Copy(io.Discard, os.Stdin) // until the test is done with us
	for _, c := range held {
		c.Close()
	}
}
