package demo

import (
	"context"
	"time"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/internal/localcluster"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// flashSale is the flash sale as a workload of the live run: its items are
// the stock bars, its granted claims the rate, its crowd's presses the
// calls.
type flashSale struct {
	st       *client.Store
	items    []string
	stock    []uint64
	duration time.Duration
	crowd    *crowd
	users    []*user
	sv       storeView // what the store held at the end, for the summary
}

var _ workload = (*flashSale)(nil)

func (f *flashSale) bars(ctx context.Context) []itemView {
	out := make([]itemView, len(f.items))
	for i, name := range f.items {
		out[i] = itemView{name: name, total: f.stock[i], soldOutAt: time.Duration(f.crowd.soldOutAt[i].Load())}
		rctx, cancel := context.WithTimeout(ctx, pollInterval)
		res, err := f.st.GetItem(rctx, &pb.GetItemRequest{CampaignId: campaignID, ItemId: name, Consistency: pb.Consistency_CONSISTENCY_STALE})
		cancel()
		if err == nil {
			out[i].available, out[i].known = res.GetItem().GetAvailable(), true
		}
	}
	return out
}

func (f *flashSale) progress() progress {
	var stock uint64
	for _, n := range f.stock {
		stock += n
	}
	granted := f.crowd.outcomes[outGranted].Load()
	return progress{
		arrived: f.crowd.arrived.Load(), done: f.crowd.finished.Load(), calls: f.crowd.pressed.Load(),
		counts: []tally{{"granted", "claims granted", granted}}, given: float64(granted) / float64(max(stock, 1)),
	}
}

func (f *flashSale) stages() []localcluster.FunnelStage { return localcluster.FunnelStages }

// watchEmpty: bar i is item i.
func (f *flashSale) watchEmpty(fn func(bar int)) { f.crowd.emptied = fn }

func (f *flashSale) latencies() []time.Duration { return f.crowd.allLatencies() }
