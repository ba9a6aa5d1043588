// Package picker holds the load-balancing algorithms of the request path: smooth weighted
// round-robin ([Smooth]) and power-of-two-choices on in-flight counts ([LeastInflight]).
// It is pure computation on backend indices 0..n-1 — no HTTP, no locks, standard library
// only, and no allocation per pick. Callers say which backends may be picked with an
// avail func(i int) bool; the closure is never retained, so a caller's closure that
// captures locals stays on its stack.
//
// # Smooth weighted round-robin
//
// The schedule is nginx's smooth weighted round-robin (ngx_http_upstream_get_peer in
// src/http/ngx_http_upstream_round_robin.c): each backend has a current weight, starting
// at 0; on every pick each current weight grows by the backend's weight, the backend with
// the largest current weight wins (the lowest index on ties) and its current weight drops
// by the total. Weights 3:2:1 give a b a c b a — interleaved rather than a a a b b c — and
// nginx's own example {5,1,1} gives a a b a c a a. After total/gcd picks every current
// weight is 0 again, so the sequence is periodic. A backend of at most average weight is
// never picked twice in a row; a heavier one can be, as in nginx: a period ends and the
// next begins with the heaviest backend (a b a c b a a b a c b a).
//
// nginx runs that loop under the upstream's lock on every request, in O(n). [NewSmooth]
// instead runs it once, for one period, when a backend table is built, and stores the
// resulting schedule; a pick is then one atomic add on a cursor and one load from the
// schedule: wait-free, safe for any number of goroutines, and independent of the number of
// backends. On the 2-CPU machine this package was written on (go test -bench, medians): one
// CPU, 15 ns per pick at 3, 100 and 10,000 backends against 23 ns for the mutex-guarded
// loop at 3 backends and 360 ns at 100; with some work between picks, as in a proxy, 2 CPUs
// spend 147 ns per pick-plus-work against 313 ns with the mutex (BenchmarkSpaced). Only a
// tight loop of nothing but picks favours the mutex (48 ns vs 31 ns), because its holder
// re-acquires the lock before the other CPU can, while each atomic add moves the cursor's
// cache line.
//
// # Bounded schedule
//
// Weights are first divided by their greatest common divisor, so 100:100 is 1:1 and
// 1,000 backends of weight 100 make a schedule of 1,000 entries. When the reduced sum still
// exceeds max(65536, n) entries, the weights are scaled down to that many slots by
// largest-remainder apportionment, every backend keeping at least one slot. A backend's
// share of picks then differs from its exact share by less than one slot of the schedule
// (under 1/65536 ≈ 0.0015 percentage points), except that a backend whose exact share is
// below one slot is raised to one slot, at the expense of the others. A schedule therefore
// takes at most 128 KiB (uint16 indices); beyond 65,536 backends the cap equals n, every
// weight becomes 1, and the schedule is plain round-robin, which is computed rather than
// stored.
//
// # Skipping unavailable backends
//
// [Smooth.Pick] claims schedule slots from the shared cursor until one names an available
// backend, so over time the available backends are picked in the schedule's order with the
// schedule's relative weights: with 3:2:1 and b down, the picks are a a c a, a a c a, ...
// Each slot is handed out once, also under concurrency. After n unavailable slots in a row
// it gives up on the schedule and scans the n backends linearly from a rotating offset, so
// a pick makes at most 2n avail calls and returns -1 when none is available.
//
// A new Smooth starts at the beginning of its schedule. Rebuilding one is only needed when
// weights or membership change: health and breaker state belong in avail.
package picker
