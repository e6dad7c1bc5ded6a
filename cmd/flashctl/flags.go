package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
)

// parseTime reads a time flag: "now", "+30s" (a duration from now), or an
// RFC 3339 time. An empty value is the zero time ("none").
func parseTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s[1:])
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q: want now, +DURATION (+30s, +1h) or an RFC 3339 time", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want now, +DURATION (+30s, +1h) or an RFC 3339 time", s)
	}
	return t, nil
}

// parseAmount reads a positive count argument (stock to add or remove) that
// fits a signed 64-bit delta.
func parseAmount(what, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("%s %q: want a positive whole number", what, s)
	}
	return n, nil
}

// parseClaimID reads a claim ID argument.
func parseClaimID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("claim ID %q: want a positive whole number", s)
	}
	return id, nil
}

// requireFlags marks flags required; it panics on a name that is not a flag
// (a bug in the command's wiring).
func requireFlags(cmd *cobra.Command, names ...string) {
	for _, name := range names {
		if err := cmd.MarkFlagRequired(name); err != nil {
			panic(fmt.Sprintf("flashctl %s: %v", cmd.Name(), err))
		}
	}
}

// addRequestIDFlag adds --request-id to a mutating command.
func addRequestIDFlag(cmd *cobra.Command, id *string) {
	cmd.Flags().StringVar(id, "request-id", "", "request ID; repeat one to retry that request safely (default: a new one)")
}

// ensureRequestID makes the request ID here rather than in the client, so
// that an error can name it.
func ensureRequestID(id *string) {
	if *id == "" {
		*id = client.NewRequestID()
	}
}

// retryHint adds, to an error after which the outcome is unknown, how to
// retry the same request safely.
func retryHint(err error, requestID string) error {
	if client.IsRetryable(err) {
		return fmt.Errorf("%w (outcome unknown: retry with --request-id %s)", err, requestID)
	}
	return err
}
