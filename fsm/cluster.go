package fsm

import (
	"math"

	"github.com/flashd/flashd/fsm/fsmpb"
)

// applyRegisterNode records or updates a member's metadata; removed deletes
// it (removing an unknown node is a success that changes nothing).
func (s *state) applyRegisterNode(b *fsmpb.RegisterNode) *Result {
	switch {
	case !validID(b.GetNodeId()):
		return refusal(ReasonInvalidArgument, msgBadNodeID)
	case !validText(b.GetRegion(), idMaxBytes):
		return refusal(ReasonInvalidArgument, "region must be at most 128 bytes of UTF-8 without control characters")
	case !validText(b.GetGrpcAddr(), nameMaxBytes), !validText(b.GetHttpAddr(), nameMaxBytes):
		return refusal(ReasonInvalidArgument, "addresses must be at most 256 bytes of UTF-8 without control characters")
	}
	if b.GetRemoved() {
		delete(s.nodes, b.GetNodeId())
	} else {
		s.nodes[b.GetNodeId()] = nodeFromRecord(b)
	}
	return &Result{Outcomes: []Outcome{{}}}
}

func nodeFromRecord(b *fsmpb.RegisterNode) Node {
	return Node{ID: b.GetNodeId(), Region: b.GetRegion(), GRPCAddr: b.GetGrpcAddr(), HTTPAddr: b.GetHttpAddr()}
}

// applySetFrontDoorConfig replaces the funnel configuration as a whole; the
// version is the state machine's and goes up by one.
func (s *state) applySetFrontDoorConfig(b *fsmpb.SetFrontDoorConfig) *Result {
	c := b.GetConfig()
	switch {
	case c == nil:
		return refusal(ReasonInvalidArgument, "config is missing")
	case !validRate(c.GetGlobalRate()), !validRate(c.GetPerUserRate()), !validRate(c.GetPerIpRate()):
		return refusal(ReasonInvalidArgument, "rates must be finite and not negative (0: unlimited)")
	case !(c.GetDropFraction() >= 0 && c.GetDropFraction() <= 1):
		return refusal(ReasonInvalidArgument, "drop fraction must be between 0 and 1")
	case c.GetDegradeLevel() > maxDegradeLevel:
		return refusal(ReasonInvalidArgument, "degrade level must be 0 to 3")
	}
	version := s.frontDoor.Version + 1
	s.frontDoor = frontDoorFromRecord(c)
	s.frontDoor.Version = version
	s.changed = true
	config := s.frontDoor
	return &Result{Outcomes: []Outcome{{}}, Config: &config}
}

func validRate(r float64) bool { return r >= 0 && !math.IsInf(r, 1) }

func frontDoorFromRecord(c *fsmpb.FrontDoorConfig) FrontDoorConfig {
	return FrontDoorConfig{
		Version: c.GetVersion(), GlobalRate: c.GetGlobalRate(), PerUserRate: c.GetPerUserRate(), PerIPRate: c.GetPerIpRate(),
		DegradeLevel: c.GetDegradeLevel(), DropFraction: c.GetDropFraction(), DegradeAuto: c.GetDegradeAuto(),
	}
}

func frontDoorToRecord(c FrontDoorConfig) *fsmpb.FrontDoorConfig {
	return &fsmpb.FrontDoorConfig{
		Version: c.Version, GlobalRate: c.GlobalRate, PerUserRate: c.PerUserRate, PerIpRate: c.PerIPRate,
		DegradeLevel: c.DegradeLevel, DropFraction: c.DropFraction, DegradeAuto: c.DegradeAuto,
	}
}
