package fsm

import (
	"math"
	"strings"
	"testing"

	"github.com/flashd/flashd/fsm/fsmpb"
)

func TestRegisterNode(t *testing.T) {
	h := newHarness(t)
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n2", Region: "eu", GrpcAddr: "10.0.0.2:7000", HttpAddr: "10.0.0.2:8000"}))
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n1", Region: "us", GrpcAddr: "10.0.0.1:7000"}))
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n2", Region: "ap", GrpcAddr: "10.0.0.9:7000"}))
	want := []Node{{ID: "n1", Region: "us", GRPCAddr: "10.0.0.1:7000"}, {ID: "n2", Region: "ap", GRPCAddr: "10.0.0.9:7000"}}
	if got := h.f.Nodes(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("nodes %+v, want %+v", got, want)
	}
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "n1", Removed: true}))
	h.mustOK(registerNode(&fsmpb.RegisterNode{NodeId: "never", Removed: true}))
	if got := h.f.Nodes(); len(got) != 1 || got[0] != want[1] {
		t.Fatalf("nodes after removal %+v, want only n2", got)
	}
	for _, b := range []*fsmpb.RegisterNode{
		{NodeId: ""},
		{NodeId: "n\n"},
		{NodeId: "n3", Region: strings.Repeat("r", 129)},
		{NodeId: "n3", GrpcAddr: "a\x00"},
		{NodeId: "n3", HttpAddr: strings.Repeat("h", 257)},
	} {
		checkRefusal(t, h, registerNode(b), ReasonInvalidArgument)
	}
}

func TestSetFrontDoorConfig(t *testing.T) {
	h := newHarness(t)
	res := h.mustOK(setFrontDoor(&fsmpb.FrontDoorConfig{
		Version: 77, GlobalRate: 1000, PerUserRate: 2, PerIpRate: 10, DegradeLevel: 2, DropFraction: 0.5, DegradeAuto: true,
	}))
	want := FrontDoorConfig{Version: 1, GlobalRate: 1000, PerUserRate: 2, PerIPRate: 10, DegradeLevel: 2, DropFraction: 0.5, DegradeAuto: true}
	if got := h.f.FrontDoorConfig(); got != want || *res.Config != want {
		t.Fatalf("config %+v (result %+v), want %+v", got, res.Config, want)
	}
	h.mustOK(setFrontDoor(&fsmpb.FrontDoorConfig{DegradeLevel: 3, DropFraction: 1}))
	if got := h.f.FrontDoorConfig(); got != (FrontDoorConfig{Version: 2, DegradeLevel: 3, DropFraction: 1}) {
		t.Fatalf("second config %+v: want a whole replacement at version 2", got)
	}
	for name, c := range map[string]*fsmpb.FrontDoorConfig{
		"missing":                nil,
		"negative global rate":   {GlobalRate: -1},
		"infinite per-user rate": {PerUserRate: math.Inf(1)},
		"NaN per-IP rate":        {PerIpRate: math.NaN()},
		"drop fraction above 1":  {DropFraction: 1.01},
		"negative drop fraction": {DropFraction: -0.1},
		"NaN drop fraction":      {DropFraction: math.NaN()},
		"level 4":                {DegradeLevel: 4},
	} {
		t.Run(name, func(t *testing.T) { checkRefusal(t, h, setFrontDoor(c), ReasonInvalidArgument) })
	}
}
