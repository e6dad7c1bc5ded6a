package rpc

import (
	"fmt"
	"log/slog"

	"github.com/flashd/flashd/raftnode"
	"github.com/flashd/flashd/rpc/endpoint"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// StoreNode is a store node's servers around its raft node.
type StoreNode struct {
	*endpoint.Endpoints
	admin *AdminServer
}

// ServeStore registers the Store and Admin services of node and their
// metrics on new endpoints, whose gRPC server applies limits
// (DefaultLimits unless flags change them), and starts serving.
func ServeStore(node *raftnode.Node, grpcAddr, httpAddr string, limits endpoint.Limits, log *slog.Logger) (*StoreNode, error) {
	e, err := endpoint.New(grpcAddr, httpAddr, limits)
	if err != nil {
		return nil, err
	}
	m, err := newStoreMetrics(e.Registry, node.ID())
	if err == nil {
		err = node.RegisterMetrics(e.Registry)
	}
	if err != nil {
		e.Stop()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	doors := newFrontDoorRegistry()
	admin := NewAdminServer(node, doors)
	pb.RegisterStoreServer(e.GRPC, NewStoreServer(node, m, doors))
	pb.RegisterAdminServer(e.GRPC, admin)
	e.Serve()
	log.Info("store node serving", "grpc", e.GRPCAddr(), "http", httpAddr)
	return &StoreNode{Endpoints: e, admin: admin}, nil
}

// Stop stops the servers and closes peer connections (not the raft node).
func (s *StoreNode) Stop() {
	s.Endpoints.Stop()
	s.admin.peers.close()
}
