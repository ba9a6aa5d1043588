// Package sticky keeps sticky sessions: which backend a session is pinned to. It provides
// the session store (Store: Memory for one process, Redis shared by every instance), the
// session cookie (a random ID plus a signed hint of its backend), and the rendezvous hash
// that places header-keyed sessions while Redis is unreachable. It fails open: Redis is an
// accelerator, never a reason to fail a request (SPEC §5).
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
// # Cookie and hint
//
// The cookie value is "<sid>.<backendID>.<sig>": sid is SessionIDLen base64url characters
// (128 random bits, the store key); sig is HMAC-SHA256(key, sid "." backendID) truncated to
// 128 bits, base64url. The HMAC key is Options.HintKey, or one random key shared through
// Redis (SET NX: the first instance's key wins; a Signer keeps verifying the keys it
// replaced). The hint is trusted only when Redis cannot answer; a value that does not parse
// or verify is treated as no hint. Anyone with access to Redis can read the shared key.
//
// # Per request (the proxy's sequence)
//
// Once per table: a CookieSpec (Name, MaxAge = sticky.ttl, Secure for a TLS listener) and
// ttl = sticky.ttl, passed to every Pin and Repin (a reload may change it; the store keeps
// the TTL it was made with). Per request, with now := time.Now().UnixNano() (the value also passed to Pool.Pick):
//
//  1. Key. Cookie mode: c, ok := ParseCookie(req.Header.Cookie(spec.Name)); key = c.SID
//     (no valid cookie: a new session, go to 7). Header mode: key = req.Header.Peek(name);
//     an empty key or one over MaxKeyLen is no session: pick normally and stop.
//  2. id, o := store.Lookup(key, now), then choose the backend b by the outcome (3–5).
//  3. CacheHit or RedisHit: b = the table's backend with that ID. If it is missing, in
//     another pool, unhealthy, breaker-open or drained, the session moves: b = Pick, and
//     store.Repin(key, b.ID, ttl). Drained backends lose their sessions too, unlike HAProxy
//     (whose drain keeps persistent sessions): drain here means "empty this backend".
//  4. Miss: in cookie mode, if store.Signer().Verify(c) and the hinted backend is usable,
//     b = that backend (the pin was lost — expired, or Redis restarted empty — but the
//     browser still holds a valid placement); otherwise b = Pick. Then store.Pin(key, b.ID, ttl).
//  5. Fallback (Redis down): cookie mode — b = the hinted backend if Verify(c) passes and
//     it is usable (a retry that ends elsewhere Repins, queued), else b = Pick and
//     store.Repin (queued). Header mode — b = backends[i] with i := Rendezvous(key,
//     pool.Backends, idOf, usable) (i < 0: Pick); no pin, so the session returns to its
//     Redis pin when Redis does. Every instance with the same view of backend health places
//     it alike.
//  6. Cookie mode: when the cookie's hinted backend differs from b (a re-pin, here or by
//     another instance), re-issue the cookie with the same sid:
//     resp.Header.Add("Set-Cookie", spec.AppendSetCookie(scratch, store.Signer(), c.SID, b.ID)).
//  7. New cookie session (from 1): sid := AppendSessionID(scratch); b = Pick; store.Pin(sid, b.ID, ttl);
//     Set-Cookie as in 6. A retry that ends on another backend Repins to the one that served.
//  8. Count o for lb_sticky_lookups_total{result=o.String()} — or read Store.Stats().
//
// Costs: Lookup (both stores, on a hit), ParseCookie, Signer.Verify, CookieSpec.AppendSetCookie
// with a scratch buffer of room, AppendSessionID and Rendezvous allocate nothing. Pin and
// Repin allocate (a map entry, a Redis command): they run once per session or move. Look the
// hinted ID up with a map index written as m[string(c.Backend)], which Go does without
// allocating; passing string(c.Backend) to a function may allocate for IDs over 32 bytes.
//
// Every type is safe for concurrent use unless its doc says otherwise.
package sticky
