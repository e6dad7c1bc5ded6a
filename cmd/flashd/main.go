// Command flashd runs flashd's servers: store nodes (and, in later issues,
// front doors, the demo and the benchmark). main only wires and exits.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashd:", err)
		os.Exit(1)
	}
}
