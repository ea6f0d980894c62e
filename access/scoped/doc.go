// Package scoped holds the scoped tokens: credentials bound to one
// sandbox, minted by whoever creates sandboxes and verified by the router
// without asking the API server.
//
//   - v1 (v1.go) is the upstream agent-sandbox router's format, byte for
//     byte: HMAC-SHA256 with a shared secret over namespace, name and
//     expiry, so tokens minted by existing tooling keep working;
//   - v2 (v2.go) is signed with Ed25519 under a key id, so the router fleet
//     holds public keys only, and is bound to the sandbox's UID too, and
//     optionally to ports, methods, a path prefix and client addresses.
//
// keys.go reads the v1 secret and the v2 public keys from files (a mounted
// Secret or ConfigMap) and reloads them when they change, several v2 keys
// at once, so keys rotate without a restart. The package decides what a
// token says and whether it is genuine; whether that lets a request
// through is the access package's.
package scoped
