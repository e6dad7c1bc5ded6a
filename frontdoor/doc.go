// Package frontdoor is flashd's stateless front door: the funnel between
// the crowd and the store cluster (DESIGN.md section 1 of the project).
//
// A claim meets, in order: authentication (signed bearer tokens), frequency
// control per client IP and per user, this door's share of the global rate
// limit, degradation level 2 (random drop), early validation (parameters,
// campaign open, the user's entry wave open), the sold-out and limit caches,
// and the coalescer, which packs what is left into batches for the store.
// Every stage counts what it passed on and what it refused, and why.
//
// A Door keeps nothing that matters after a restart: its catalog and
// configuration come from the store's Watch stream and heartbeats, its
// buckets and caches are rebuilt by traffic, and it answers a claim only
// with what the store applied. DESIGN.md beside this file says why the
// funnel is built the way it is.
package frontdoor
