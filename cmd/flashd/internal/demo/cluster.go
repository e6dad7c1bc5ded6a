package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Timeouts of the cluster's life cycle.
const (
	clusterUpTimeout = 60 * time.Second
	doorReadyTimeout = 30 * time.Second
	stopGrace        = 3 * time.Second // SIGTERM, then SIGKILL
	raftTimer        = "500ms"         // heartbeat and election timeouts: a quick failover to watch
	logTailBytes     = 2000
)

// child is one supervised process: `flashd store` or `flashd frontdoor`.
// It dies with the demo (Pdeathsig), and is stopped by its own PID.
type child struct {
	name, region       string
	grpcAddr, httpAddr string
	args               []string
	log                string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// start runs the process, its output appended to its log file.
func (c *child) start(bin string) error {
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child dies with the demo, even a demo killed with -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	return nil
}

func (c *child) running() (*exec.Cmd, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd, c.done
}

// pid returns the process ID, 0 if never started.
func (c *child) pid() int {
	if cmd, _ := c.running(); cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

// alive reports whether the process is running.
func (c *child) alive() bool {
	_, done := c.running()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL (kill -9) and waits for the process to exit.
func (c *child) kill() {
	cmd, done := c.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop asks the process to shut down (SIGTERM), then kills it after
// stopGrace.
func (c *child) stop() {
	cmd, done := c.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopGrace):
		c.kill()
	}
}

// logTail returns the end of the child's log.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// cluster is the demo's processes: three store nodes in three regions and
// the front doors, on loopback, with data in dir.
type cluster struct {
	bin    string
	dir    string
	stores []*child
	doors  []*child
	store  *client.Store // admin client of the store nodes
}

// Regions of the store nodes, one voter in each (losing any region keeps
// a quorum, DESIGN.md section 3), and of the front doors, in turn.
var (
	storeRegions = []string{"east", "west", "north"}
	doorRegions  = []string{"east", "west"}
)

// Ports are picked below the kernel's ephemeral range, where outgoing
// connections (the demo's own, between its children, and other programs')
// never take them between the pick and the child's bind.
const (
	portFloor          = 10000
	ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"
	portPicksMax       = 1000
)

// freeAddrs returns n loopback addresses nothing listens on now, on
// distinct ports below the ephemeral range (any free port if that range
// leaves no room).
func freeAddrs(n int) ([]string, error) {
	ceiling := 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile(ephemeralRangeFile); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil {
				ceiling = lo
			}
		}
	}
	var out []string
	for try := 0; len(out) < n && try < portPicksMax; try++ {
		port := 0 // the kernel's choice
		if ceiling-portFloor > 100 {
			port = portFloor + rand.IntN(ceiling-portFloor)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("found only %d free loopback ports of %d", len(out), n)
	}
	return out, nil
}

// startStores starts the store nodes: the first bootstraps the cluster,
// the others join through it. It returns once all are members.
func (c *cluster) startStores(ctx context.Context) error {
	var grpcAddrs []string
	all, err := freeAddrs(3 * len(storeRegions))
	if err != nil {
		return err
	}
	for i, region := range storeRegions {
		addrs := all[3*i : 3*i+3]
		name := fmt.Sprintf("n%d", i+1)
		s := &child{name: name, region: region, grpcAddr: addrs[1], httpAddr: addrs[2], log: filepath.Join(c.dir, name+".log")}
		s.args = []string{"store", "--id", name, "--region", region, "--data-dir", filepath.Join(c.dir, name),
			"--raft-addr", addrs[0], "--grpc-addr", s.grpcAddr, "--http-addr", s.httpAddr,
			"--heartbeat-timeout", raftTimer, "--election-timeout", raftTimer}
		if i == 0 {
			s.args = append(s.args, "--bootstrap")
		} else {
			s.args = append(s.args, "--join", c.stores[0].grpcAddr)
		}
		c.stores = append(c.stores, s)
		grpcAddrs = append(grpcAddrs, s.grpcAddr)
	}
	if c.store, err = client.NewStore(grpcAddrs, client.WithCallTimeout(10*time.Second)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, clusterUpTimeout)
	defer cancel()
	if err := c.stores[0].start(c.bin); err != nil {
		return err
	}
	if err := c.waitMembers(ctx, 1); err != nil {
		return err
	}
	for _, s := range c.stores[1:] {
		if err := s.start(c.bin); err != nil {
			return err
		}
	}
	return c.waitMembers(ctx, len(c.stores))
}

// waitMembers waits until the cluster has a leader and n members that
// answer.
func (c *cluster) waitMembers(ctx context.Context, n int) error {
	var last error
	for {
		st, err := c.store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err == nil {
			answering := 0
			for _, m := range st.GetMembers() {
				if m.GetStatus() != nil {
					answering++
				}
			}
			if st.GetLeaderId() != "" && answering >= n {
				return nil
			}
			last = fmt.Errorf("%d of %d members answer, leader %q", answering, n, st.GetLeaderId())
		} else {
			last = err
		}
		if err := c.deadChild(c.stores); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store cluster did not come up: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// deadChild reports a child of list that exited, with its log.
func (c *cluster) deadChild(list []*child) error {
	for _, ch := range list {
		if ch.pid() != 0 && !ch.alive() {
			return fmt.Errorf("%s exited; the end of %s:\n%s", ch.name, ch.log, ch.logTail())
		}
	}
	return nil
}

// startDoors starts the front doors in insecure-header mode and waits until
// each says SERVING (in step with the store).
func (c *cluster) startDoors(ctx context.Context, n int) error {
	var storeAddrs []string
	for _, s := range c.stores {
		storeAddrs = append(storeAddrs, s.grpcAddr)
	}
	all, err := freeAddrs(2 * n)
	if err != nil {
		return err
	}
	for i := range n {
		addrs := all[2*i : 2*i+2]
		name := fmt.Sprintf("fd%d", i+1)
		region := doorRegions[i%len(doorRegions)]
		d := &child{name: name, region: region, grpcAddr: addrs[0], httpAddr: addrs[1], log: filepath.Join(c.dir, name+".log")}
		d.args = []string{"frontdoor", "--id", name, "--region", region, "--grpc-addr", d.grpcAddr, "--http-addr", d.httpAddr,
			"--store", strings.Join(storeAddrs, ","), "--auth", "insecure-header"}
		if err := d.start(c.bin); err != nil {
			return err
		}
		c.doors = append(c.doors, d)
	}
	ctx, cancel := context.WithTimeout(ctx, doorReadyTimeout)
	defer cancel()
	for _, d := range c.doors {
		if err := c.waitServing(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) waitServing(ctx context.Context, d *child) error {
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for {
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: pb.FrontDoor_ServiceDesc.ServiceName})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err := c.deadChild([]*child{d}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("front door %s not serving after %v; the end of %s:\n%s", d.name, doorReadyTimeout, d.log, d.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *cluster) doorAddrs() []string {
	var out []string
	for _, d := range c.doors {
		out = append(out, d.grpcAddr)
	}
	return out
}

// storeByID returns the store node with the given ID, or nil.
func (c *cluster) storeByID(id string) *child {
	for _, s := range c.stores {
		if s.name == id {
			return s
		}
	}
	return nil
}

// stop stops every process (front doors first) and closes the client.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, d := range c.doors {
		wg.Go(d.stop)
	}
	wg.Wait()
	for _, s := range c.stores {
		wg.Go(s.stop)
	}
	wg.Wait()
	if c.store != nil {
		_ = c.store.Close()
	}
}
