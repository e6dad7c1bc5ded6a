package rpc

import (
	"time"

	"github.com/flashd/flashd/fsm"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Watch streams the current state of the watched campaigns' items, the
// campaigns and the front-door config, then every change of them. It is
// served from this node's applied state (any node), so a front door keeps
// its caches warm from the nearest replica. Changes are coalesced: a stream
// sends at most once per watchMinInterval, the newest state of each item.
func (s *StoreServer) Watch(req *pb.WatchRequest, stream pb.Store_WatchServer) error {
	w := watcher{campaignID: req.GetCampaignId(), items: map[string]fsm.Item{}, campaigns: map[string]fsm.Campaign{}}
	machine := s.node.FSM()
	for {
		changed := machine.Changed() // taken before reading, so no change is missed
		for _, ev := range w.diff(machine) {
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(watchMinInterval):
		}
	}
}

// watcher remembers what one stream has sent, to send only changes.
type watcher struct {
	campaignID string
	items      map[string]fsm.Item
	campaigns  map[string]fsm.Campaign
	config     fsm.FrontDoorConfig
	sentConfig bool
}

func (w *watcher) diff(machine *fsm.FSM) []*pb.WatchEvent {
	index := machine.AppliedIndex()
	var events []*pb.WatchEvent
	if cfg := machine.FrontDoorConfig(); !w.sentConfig || cfg != w.config {
		w.config, w.sentConfig = cfg, true
		events = append(events, &pb.WatchEvent{Index: index, FrontDoorConfig: configToPB(cfg)})
	}
	for _, c := range machine.Campaigns() {
		if w.campaignID != "" && c.ID != w.campaignID {
			continue
		}
		if old, ok := w.campaigns[c.ID]; !ok || old != c {
			w.campaigns[c.ID] = c
			events = append(events, &pb.WatchEvent{Index: index, Campaign: campaignToPB(c)})
		}
	}
	for _, it := range machine.Items(w.campaignID) {
		key := it.CampaignID + "\x00" + it.ID
		if old, ok := w.items[key]; !ok || old != it {
			w.items[key] = it
			events = append(events, &pb.WatchEvent{Index: index, Item: itemToPB(it)})
		}
	}
	return events
}
