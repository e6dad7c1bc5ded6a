package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flashd/flashd/client"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// These tests run the real binaries: three `flashd store` processes on
// loopback with their own bbolt files, driven by flashctl and the client.

type proc struct {
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited and been waited for
	log  string
}

// wait returns once the process has exited (its only Wait is start's).
func (p *proc) wait() { <-p.done }

type binCluster struct {
	t       testing.TB
	bin     string // folder holding flashd and flashctl
	nodes   []*proc
	grpc    []string
	cleanup sync.Once
}

func buildBinaries(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"flashd", "flashctl"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "github.com/flashd/flashd/cmd/"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return dir
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startBinCluster(t testing.TB, extraFlags ...string) *binCluster {
	t.Helper()
	c := &binCluster{t: t, bin: buildBinaries(t)}
	data := t.TempDir()
	regions := []string{"east", "west", "north"}
	for i := range 3 {
		grpcAddr := freePort(t)
		args := []string{"store", "--id", fmt.Sprintf("n%d", i+1), "--region", regions[i],
			"--data-dir", filepath.Join(data, fmt.Sprintf("n%d", i+1)),
			"--raft-addr", freePort(t), "--grpc-addr", grpcAddr, "--http-addr", freePort(t),
			"--heartbeat-timeout", "500ms", "--election-timeout", "500ms"}
		args = append(args, extraFlags...)
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", c.grpc[0])
		}
		c.grpc = append(c.grpc, grpcAddr)
		p := &proc{args: args, log: filepath.Join(data, fmt.Sprintf("n%d.log", i+1))}
		c.nodes = append(c.nodes, p)
		c.start(p)
		if i == 0 {
			c.waitMembers(1)
		}
	}
	t.Cleanup(c.stop)
	c.waitMembers(3)
	return c
}

// start starts p, after its previous run (if any) has exited, so that a
// restart never overlaps the process it replaces.
func (c *binCluster) start(p *proc) {
	c.t.Helper()
	if p.done != nil {
		p.wait()
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(c.bin, "flashd"), p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The node dies with the test binary, even if the test is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		defer close(done)
		cmd.Wait()
		logf.Close()
	}()
}

func (c *binCluster) stop() {
	c.cleanup.Do(func() {
		for _, p := range c.nodes {
			if p.cmd != nil && p.cmd.Process != nil {
				p.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		time.Sleep(500 * time.Millisecond)
		for _, p := range c.nodes {
			if p.cmd != nil && p.cmd.Process != nil {
				p.cmd.Process.Kill()
			}
		}
		if c.t.Failed() {
			for _, p := range c.nodes {
				out, _ := os.ReadFile(p.log)
				c.t.Logf("---- %s\n%s", p.log, tail(string(out), 3000))
			}
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// ctl runs flashctl against the cluster and returns its stdout.
func (c *binCluster) ctl(args ...string) (string, error) {
	full := append([]string{"--endpoints", strings.Join(c.grpc, ","), "--timeout", "15s"}, args...)
	out, err := exec.Command(filepath.Join(c.bin, "flashctl"), full...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("flashctl %v: %v: %s", args, err, ee.Stderr)
	}
	return string(out), err
}

func (c *binCluster) mustCtl(args ...string) string {
	c.t.Helper()
	out, err := c.ctl(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *binCluster) client() *client.Store {
	c.t.Helper()
	s, err := client.NewStore(c.grpc)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	return s
}

// waitMembers waits until cluster status lists n registered members.
func (c *binCluster) waitMembers(n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.ctl("-o", "json", "cluster", "status")
		if err == nil && strings.Count(out, `"grpcAddr"`) >= n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not reach %d members", n)
}

// leaderIndex asks the cluster who leads and maps it to a process.
func (c *binCluster) leaderIndex(ctx context.Context, s *client.Store) int {
	c.t.Helper()
	for ctx.Err() == nil {
		st, err := s.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err == nil {
			for i, addr := range c.grpc {
				if addr == st.LeaderGrpcAddr {
					return i
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("no leader known")
	return -1
}

// converged waits until every member answers with the same applied index
// and state digest, and returns the digest.
func (c *binCluster) converged(ctx context.Context, s *client.Store) string {
	c.t.Helper()
	var last string
	for ctx.Err() == nil {
		st, err := s.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
		if err == nil && len(st.Members) == len(c.nodes) {
			digests := map[string]bool{}
			indexes := map[uint64]bool{}
			for _, m := range st.Members {
				if m.Status == nil || m.Status.DigestIndex != m.Status.AppliedIndex {
					digests["missing or stale:"+m.Id] = true
					continue
				}
				digests[m.Status.Digest] = true
				indexes[m.Status.AppliedIndex] = true
			}
			if len(digests) == 1 && len(indexes) == 1 {
				return st.Members[0].Status.Digest
			}
			last = fmt.Sprint(st.Members)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("replicas did not converge: %s", last)
	return ""
}

// saleLoad sends claim batches from new users until the item sells out or
// the context ends, retrying a batch whose outcome it did not learn with the
// same request IDs, and records every acknowledged claim.
type saleLoad struct {
	mu      sync.Mutex
	acked   map[string]*pb.Claim // user -> claim
	soldOut atomic.Bool
}

func (l *saleLoad) worker(ctx context.Context, s *client.Store, w int) {
	for b := 0; ctx.Err() == nil && !l.soldOut.Load(); b++ {
		req := &pb.ClaimBatchRequest{}
		for k := range 16 {
			user := fmt.Sprintf("w%d-b%d-%d", w, b, k)
			req.Claims = append(req.Claims, &pb.ClaimRequest{RequestId: "r-" + user, CampaignId: "spring", ItemId: "lantern", UserId: user, Quantity: 1})
		}
		for ctx.Err() == nil {
			callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			res, err := s.ClaimBatch(callCtx, req)
			cancel()
			if err != nil {
				continue // outcome unknown: retry with the same request IDs
			}
			l.record(req, res)
			break
		}
	}
}

func (l *saleLoad) record(req *pb.ClaimBatchRequest, res *pb.ClaimBatchResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, o := range res.Outcomes {
		switch o.Reason {
		case pb.Reason_REASON_UNSPECIFIED:
			l.acked[req.Claims[k].UserId] = o.Claim
		case pb.Reason_REASON_SOLD_OUT:
			l.soldOut.Store(true)
		}
	}
}

func (l *saleLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func TestKillLeaderMidSaleLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	c := startBinCluster(t, "--check-invariants")
	const stock = 2000
	c.mustCtl("campaign", "create", "spring", "--name", "Spring", "--kind", "flash-sale", "--start", "now", "--per-user-limit", "1")
	c.mustCtl("item", "add", "--campaign", "spring", "lantern", "--stock", fmt.Sprint(stock))
	c.mustCtl("campaign", "open", "spring")

	s := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	load := &saleLoad{acked: map[string]*pb.Claim{}}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); load.worker(ctx, s, w) }()
	}

	for load.count() < stock/4 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	victim := c.leaderIndex(ctx, s)
	before := load.count()
	c.nodes[victim].cmd.Process.Kill() // kill -9, mid-load
	t.Logf("killed leader n%d after %d acknowledged claims", victim+1, before)

	// A new leader serves: acknowledgements keep coming.
	for load.count() < before+stock/4 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("no progress after killing the leader: %d acknowledged", load.count())
	}
	c.start(c.nodes[victim]) // same flags: it recovers from its own files
	wg.Wait()

	c.converged(ctx, s)
	item, err := s.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
	if err != nil {
		t.Fatal(err)
	}
	it := item.Item
	if it.Available+it.Reserved+it.Sold != stock || it.Reserved+it.Sold > stock {
		t.Fatalf("oversold or counters broken: %+v", it)
	}
	if !load.soldOut.Load() || it.Available != 0 {
		t.Fatalf("sale did not sell out: %+v", it)
	}
	if got := load.count(); uint64(got) > it.Reserved {
		t.Fatalf("%d claims acknowledged but only %d reserved", got, it.Reserved)
	}
	assertAcknowledgedPresent(t, ctx, s, load)
	// The restarted node holds every acknowledged claim too (stale read on it alone).
	only, err := client.NewStore([]string{c.grpc[victim]})
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	assertAcknowledgedPresentStale(t, ctx, only, load)
}

func assertAcknowledgedPresent(t *testing.T, ctx context.Context, s *client.Store, load *saleLoad) {
	t.Helper()
	checkClaims(t, ctx, s, load, pb.Consistency_CONSISTENCY_LINEARIZABLE)
}

func assertAcknowledgedPresentStale(t *testing.T, ctx context.Context, s *client.Store, load *saleLoad) {
	t.Helper()
	checkClaims(t, ctx, s, load, pb.Consistency_CONSISTENCY_STALE)
}

func checkClaims(t *testing.T, ctx context.Context, s *client.Store, load *saleLoad, consistency pb.Consistency) {
	t.Helper()
	load.mu.Lock()
	defer load.mu.Unlock()
	for user, want := range load.acked {
		res, err := s.ListClaims(ctx, &pb.ListClaimsRequest{UserId: user, Consistency: consistency})
		if err != nil {
			t.Fatalf("list claims of %s: %v", user, err)
		}
		if len(res.Claims) != 1 || res.Claims[0].Id != want.Id {
			t.Fatalf("acknowledged claim %d of %s: store has %v", want.Id, user, res.Claims)
		}
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	c := startBinCluster(t, "--check-invariants")
	c.mustCtl("campaign", "create", "spring", "--name", "Spring", "--kind", "flash-sale", "--start", "now", "--per-user-limit", "2")
	c.mustCtl("item", "add", "--campaign", "spring", "lantern", "--stock", "5")
	s := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	itemNow := func() string {
		res, err := s.GetItem(ctx, &pb.GetItemRequest{CampaignId: "spring", ItemId: "lantern"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Item.String()
	}
	before := itemNow()
	bad := [][]string{
		{"claim", "--campaign", "spring", "--item", "lantern", "--user", "alice"}, // campaign still draft
		{"campaign", "create", strings.Repeat("x", 129), "--kind", "flash-sale", "--start", "now"},
		{"stock", "remove", "--campaign", "spring", "--item", "lantern", "6"},
		{"item", "add", "--campaign", "nope", "lantern", "--stock", "1"},
		{"claim", "--campaign", "spring", "--item", "ghost", "--user", "alice"},
	}
	for _, args := range bad {
		if out, err := c.ctl(args...); err == nil {
			t.Errorf("flashctl %v succeeded: %s", args, out)
		}
	}
	c.mustCtl("campaign", "open", "spring")
	for _, args := range [][]string{
		{"claim", "--campaign", "spring", "--item", "lantern", "--user", "alice", "--quantity", "3"}, // over the limit
		{"claim", "--campaign", "spring", "--item", "lantern", "--user", "al\x01ice"},
	} {
		if out, err := c.ctl(args...); err == nil {
			t.Errorf("flashctl %v succeeded: %s", args, out)
		}
	}
	after := itemNow()
	if before != after {
		t.Fatalf("bad input changed the item:\nbefore %s\nafter  %s", before, after)
	}
}

// TestMembershipThroughFlashctl runs every membership command of flashctl
// against the real binaries: a fourth node joins as a non-voter and serves
// stale reads, leadership moves to a named region, a snapshot is taken, and
// the fourth node is removed.
func TestMembershipThroughFlashctl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	c := startBinCluster(t)
	c.mustCtl("campaign", "create", "spring", "--kind", "flash-sale", "--start", "now")
	c.mustCtl("item", "add", "--campaign", "spring", "lantern", "--stock", "7")

	grpc4, raft4 := freePort(t), freePort(t)
	p := &proc{args: []string{"store", "--id", "n4", "--region", "south", "--data-dir", filepath.Join(t.TempDir(), "n4"),
		"--raft-addr", raft4, "--grpc-addr", grpc4, "--http-addr", "", "--heartbeat-timeout", "500ms", "--election-timeout", "500ms"},
		log: filepath.Join(t.TempDir(), "n4.log")}
	c.nodes = append(c.nodes, p)
	c.start(p)
	c.mustCtl("cluster", "join", "--id", "n4", "--raft-addr", raft4, "--grpc-addr", grpc4, "--region", "south", "--non-voter")
	c.grpc = append(c.grpc, grpc4)
	c.waitMembers(4)

	// The non-voter holds the data and answers stale reads itself.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := c.ctl("--endpoints", grpc4, "-o", "json", "item", "get", "--campaign", "spring", "lantern", "--stale")
		if err == nil && strings.Contains(out, `"total": "7"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("non-voter never served the item: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	status := c.mustCtl("-o", "json", "cluster", "status")
	if !strings.Contains(status, `"id": "n4"`) || strings.Count(status, `"voter": true`) != 3 {
		t.Fatalf("cluster status after the non-voter joined:\n%s", status)
	}

	// Leadership moves to the region asked for.
	s := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := c.leaderIndex(ctx, s)
	target := []string{"east", "west", "north"}[(from+1)%3]
	c.mustCtl("cluster", "transfer-leader", "--region", target)
	st, err := s.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil || st.LeaderRegion != target {
		t.Fatalf("leader region after transfer = %q (%v), want %q", st.GetLeaderRegion(), err, target)
	}

	if out := c.mustCtl("-o", "json", "cluster", "snapshot"); !strings.Contains(out, "index") {
		t.Fatalf("snapshot answered %s", out)
	}

	c.mustCtl("cluster", "remove", "n4")
	status = c.mustCtl("-o", "json", "cluster", "status")
	if strings.Contains(status, `"id": "n4"`) {
		t.Fatalf("n4 still listed after remove:\n%s", status)
	}
	if _, err := c.ctl("cluster", "remove", "n9"); err == nil {
		t.Fatal("removing an unknown node succeeded")
	}
}

// TestRestartWithJoin: --join on a node that has raft state. A member
// restarted with its flags finds itself in its own copy of the membership
// and asks no one; a node removed since asks to join again and comes back
// with its log (joining a member that is already there changes nothing but
// its address, so asking again is harmless).
func TestRestartWithJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	c := startBinCluster(t)
	c.mustCtl("campaign", "create", "spring", "--kind", "flash-sale", "--start", "now")
	s := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	joins := func(p *proc) int {
		out, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(out), "joined cluster")
	}
	restart := func(p *proc) {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.wait()
		c.start(p)
	}
	// n2 and n3 were started with --join; restart and remove followers.
	leader := c.leaderIndex(ctx, s)
	var followers []int
	for i := 1; i <= 2; i++ {
		if i != leader {
			followers = append(followers, i)
		}
	}
	member, removed := followers[0], followers[len(followers)-1]
	if joins(c.nodes[member]) != 1 {
		t.Fatalf("n%d logged %d joins at start, want 1", member+1, joins(c.nodes[member]))
	}
	restart(c.nodes[member])
	c.converged(ctx, s)
	if n := joins(c.nodes[member]); n != 1 {
		t.Fatalf("a member restarted with --join asked to join again (%d joins logged)", n)
	}

	id := fmt.Sprintf("n%d", removed+1)
	c.mustCtl("cluster", "remove", id)
	if out := c.mustCtl("-o", "json", "cluster", "status"); strings.Contains(out, `"id": "`+id+`"`) {
		t.Fatalf("%s still listed after remove:\n%s", id, out)
	}
	c.mustCtl("campaign", "create", "autumn", "--kind", "flash-sale", "--start", "now") // written while it is out
	restart(c.nodes[removed])
	c.waitMembers(3)
	c.converged(ctx, s)
	if n := joins(c.nodes[removed]); n != 2 {
		t.Fatalf("the removed node, restarted with --join, logged %d joins, want 2", n)
	}
}
