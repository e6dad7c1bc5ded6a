package endpoint

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// dialFrom opens a TCP connection to addr from the local IP from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer reports whether the server closed c (a read ends with
// EOF or a reset) rather than keeping it open (the read times out).
func closedByServer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Connections over the total or per-IP bound are closed at accept and
// counted; closing one gives its place back.
func TestConnLimiter(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnLimiter(lis, 3, 2)
	accepted := make(chan net.Conn, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		l.Close()
		wg.Wait()
		for c := range accepted {
			c.Close()
		}
	}()
	addr := lis.Addr().String()
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}

	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	defer a1.Close()
	defer a2.Close()
	s1, s2 := next(), next()
	a3 := dialFrom(t, "127.0.0.1", addr) // third from one IP: over the per-IP bound
	defer a3.Close()
	if !closedByServer(a3, 10*time.Second) {
		t.Fatal("a third connection from 127.0.0.1 was kept")
	}
	b1 := dialFrom(t, "127.0.0.2", addr) // another IP: within both bounds
	defer b1.Close()
	s3 := next()
	b2 := dialFrom(t, "127.0.0.2", addr) // the fourth in all: over the total bound
	defer b2.Close()
	if !closedByServer(b2, 10*time.Second) {
		t.Fatal("a fourth connection was kept")
	}
	if got := counterValue(t, l.refusedPerIP); got != 1 {
		t.Errorf("refused per IP = %v, want 1", got)
	}
	if got := counterValue(t, l.refusedTotal); got != 1 {
		t.Errorf("refused in all = %v, want 1", got)
	}
	if got := l.openConns(); got != 3 {
		t.Errorf("open = %d, want 3", got)
	}

	// Closing gives the place back, once however often it is closed.
	s1.Close()
	s1.Close()
	if got := l.openConns(); got != 2 {
		t.Fatalf("open after a close = %d, want 2", got)
	}
	a4 := dialFrom(t, "127.0.0.1", addr)
	defer a4.Close()
	s4 := next()
	if closedByServer(a4, 100*time.Millisecond) {
		t.Fatal("a connection within the bounds was closed")
	}
	for _, c := range []net.Conn{s2, s3, s4} {
		c.Close()
	}
	if got := l.openConns(); got != 0 {
		t.Fatalf("open after closing all = %d", got)
	}
	if len(l.byIP) != 0 {
		t.Fatalf("per-IP counts kept for IPs without connections: %v", l.byIP)
	}
}

// blockingDoor answers GetItem only when its context ends, and says what
// deadline it had.
type blockingDoor struct {
	pb.UnimplementedFrontDoorServer
	deadlines chan time.Duration
	started   chan struct{}
}

func (b *blockingDoor) GetItem(ctx context.Context, _ *pb.PublicItemRequest) (*pb.PublicItem, error) {
	dl, ok := ctx.Deadline()
	var left time.Duration
	if ok {
		left = time.Until(dl)
	}
	b.deadlines <- left
	b.started <- struct{}{}
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func serveLimited(t *testing.T, l Limits) (*Endpoints, *blockingDoor, *grpc.ClientConn) {
	t.Helper()
	e, err := New("127.0.0.1:0", "", l)
	if err != nil {
		t.Fatal(err)
	}
	door := &blockingDoor{deadlines: make(chan time.Duration, 100), started: make(chan struct{}, 100)}
	pb.RegisterFrontDoorServer(e.GRPC, door)
	e.Serve()
	t.Cleanup(e.Stop)
	conn, err := grpc.NewClient(e.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return e, door, conn
}

// A unary call without a deadline gets the server's; one with a deadline
// keeps its own; a stream gets none.
func TestCallTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	_, door, conn := serveLimited(t, Limits{CallTimeout: timeout})
	fd := pb.NewFrontDoorClient(conn)

	// Without a deadline of the server's the call would never end; the
	// test gives up on it after a minute (and ends it by closing conn).
	ended := make(chan error, 1)
	go func() { _, err := fd.GetItem(context.Background(), &pb.PublicItemRequest{}); ended <- err }()
	if left := <-door.deadlines; left <= 0 || left > timeout {
		t.Fatalf("the handler's deadline was %v away, want within %v", left, timeout)
	}
	<-door.started
	select {
	case err := <-ended:
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("a call without a deadline: %v, want DEADLINE_EXCEEDED", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a call without a deadline still open after a minute")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := fd.GetItem(ctx, &pb.PublicItemRequest{}); done <- err }()
	if left := <-door.deadlines; left < 30*time.Minute {
		t.Fatalf("a call with an hour's deadline had %v in the handler", left)
	}
	<-door.started
	cancel()
	<-done

	// A health watch stream outlives the unary deadline many times over.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	w, err := healthpb.NewHealthClient(conn).Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	recvd := make(chan error, 1)
	go func() { _, err := w.Recv(); recvd <- err }()
	select {
	case err := <-recvd:
		t.Fatalf("the watch stream ended: %v", err)
	case <-time.After(10 * timeout):
	}
	wcancel()
	<-recvd
}

// Calls over CallsMax are refused with RESOURCE_EXHAUSTED before a handler
// runs; a call that ends gives its place back.
func TestCallsMax(t *testing.T) {
	const callsMax = 3
	e, door, conn := serveLimited(t, Limits{CallsMax: callsMax})
	fd := pb.NewFrontDoorClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range callsMax {
		wg.Add(1)
		go func() { defer wg.Done(); fd.GetItem(ctx, &pb.PublicItemRequest{}) }()
		<-door.started
	}
	over, cancelOver := context.WithTimeout(context.Background(), 30*time.Second) // if it reached a handler
	defer cancelOver()
	_, err := fd.GetItem(over, &pb.PublicItemRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a call over the bound: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := counterValue(t, e.calls.refused); got != 1 {
		t.Fatalf("refused calls = %v, want 1", got)
	}
	cancel()
	wg.Wait()
	// The places come back as the transport ends the calls.
	for deadline := time.Now().Add(10 * time.Second); e.calls.open.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still counted after they ended", e.calls.open.Load())
		}
		time.Sleep(time.Millisecond)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := fd.GetItem(ctx2, &pb.PublicItemRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call after the others ended: %v, want to reach the handler", err)
	}
}

// The limits reach the server: the stream bound in HTTP/2 settings, the
// header bound in refusals of big headers, the message bound.
func TestServerOptionLimits(t *testing.T) {
	_, door, conn := serveLimited(t, Limits{HeaderBytesMax: 8 << 10, MessageBytesMax: 8 << 10})
	fd := pb.NewFrontDoorClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := fd.GetItem(ctx, &pb.PublicItemRequest{CampaignId: strings.Repeat("c", 9<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 9 KiB message: %v, want RESOURCE_EXHAUSTED", err)
	}
	big := metadata.AppendToOutgoingContext(ctx, "x-big", strings.Repeat("h", 9<<10))
	if _, err := fd.GetItem(big, &pb.PublicItemRequest{}); err == nil || status.Code(err) == codes.DeadlineExceeded {
		t.Fatalf("9 KiB of headers: %v, want a refusal", err)
	}
	select {
	case <-door.started:
		t.Fatal("a refused call reached the handler")
	default:
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []Limits{
		{ConnsMax: -1}, {CallsMax: -1}, {CallTimeout: time.Millisecond}, {ConnIdleMax: time.Millisecond},
		{HeaderBytesMax: 100}, {MessageBytesMax: 100}, {HandshakeTimeout: -time.Second},
	} {
		if _, err := New("127.0.0.1:0", "", l); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
}

// ConnsMax never exceeds what the file limit leaves for clients.
func TestConnsMaxBelowFileLimit(t *testing.T) {
	l, fileMax := Limits{ConnsMax: 1 << 30}.withFileLimit()
	if fileMax == 0 {
		t.Skip("no file limit")
	}
	if uint64(l.ConnsMax) >= fileMax {
		t.Fatalf("connection bound %d, file limit %d", l.ConnsMax, fileMax)
	}
	small, _ := Limits{ConnsMax: 10}.withFileLimit()
	if small.ConnsMax != 10 {
		t.Fatalf("a bound under the file limit changed to %d", small.ConnsMax)
	}
}
