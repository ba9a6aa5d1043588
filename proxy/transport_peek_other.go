//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

// canPeek is false where the socket cannot be looked at without reading: pooled
// connections are then reused without the idle check.
const canPeek = false

func (c *upConn) peekFD(uintptr) bool { c.peekN = -1; return true }
