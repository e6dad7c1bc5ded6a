package main

import (
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"github.com/flashd/flashd/rpc/endpoint"
)

// splitList splits a comma-separated flag value, dropping empty parts.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// addLimitFlags adds the flags of a gRPC server's client limits, l holding
// the defaults; the same words on `flashd store` and `flashd frontdoor`.
func addLimitFlags(fl *pflag.FlagSet, l *endpoint.Limits) {
	fl.IntVar(&l.ConnsMax, "max-connections", l.ConnsMax, "client connections open at once, at most (more are closed at accept; lowered to what the file limit allows)")
	fl.IntVar(&l.ConnsPerIPMax, "max-connections-per-ip", l.ConnsPerIPMax, "client connections open at once from one IP (an IPv6 /64), at most; 0: no bound (behind a proxy all clients share its IP)")
	fl.Uint32Var(&l.StreamsPerConnMax, "max-streams-per-connection", l.StreamsPerConnMax, "calls open at once on one connection, at most (HTTP/2 max concurrent streams)")
	fl.IntVar(&l.CallsMax, "max-calls", l.CallsMax, "calls open at once over all connections, at most (more are refused with RESOURCE_EXHAUSTED)")
	fl.DurationVar(&l.ConnIdleMax, "max-connection-idle", l.ConnIdleMax, "close a connection without calls for this long (0: never)")
	fl.DurationVar(&l.ConnAgeMax, "max-connection-age", l.ConnAgeMax, "close a connection this old, after --max-connection-age-grace for its calls (0: never)")
	fl.DurationVar(&l.ConnAgeGrace, "max-connection-age-grace", l.ConnAgeGrace, "time the calls of a connection closed for its age have to finish")
}

// logLimits says what limits a server applies, and warns when the file
// limit lowered the connection bound below what was asked.
func logLimits(log *slog.Logger, e *endpoint.Endpoints, asked int) {
	l, fileMax := e.Limits()
	if asked > 0 && l.ConnsMax < asked {
		log.Warn("connection bound lowered to what the file limit allows", "max_connections", l.ConnsMax, "asked", asked, "file_limit", fileMax)
	}
	log.Info("client limits", "max_connections", l.ConnsMax, "per_ip", l.ConnsPerIPMax, "streams_per_connection", l.StreamsPerConnMax,
		"max_calls", l.CallsMax, "call_timeout", l.CallTimeout, "idle", l.ConnIdleMax, "age", l.ConnAgeMax)
}
