// Command upstream-v1 mints a v1 scoped token with the upstream router's
// authz.MintScopedToken and prints it with what it was minted from, as
// the fixture ../upstream-v1.json.
package main

import (
	"encoding/json"
	"os"
	"time"

	"sigs.k8s.io/agent-sandbox/sandbox-router/authz"
)

func main() {
	// A fixed secret, with the trailing newline a mounted Secret has.
	secret := []byte("fixture-secret-0123456789abcdefghijklmnopqrstuvwxyz\n")
	// Ten years: the fixture outlives the test suite; the test verifies
	// against a clock before exp anyway.
	token, err := authz.MintScopedToken(secret, "team-a", "notebook", 10*365*24*time.Hour)
	if err != nil {
		panic(err)
	}
	out := map[string]any{
		"generator": "sigs.k8s.io/agent-sandbox v1.0.1 sandbox-router/authz.MintScopedToken",
		"secret":    string(secret),
		"namespace": "team-a",
		"name":      "notebook",
		"minted_at": time.Now().UTC().Format(time.RFC3339),
		"token":     token,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}
