package localcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
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
	ServingTimeout   = 30 * time.Second // a server's wait to say SERVING
)

// Regions of the store nodes, one voter in each (losing any region keeps
// a quorum, DESIGN.md section 3), and of the front doors, in turn.
var (
	StoreRegions = []string{"east", "west", "north"}
	doorRegions  = []string{"east", "west"}
)

// Cluster is three `flashd store` nodes in three regions and any number of
// `flashd frontdoor` processes, on loopback, with data and logs in Dir.
type Cluster struct {
	Binary    string   // the flashd binary the children run
	Dir       string   // data directories and logs
	StoreArgs []string // extra flags for every store node

	Stores []*Process
	Doors  []*Process
	Store  *client.Store // admin client of the store nodes, set by StartStores
}

// StartStores starts the store nodes: the first bootstraps the cluster,
// the others join through it. It returns once all are members.
func (c *Cluster) StartStores(ctx context.Context) error {
	var grpcAddrs []string
	all, err := FreeAddrs(3 * len(StoreRegions))
	if err != nil {
		return err
	}
	for i, region := range StoreRegions {
		addrs := all[3*i : 3*i+3]
		name := fmt.Sprintf("n%d", i+1)
		s := &Process{Name: name, Region: region, GRPCAddr: addrs[1], HTTPAddr: addrs[2], Log: filepath.Join(c.Dir, name+".log")}
		s.Args = []string{"store", "--id", name, "--region", region, "--data-dir", filepath.Join(c.Dir, name),
			"--raft-addr", addrs[0], "--grpc-addr", s.GRPCAddr, "--http-addr", s.HTTPAddr}
		s.Args = append(s.Args, c.StoreArgs...)
		if i == 0 {
			s.Args = append(s.Args, "--bootstrap")
		} else {
			s.Args = append(s.Args, "--join", c.Stores[0].GRPCAddr)
		}
		c.Stores = append(c.Stores, s)
		grpcAddrs = append(grpcAddrs, s.GRPCAddr)
	}
	if c.Store, err = client.NewStore(grpcAddrs, client.WithCallTimeout(10*time.Second)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, clusterUpTimeout)
	defer cancel()
	if err := c.Stores[0].Start(c.Binary); err != nil {
		return err
	}
	if err := c.waitMembers(ctx, 1); err != nil {
		return err
	}
	for _, s := range c.Stores[1:] {
		if err := s.Start(c.Binary); err != nil {
			return err
		}
	}
	return c.waitMembers(ctx, len(c.Stores))
}

// waitMembers waits until the cluster has a leader and n members that
// answer.
func (c *Cluster) waitMembers(ctx context.Context, n int) error {
	var last error
	for {
		st, err := c.Store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
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
		if err := Exited(c.Stores...); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store cluster did not come up: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StartDoors starts n front doors named prefix1, prefix2, ... in
// insecure-header mode, with extra flags args, and waits until each says
// SERVING (in step with the store).
func (c *Cluster) StartDoors(ctx context.Context, n int, prefix string, args ...string) error {
	var storeAddrs []string
	for _, s := range c.Stores {
		storeAddrs = append(storeAddrs, s.GRPCAddr)
	}
	all, err := FreeAddrs(2 * n)
	if err != nil {
		return err
	}
	var started []*Process
	for i := range n {
		addrs := all[2*i : 2*i+2]
		name := fmt.Sprintf("%s%d", prefix, i+1)
		region := doorRegions[i%len(doorRegions)]
		d := &Process{Name: name, Region: region, GRPCAddr: addrs[0], HTTPAddr: addrs[1], Log: filepath.Join(c.Dir, name+".log")}
		d.Args = []string{"frontdoor", "--id", name, "--region", region, "--grpc-addr", d.GRPCAddr, "--http-addr", d.HTTPAddr,
			"--store", strings.Join(storeAddrs, ","), "--auth", "insecure-header"}
		d.Args = append(d.Args, args...)
		if err := d.Start(c.Binary); err != nil {
			return err
		}
		c.Doors = append(c.Doors, d)
		started = append(started, d)
	}
	ctx, cancel := context.WithTimeout(ctx, ServingTimeout)
	defer cancel()
	for _, d := range started {
		if err := WaitServing(ctx, d, pb.FrontDoor_ServiceDesc.ServiceName); err != nil {
			return err
		}
	}
	return nil
}

// WaitServing waits until p's gRPC health service says service is
// SERVING, or p exits, or ctx ends.
func WaitServing(ctx context.Context, p *Process, service string) error {
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for {
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err := Exited(p); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not serving %s: %w; the end of %s:\n%s", p.Name, service, ctx.Err(), p.Log, p.LogTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DoorAddrs returns the front doors' gRPC addresses.
func (c *Cluster) DoorAddrs() []string {
	var out []string
	for _, d := range c.Doors {
		out = append(out, d.GRPCAddr)
	}
	return out
}

// DoorHTTPAddrs returns the front doors' HTTP (metrics) addresses.
func (c *Cluster) DoorHTTPAddrs() []string {
	var out []string
	for _, d := range c.Doors {
		out = append(out, d.HTTPAddr)
	}
	return out
}

// StoreByID returns the store node with the given ID, or nil.
func (c *Cluster) StoreByID(id string) *Process {
	for _, s := range c.Stores {
		if s.Name == id {
			return s
		}
	}
	return nil
}

// StopDoors stops every front door and forgets them.
func (c *Cluster) StopDoors() {
	stopAll(c.Doors)
	c.Doors = nil
}

// Stop stops every process (front doors first) and closes the client.
func (c *Cluster) Stop() {
	c.StopDoors()
	stopAll(c.Stores)
	if c.Store != nil {
		_ = c.Store.Close()
	}
}

// stopAll stops the processes of list at once and waits for all of them.
func stopAll(list []*Process) {
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Go(p.Stop)
	}
	wg.Wait()
}
