// Package endpoint serves one flashd process's network face: a gRPC server
// with the standard health service and server reflection, and Prometheus
// /metrics over HTTP. Store nodes and front doors both use it; it imports no
// flashd package, so a front door pulls in no store code.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "github.com/flashd/flashd/rpc/flashdpb"
)

const httpShutdownTimeout = 2 * time.Second

// Endpoints serve one process's gRPC services, the standard health service,
// server reflection, and Prometheus /metrics over HTTP.
type Endpoints struct {
	GRPC     *grpc.Server
	Health   *health.Server
	Registry *prometheus.Registry
	grpcLis  net.Listener
	httpSrv  *http.Server
	httpLis  net.Listener
	done     chan error
}

// New listens on both addresses (an empty HTTP address serves no
// metrics). Register services on GRPC, then call Serve.
func New(grpcAddr, httpAddr string, opts ...grpc.ServerOption) (*Endpoints, error) {
	e := &Endpoints{
		GRPC:     grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(pb.MaxMessageBytes), grpc.MaxSendMsgSize(pb.MaxMessageBytes)}, opts...)...),
		Health:   health.NewServer(),
		Registry: prometheus.NewRegistry(),
		done:     make(chan error, 2),
	}
	e.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	healthpb.RegisterHealthServer(e.GRPC, e.Health)
	reflection.Register(e.GRPC)
	var err error
	if e.grpcLis, err = net.Listen("tcp", grpcAddr); err != nil {
		return nil, fmt.Errorf("listen grpc on %s: %w", grpcAddr, err)
	}
	if httpAddr != "" {
		if e.httpLis, err = net.Listen("tcp", httpAddr); err != nil {
			e.grpcLis.Close()
			return nil, fmt.Errorf("listen http on %s: %w", httpAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{}))
		// Profiles on the same operator-only address, for finding a hot
		// path during a sale (go tool pprof http://HTTP-ADDR/debug/pprof/profile).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		e.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}
	return e, nil
}

// GRPCAddr is the address the gRPC server listens on.
func (e *Endpoints) GRPCAddr() string { return e.grpcLis.Addr().String() }

// Serve marks the process healthy and starts serving in the background;
// Done reports the first failure.
func (e *Endpoints) Serve() {
	e.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	go func() { e.done <- e.GRPC.Serve(e.grpcLis) }()
	if e.httpSrv != nil {
		go func() {
			if err := e.httpSrv.Serve(e.httpLis); !errors.Is(err, http.ErrServerClosed) {
				e.done <- err
			}
		}()
	}
}

// Done delivers an error if a server stops on its own.
func (e *Endpoints) Done() <-chan error { return e.done }

// Stop stops both servers, letting in-flight RPCs finish briefly.
func (e *Endpoints) Stop() {
	e.Health.Shutdown()
	stopped := make(chan struct{})
	go func() { e.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(httpShutdownTimeout):
		e.GRPC.Stop()
	}
	if e.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		e.httpSrv.Shutdown(ctx)
	}
}
