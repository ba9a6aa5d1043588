// Package sticky keeps sticky sessions: which backend a session is pinned to. It provides
// the session store (Store: Memory for one process, Redis shared by every instance), the
// session cookie (a random ID plus a signed, opaque reference to its backend), and the rendezvous hash
// that places header-keyed sessions while Redis is unreachable. It fails open: Redis is an
// accelerator, never a reason to fail a request (docs/behaviour.md#sticky-sessions).
//
// # Stores
//
// Memory is a bounded set-associative table whose reads take no lock (see table.go for why
// not sharded RWMutex maps). Redis keeps pins under Options.KeyPrefix+"s:"+key (SET PX ttl)
// and reads them with rueidis DoCache: the first read of a key on a connection is a round
// trip (outcome RedisHit) and registers the key with Redis's CLIENT TRACKING; later reads
// are served from rueidis's in-process cache (CacheHit) for up to Options.ClientCacheTTL, and
// a write of the key by any instance makes Redis push an invalidation that evicts it
// everywhere. Keys and values are plain strings, so operators can inspect them with
// redis-cli.
//
// # Redis store state machine
//
//	     first failed call (timeout, connection error) — CAS elects one goroutine
//	up ───────────────────────────────────────────────────────────────────────▶ down
//	 ▲    logs one warning, starts the recovery loop                            │
//	 │                                                                          │
//	 └──────────────────────────────────────────────────────────────────────────┘
//	      a probe every Options.Backoff: PING, hint-key sync, flush queued pins
//
// up: Lookup reads through the client cache, every call bounded by Options.Timeout; Pin
// writes SET. down: Lookup returns Fallback after one atomic load (no timeout paid per
// request); Pin queues the pin (one per key, at most Options.MaxQueuedPins), written with its
// remaining TTL when Redis returns. A store created while Redis is down starts in down and
// logs one warning. rueidis drops its client cache when its connection breaks, so after an
// outage every key's first read is a round trip again — never a stale hit — and the cookie
// hint is what keeps a cookie session on its backend in the meantime.
//
// # Cookie and reference
//
// The cookie value is "<sid>.<ref>.<sig>": sid is SessionIDLen base64url characters (128
// random bits, the store key); ref is HMAC-SHA256(key, "ref" 0x00 backendID) truncated to
// 96 bits, base64url — an opaque reference that names no backend ID, address or port, which
// the proxy resolves with a map from reference to backend built once per table; sig is
// HMAC-SHA256(key, sid "." ref) truncated to 128 bits. The key is Options.HintKey (config
// sticky.secret_file or STICKY_SECRET, shared by every instance), with
// Options.PreviousHintKey still accepted during a rotation; without one, the Redis store
// shares one random key through Redis (SET NX: the first instance's key wins; a Signer keeps
// verifying the keys it replaced; anyone with access to Redis can read it) and the memory
// store uses a random per-process key. A value that does not parse or verify is no cookie.
//
// # What is stored
//
// A new cookie session is carried by its cookie alone: nothing is written. The store records
// what the cookie cannot say — a session moved to another backend (drain, failure, a retry
// that ended elsewhere), whose pin overrides the cookie until the client holds the
// re-issued one and keeps every instance on the new backend, and header-keyed sessions. So
// the Redis keys are bounded by the moves and distinct header keys within one sticky.ttl
// (each key expires with it, SET PX), not by the request rate.
//
// # Per request (the proxy's sequence)
//
// Once per table: a CookieSpec (Name, MaxAge = sticky.ttl, Secure for a TLS listener), the
// reference map of the current Signer, and ttl = sticky.ttl, passed to every Pin and Repin.
// Per request, with now := time.Now().UnixNano() (the value also passed to Pool.Pick):
//
//  1. Cookie mode: c, ok := ParseCookie(req.Header.Cookie(spec.Name)); no valid cookie, or
//     !Signer().Verify(c): a new session — sid := AppendSessionID(scratch), b = Pick, set
//     the cookie (6); nothing is stored. Header mode: key = req.Header.Peek(name); an empty
//     key or one over MaxKeyLen is no session: pick normally and stop.
//  2. id, o := store.Lookup(key, now).
//  3. Cookie mode: on CacheHit or RedisHit the session was moved and b = the backend id
//     names; otherwise b = the backend c.Ref resolves to. If b is missing, in another pool,
//     unhealthy, breaker-open or drained, the session moves: b = Pick and
//     store.Repin(sid, b.ID, ttl) (queued while Redis is down). Drained backends lose their
//     sessions too, unlike HAProxy (whose drain keeps persistent sessions): drain here means
//     "empty this backend". A retry that ends on another backend Repins too.
//  4. Header mode, CacheHit or RedisHit: as 3 with the pinned backend. Miss: b = Pick,
//     store.Pin(key, b.ID, ttl). Fallback (Redis down): b = backends[i] with i :=
//     Rendezvous(key, pool.Backends, idOf, usable) (i < 0: Pick); no pin, so the session
//     returns to its Redis pin when Redis does. Every instance with the same view of backend
//     health places it alike.
//  5. Count o for lb_sticky_lookups_total{result=o.String()} — or read Store.Stats().
//  6. Cookie mode: when the session is new, moved, or its cookie was made with a previous
//     key, set the cookie with the same sid: resp.Header.Add("Set-Cookie",
//     spec.AppendSetCookie(scratch, signer, sid, refOf[b.ID])).
//
// Costs: Lookup (both stores, on a hit), ParseCookie, Signer.Verify, CookieSpec.AppendSetCookie
// with a scratch buffer of room, AppendSessionID and Rendezvous allocate nothing. Pin and
// Repin allocate (a map entry, a Redis command): they run once per header session or move.
// Resolve the reference with a map index written as m[string(c.Ref)], which Go does without
// allocating.
//
// Every type is safe for concurrent use unless its doc says otherwise.
package sticky
