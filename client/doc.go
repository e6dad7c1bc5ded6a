// Package client is the Go client library of flashd.
//
// A Client (New) talks to the front doors: it is what a service imports to
// let its users claim. Claim sends a claim as the calling user (a bearer
// token from a TokenSource, BearerToken, or AsUser for front doors in
// insecure-header mode), spreads calls over the healthy front doors,
// retries what may succeed with the same request ID, throttles its retries
// with a budget, and drops calls itself when the front doors ask.
//
// A Store (NewStore) talks to the store cluster's Store and Admin services,
// for operators, flashctl and the front doors themselves: it finds the
// leader, follows NOT_LEADER hints, and fails over within a bounded budget.
//
// Both turn refusals into errors matched with errors.Is (ErrSoldOut,
// ErrLimitReached, ErrNotFound, ...), keep the server's reason (Reason) and
// say whether a retry may succeed (IsRetryable).
//
// The client imports only the generated API package rpc/flashdpb, never a
// server. DESIGN.md beside this file explains the retry policies.
package client
