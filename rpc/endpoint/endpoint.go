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
)

const httpShutdownTimeout = 2 * time.Second

// Endpoints serve one process's gRPC services, the standard health service,
// server reflection, and Prometheus /metrics over HTTP.
type Endpoints struct {
	GRPC     *grpc.Server
	Health   *health.Server
	Registry *prometheus.Registry
	limits   Limits // as applied: ConnsMax lowered to the file limit
	fileMax  uint64 // the process's file limit; 0: none known
	calls    *callLimiter
	grpcLis  net.Listener
	httpSrv  *http.Server
	httpLis  net.Listener
	done     chan error
}

// New listens on both addresses (an empty HTTP address serves no
// metrics), with limits on the gRPC server's clients (see Limits) and opts
// added to the server's options. Register services on GRPC, then call
// Serve.
func New(grpcAddr, httpAddr string, limits Limits, opts ...grpc.ServerOption) (*Endpoints, error) {
	if err := limits.validate(); err != nil {
		return nil, fmt.Errorf("server limits: %w", err)
	}
	limits, fileMax := limits.withFileLimit()
	calls := newCallLimiter(limits)
	e := &Endpoints{
		GRPC:     grpc.NewServer(append(serverOptions(limits, calls), opts...)...),
		Health:   health.NewServer(),
		Registry: prometheus.NewRegistry(),
		limits:   limits,
		fileMax:  fileMax,
		calls:    calls,
		done:     make(chan error, 2),
	}
	calls.server = e.GRPC
	e.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.Registry.MustRegister(calls.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "flashd", Subsystem: "grpc", Name: "calls",
		Help: "Calls open on the gRPC server (counted only when it bounds them).",
	}, func() float64 { return float64(calls.open.Load()) }))
	healthpb.RegisterHealthServer(e.GRPC, e.Health)
	reflection.Register(e.GRPC)
	lis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return nil, fmt.Errorf("listen grpc on %s: %w", grpcAddr, err)
	}
	conns := newConnLimiter(lis, limits.ConnsMax, limits.ConnsPerIPMax)
	e.Registry.MustRegister(conns.collectors()...)
	e.grpcLis = conns
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

// Limits are the limits the server applies: those given to New, with the
// connection bound lowered to what the file limit allows (fileMax, 0 when
// the process has none).
func (e *Endpoints) Limits() (l Limits, fileMax uint64) { return e.limits, e.fileMax }

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
