// Package client is the Go client library of flashd, for services and for
// flashctl. A Store talks to the store cluster's Store and Admin services
// over gRPC: it finds the leader, follows NOT_LEADER hints, fails over and
// retries within a bounded budget, reusing each call's request ID, and turns
// refusals into errors matched with errors.Is (ErrSoldOut, ErrNotFound, ...).
//
// The client imports only the generated API package rpc/flashdpb, never a
// server. DESIGN.md beside this file explains the retry policy.
package client
