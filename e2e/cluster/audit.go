package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"time"
)

// auditPolicy is the API server's audit policy: one Metadata event per
// finished request (stage ResponseComplete only), by anyone but the API
// server itself (its own identity leases in kube-system renew every few
// seconds), for
//
//   - writes of Sandbox objects: patch and update of the main resource
//     (not of its status subresource);
//   - creates and deletes of Sandboxes and of SandboxClaims
//     (extensions.agents.x-k8s.io), the main resources only: who made or
//     removed one, such as a caller of the MCP tools acting with its own
//     token (mcp/kube) rather than the router's;
//   - every request on Leases;
//   - the TokenReviews and SubjectAccessReviews the user "router" creates
//     (--authz-mode);
//
// and nothing else (no get, list or watch of sandboxes, no status
// writes, no pods). The cost is within the noise of a patch throughput
// run (1000 merge patches, 1 and 8 clients, with and without the log);
// an event takes about 750 bytes.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
  - level: None
    users: ["system:apiserver"]
  - level: Metadata
    verbs: [patch, update]
    resources:
      - group: agents.x-k8s.io
        resources: [sandboxes]
  - level: Metadata
    verbs: [create, delete]
    resources:
      - group: agents.x-k8s.io
        resources: [sandboxes]
      - group: extensions.agents.x-k8s.io
        resources: [sandboxclaims]
  - level: Metadata
    resources:
      - group: coordination.k8s.io
        resources: [leases]
  - level: Metadata
    users: ["router"]
    verbs: [create]
    resources:
      - group: authentication.k8s.io
        resources: [tokenreviews]
      - group: authorization.k8s.io
        resources: [subjectaccessreviews]
  - level: None
`

// auditPollInterval is how often WaitAuditEvents rereads the log.
const auditPollInterval = 20 * time.Millisecond

// AuditEvent is one request the API server audited (see auditPolicy).
type AuditEvent struct {
	Verb        string // get, create, update, patch, ...
	User        string // user.username: "admin", "router", "system:serviceaccount:..."
	Namespace   string
	Name        string // empty for a create the authorizer refused
	APIGroup    string // "agents.x-k8s.io", "extensions.agents.x-k8s.io", "coordination.k8s.io", ...
	APIVersion  string // the version the request was made through: v1beta1, v1alpha1, v1
	Resource    string // "sandboxes", "sandboxclaims", "leases", ...
	Subresource string
	Code        int // responseStatus.code: 200, 201, 403, 404, 409, ...
	// RequestReceived is when the API server received the request and
	// StageTimestamp when it had finished its response (the API server's
	// clock, microsecond precision).
	RequestReceived time.Time
	StageTimestamp  time.Time
}

// auditLine is the part of an audit.k8s.io/v1 Event line AuditEvents reads.
type auditLine struct {
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		APIVersion  string `json:"apiVersion"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time `json:"stageTimestamp"`
}

// eventStart begins every line the log backend writes (the Event's kind
// is its first field).
var eventStart = []byte(`{"kind":"Event"`)

// AuditEvents returns the events of the audit log, oldest first, across
// every API server start of this cluster (the log is appended to): the
// writes (patch, update) of Sandboxes, the creates and deletes of
// Sandboxes and SandboxClaims, every request on Leases and the router's
// reviews (see auditPolicy). The API server writes an event once the
// request's handler has returned, which can be just after the client got
// its response: to see a request that has just returned, use
// WaitAuditEvents. Each call reads only what was added since the last
// one; the slice returned is the caller's.
func (c *Cluster) AuditEvents() ([]AuditEvent, error) {
	c.auditMu.Lock()
	defer c.auditMu.Unlock()
	f, err := os.Open(c.AuditLogPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no API server has started yet
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: audit log: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, c.auditOffset, math.MaxInt64-c.auditOffset))
	if err != nil {
		return nil, fmt.Errorf("cluster: audit log: %w", err)
	}
	evs, n, err := parseAuditLog(data)
	c.auditEvents = append(c.auditEvents, evs...)
	c.auditOffset += int64(n)
	if err != nil {
		return nil, err
	}
	return slices.Clone(c.auditEvents), nil
}

// WaitAuditEvents rereads the audit log until done(events) is true or ctx
// ends, and returns the last events read.
func (c *Cluster) WaitAuditEvents(ctx context.Context, done func([]AuditEvent) bool) ([]AuditEvent, error) {
	t := time.NewTicker(auditPollInterval)
	defer t.Stop()
	for {
		evs, err := c.AuditEvents()
		if err != nil {
			return nil, err
		}
		if done(evs) {
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return evs, fmt.Errorf("cluster: wait for audit events: %w (%d events so far)", ctx.Err(), len(evs))
		case <-t.C:
		}
	}
}

// parseAuditLog parses the complete JSON lines of data and returns their
// events and the bytes they took. A last line without its newline is
// being written and is left for the next read. A line that does not parse
// but holds the start of another event is the remains of an event cut by
// a killed API server followed by the next server's first event: the
// event after the cut is kept.
func parseAuditLog(data []byte) (evs []AuditEvent, consumed int, err error) {
	for {
		i := bytes.IndexByte(data[consumed:], '\n')
		if i < 0 {
			return evs, consumed, nil
		}
		line := bytes.TrimSpace(data[consumed : consumed+i])
		if len(line) > 0 {
			var l auditLine
			err := json.Unmarshal(line, &l)
			if err != nil {
				if j := bytes.LastIndex(line, eventStart); j > 0 {
					err = json.Unmarshal(line[j:], &l)
				}
			}
			if err != nil {
				return evs, consumed, fmt.Errorf("cluster: audit log: %q: %w", line, err)
			}
			if l.Kind == "Event" && l.Stage == "ResponseComplete" {
				evs = append(evs, l.event())
			}
		}
		consumed += i + 1
	}
}

func (l *auditLine) event() AuditEvent {
	ev := AuditEvent{
		Verb:            l.Verb,
		User:            l.User.Username,
		RequestReceived: l.RequestReceivedTimestamp,
		StageTimestamp:  l.StageTimestamp,
	}
	if r := l.ObjectRef; r != nil {
		ev.Namespace, ev.Name = r.Namespace, r.Name
		ev.APIGroup, ev.APIVersion = r.APIGroup, r.APIVersion
		ev.Resource, ev.Subresource = r.Resource, r.Subresource
	}
	if l.ResponseStatus != nil {
		ev.Code = l.ResponseStatus.Code
	}
	return ev
}
