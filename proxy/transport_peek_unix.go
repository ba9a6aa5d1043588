//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import "syscall"

const canPeek = true

// peekFD looks, without reading and without blocking, whether the socket has a byte, an
// EOF or an error waiting; peekN is -1 when it has nothing (EAGAIN). It is the callback of
// syscall.RawConn.Read, bound once per connection so that a check allocates nothing.
func (c *upConn) peekFD(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), c.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		c.peekN = -1
	case err != nil:
		c.peekN = 0 // a reset, say
	default:
		c.peekN = n // 0: EOF
	}
	return true // never wait: the answer is now
}
