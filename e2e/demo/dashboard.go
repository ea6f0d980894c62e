package main

import (
	"net/http"
	"time"
)

// The dashboard (docs/dashboard.md): each router serves it on a listener
// of its own (--listen-dashboard). The first router runs allow-all, so
// its dashboard is anonymous on purpose (--dashboard-anonymous) and shows
// every sandbox; the guarded router's asks for a token and shows what
// RBAC lets the viewer list or get: the agent lists team-a.

// dashboardChecks are the JSON API's answers the pages are made of.
func dashboardChecks(e *env) []check {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	open := "http://" + e.dashboard
	guarded := "http://" + e.guarded.dashboard
	withToken := request{url: guarded + "/api/sandboxes?size=5", headers: [][2]string{{"Authorization", "Bearer " + e.guarded.token}}}
	return []check{
		httpCheck(client, []string{
			"Dashboard: open " + open + "/ in a browser (live: suspend or wake a sandbox and watch it change).",
			"This router runs allow-all, so its dashboard is anonymous (--dashboard-anonymous). The pages read this JSON API:",
		}, request{url: open + "/api/overview"}, "", "", "", expect{status: 200, contains: `"namespaces":2`}),
		httpCheck(client, []string{
			"the guarded router's dashboard, " + guarded + "/, asks for a token first (sign in with the agent's: cat " + e.guarded.tokenFile + ")",
		}, request{url: guarded + "/api/overview"}, "", "", "", expect{status: 401, code: "unauthenticated"}),
		httpCheck(client, []string{"and shows the agent what RBAC lets it list: team-a's sandboxes, none of default's"},
			withToken, "", "", `curl -s -H "Authorization: Bearer $T" '`+withToken.url+`'`, expect{status: 200, contains: `"namespace":"team-a"`}),
	}
}
