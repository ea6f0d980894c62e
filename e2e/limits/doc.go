// Package limits runs the router binary under a small file-descriptor
// limit and drives it past its connection caps and past the limit itself:
// established WebSockets go on, new connections are refused at once with a
// clear answer, health and metrics stay reachable, the exhaustion is
// warned about and counted, and the router serves normally once the load
// has left. It needs no API server: the router routes from a static
// routes file to an echo server in the test.
package limits
