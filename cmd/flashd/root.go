package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "flashd",
		Short:         "flashd: a Raft-replicated inventory store for flash sales",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newStoreCmd())
	root.AddCommand(newFrontDoorCmd())
	root.AddCommand(newDemoCmd())
	root.AddCommand(newSettlerCmd())
	return root
}

func newLogger(cmd *cobra.Command) *slog.Logger {
	var level slog.Level
	name, _ := cmd.Flags().GetString("log-level")
	if err := level.UnmarshalText([]byte(name)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
