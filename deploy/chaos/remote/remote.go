// Package remote is a real flashd cluster as the chaos runner sees it:
// claims through the front doors with the client library (as an app makes
// them), setup and the final state through the store's Admin and Store
// services, and faults made by the deploy/chaos scripts (docker kill,
// pause, restart; packet filters in the containers' network namespaces).
package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/deploy/chaos/check"
	"github.com/flashd/flashd/deploy/chaos/runner"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Bounds of the cluster's calls.
const (
	attemptTimeout   = 2 * time.Second        // one front-door attempt
	pollInterval     = 250 * time.Millisecond // readiness and convergence polls
	finalReaders     = 8                      // concurrent ListClaims of the final read
	finalReadRetries = 3                      // the log moved during the read: read again
	catalogWait      = 15 * time.Second       // front doors learning new items
)

// Cluster is a running cluster: its store nodes and front doors.
type Cluster struct {
	stores []string
	doors  []string
	store  *client.Store
	front  *client.Client
	// scripts is the folder of the partition and node scripts.
	scripts string
}

var (
	_ runner.Target   = (*Cluster)(nil)
	_ runner.Injector = (*Cluster)(nil)
)

// Dial connects to the store nodes and front doors (gRPC host:port).
// scripts is the folder holding the chaos scripts ("" if no faults are
// injected).
func Dial(ctx context.Context, stores, doors []string, scripts string) (*Cluster, error) {
	st, err := client.NewStore(stores, client.WithAttemptTimeout(attemptTimeout))
	if err != nil {
		return nil, err
	}
	c := &Cluster{stores: stores, doors: doors, store: st, scripts: scripts}
	if len(doors) > 0 {
		c.front, err = client.New(ctx, doors, client.WithAttemptTimeout(attemptTimeout))
		if err != nil {
			st.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close closes the connections.
func (c *Cluster) Close() error {
	var errs []error
	if c.front != nil {
		errs = append(errs, c.front.Close())
	}
	return errors.Join(append(errs, c.store.Close())...)
}

// Topology reads the regions of the store nodes from the cluster.
func (c *Cluster) Topology(ctx context.Context) (runner.Topology, error) {
	st, err := c.store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return runner.Topology{}, fmt.Errorf("cluster status: %w", err)
	}
	var topo runner.Topology
	for _, m := range st.GetMembers() {
		i := slices.IndexFunc(topo.Regions, func(r runner.Region) bool { return r.Name == m.GetRegion() })
		if i < 0 {
			topo.Regions = append(topo.Regions, runner.Region{Name: m.GetRegion()})
			i = len(topo.Regions) - 1
		}
		topo.Regions[i].Nodes = append(topo.Regions[i].Nodes, m.GetId())
	}
	for i := range topo.Regions {
		slices.Sort(topo.Regions[i].Nodes)
	}
	slices.SortFunc(topo.Regions, func(a, b runner.Region) int { return strings.Compare(a.Name, b.Name) })
	return topo, nil
}

// WaitReady waits until members store nodes answer with one leader and
// every front door reports SERVING.
func (c *Cluster) WaitReady(ctx context.Context, members int) error {
	var last error
	for {
		if last = c.ready(ctx, members); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", last)
		case <-time.After(pollInterval):
		}
	}
}

func (c *Cluster) ready(ctx context.Context, members int) error {
	st, err := c.store.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return err
	}
	if st.GetLeaderId() == "" {
		return errors.New("no leader")
	}
	answering := 0
	for _, m := range st.GetMembers() {
		if m.GetStatus() != nil && m.GetError() == "" {
			answering++
		}
	}
	if answering < members {
		return fmt.Errorf("%d of %d store nodes answer", answering, members)
	}
	for _, addr := range c.doors {
		if err := frontDoorServing(ctx, addr); err != nil {
			return fmt.Errorf("front door %s: %w", addr, err)
		}
	}
	return nil
}

func frontDoorServing(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: pb.FrontDoor_ServiceDesc.ServiceName})
	if err != nil {
		return err
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %v", res.GetStatus())
	}
	return nil
}

// Setup creates an open flash-sale campaign per campaign named in items,
// and the items, then waits until every front door knows them.
func (c *Cluster) Setup(ctx context.Context, items []check.ItemSpec) error {
	var campaigns []string
	for _, it := range items {
		if !slices.Contains(campaigns, it.Campaign) {
			campaigns = append(campaigns, it.Campaign)
		}
	}
	for _, id := range campaigns {
		_, err := c.store.CreateCampaign(ctx, &pb.CreateCampaignRequest{RequestId: id + "-create",
			Campaign: &pb.Campaign{Id: id, Kind: pb.CampaignKind_CAMPAIGN_KIND_FLASH_SALE, Name: id}})
		if err != nil && !errors.Is(err, client.ErrAlreadyExists) {
			return fmt.Errorf("create campaign %s: %w", id, err)
		}
	}
	for _, it := range items {
		_, err := c.store.AddItem(ctx, &pb.AddItemRequest{RequestId: it.Key() + "-add",
			CampaignId: it.Campaign, ItemId: it.Item, Stock: it.Stock, PerUserLimit: it.PerUserLimit})
		if err != nil && !errors.Is(err, client.ErrAlreadyExists) {
			return fmt.Errorf("add item %s: %w", it.Key(), err)
		}
	}
	open := pb.CampaignState_CAMPAIGN_STATE_OPEN
	for _, id := range campaigns {
		if _, err := c.store.UpdateCampaign(ctx, &pb.UpdateCampaignRequest{RequestId: id + "-open", CampaignId: id, State: &open}); err != nil {
			return fmt.Errorf("open campaign %s: %w", id, err)
		}
	}
	return c.waitCatalog(ctx, items)
}

// waitCatalog waits until each front door answers GetItem for every item
// (it learns them from the store's watch stream).
func (c *Cluster) waitCatalog(ctx context.Context, items []check.ItemSpec) error {
	ctx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	for _, addr := range c.doors {
		door, err := client.New(ctx, []string{addr}, client.WithMaxAttempts(1))
		if err != nil {
			return err
		}
		for _, it := range items {
			for {
				_, err := door.GetItem(ctx, it.Campaign, it.Item)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					door.Close()
					return fmt.Errorf("front door %s does not know %s: %w", addr, it.Key(), err)
				}
				time.Sleep(pollInterval)
			}
		}
		door.Close()
	}
	return nil
}

// Claim claims through the front doors as the user.
func (c *Cluster) Claim(ctx context.Context, req runner.ClaimRequest) runner.ClaimResult {
	claim, err := c.front.Claim(ctx, req.Campaign, req.Item,
		client.AsUser(req.User), client.RequestID(req.RequestID), client.Quantity(req.Quantity))
	if err == nil {
		return runner.ClaimResult{Outcome: check.Granted, ClaimID: claim.GetId()}
	}
	return Classify(err)
}

// Classify turns a claim error into what the workload learnt: a definite
// refusal, or an unknown outcome (anything the client may retry: the claim
// may have been applied).
func Classify(err error) runner.ClaimResult {
	reason := client.Reason(err)
	switch {
	case errors.Is(err, client.ErrSoldOut):
		return runner.ClaimResult{Outcome: check.SoldOut, Reason: reason}
	case errors.Is(err, client.ErrLimitReached):
		return runner.ClaimResult{Outcome: check.LimitReached, Reason: reason}
	case client.IsRetryable(err), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return runner.ClaimResult{Outcome: check.Unknown, Reason: err.Error()}
	case errors.Is(err, client.ErrFailedPrecondition), errors.Is(err, client.ErrNotFound),
		errors.Is(err, client.ErrInvalidArgument), errors.Is(err, client.ErrUnauthenticated),
		errors.Is(err, client.ErrPermissionDenied):
		if reason == "" {
			reason = err.Error()
		}
		return runner.ClaimResult{Outcome: check.Refused, Reason: reason}
	}
	return runner.ClaimResult{Outcome: check.Unknown, Reason: err.Error()}
}

// Final waits until every store node has applied the same log, reads the
// items and the users' claims with linearizable reads, and reads every
// node's digest; if the log moved meanwhile it reads again.
func (c *Cluster) Final(ctx context.Context, items []check.ItemSpec, users []string) check.Final {
	var err error
	for attempt := 0; attempt < finalReadRetries; attempt++ {
		var before, after []check.NodeState
		if before, err = c.converged(ctx); err != nil {
			break
		}
		var out check.Final
		if out, err = c.readState(ctx, items, users); err != nil {
			break
		}
		if after, err = c.converged(ctx); err != nil {
			break
		}
		if after[0].AppliedIndex == before[0].AppliedIndex {
			out.Nodes = after
			return out
		}
		err = fmt.Errorf("the log moved from %d to %d during the final read", before[0].AppliedIndex, after[0].AppliedIndex)
	}
	return check.Final{Err: err.Error()}
}

// converged waits until every store node answers with the same applied
// index and digest, its whole log committed, twice in a row.
func (c *Cluster) converged(ctx context.Context) ([]check.NodeState, error) {
	var prev []check.NodeState
	var last error
	for {
		nodes, err := c.nodeStates(ctx)
		switch {
		case err != nil:
			last = err
		case !agree(nodes):
			last = fmt.Errorf("replicas differ: %v", nodes)
		case prev != nil && nodes[0].AppliedIndex == prev[0].AppliedIndex:
			return nodes, nil
		default:
			last = errors.New("waiting for a second identical reading")
		}
		if err == nil && agree(nodes) {
			prev = nodes
		} else {
			prev = nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("replicas did not converge: %w", last)
		case <-time.After(pollInterval):
		}
	}
}

func agree(nodes []check.NodeState) bool {
	for _, n := range nodes {
		if n.Err != "" || n.Digest != nodes[0].Digest || n.AppliedIndex != nodes[0].AppliedIndex {
			return false
		}
	}
	return true
}

func (c *Cluster) nodeStates(ctx context.Context) ([]check.NodeState, error) {
	var out []check.NodeState
	var lastLog uint64
	for i, addr := range c.stores {
		st, err := c.store.NodeStatus(ctx, addr, &pb.NodeStatusRequest{})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", addr, err)
		}
		if st.GetCommitIndex() != st.GetLastLogIndex() || (i > 0 && st.GetLastLogIndex() != lastLog) {
			return nil, fmt.Errorf("node %s: log %d, committed %d, others %d", st.GetId(), st.GetLastLogIndex(), st.GetCommitIndex(), lastLog)
		}
		lastLog = st.GetLastLogIndex()
		out = append(out, check.NodeState{ID: st.GetId(), AppliedIndex: st.GetAppliedIndex(), Digest: st.GetDigest()})
	}
	return out, nil
}

func (c *Cluster) readState(ctx context.Context, items []check.ItemSpec, users []string) (check.Final, error) {
	var out check.Final
	campaigns := map[string]bool{}
	for _, it := range items {
		campaigns[it.Campaign] = true
	}
	for id := range campaigns {
		res, err := c.store.GetCampaign(ctx, &pb.GetCampaignRequest{CampaignId: id})
		if err != nil {
			return out, fmt.Errorf("read campaign %s: %w", id, err)
		}
		for _, it := range res.GetItems() {
			out.Items = append(out.Items, check.FinalItem{Campaign: it.GetCampaignId(), Item: it.GetId(),
				Total: it.GetTotal(), Available: it.GetAvailable(), Reserved: it.GetReserved(), Sold: it.GetSold()})
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	work := make(chan string)
	for i := 0; i < finalReaders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for user := range work {
				res, err := c.store.ListClaims(ctx, &pb.ListClaimsRequest{UserId: user})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("list claims of %s: %w", user, err)
				}
				for _, cl := range res.GetClaims() {
					if campaigns[cl.GetCampaignId()] {
						out.Claims = append(out.Claims, check.FinalClaim{ID: cl.GetId(), Campaign: cl.GetCampaignId(),
							Item: cl.GetItemId(), User: cl.GetUserId(), RequestID: cl.GetRequestId(),
							Quantity: cl.GetQuantity(), State: claimState(cl.GetState())})
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, u := range users {
		work <- u
	}
	close(work)
	wg.Wait()
	slices.SortFunc(out.Claims, func(a, b check.FinalClaim) int { return cmp.Compare(a.ID, b.ID) })
	return out, firstErr
}

func claimState(s pb.ClaimState) string {
	switch s {
	case pb.ClaimState_CLAIM_STATE_SETTLED:
		return check.ClaimSettled
	case pb.ClaimState_CLAIM_STATE_RELEASED:
		return check.ClaimReleased
	}
	return check.ClaimReserved
}
