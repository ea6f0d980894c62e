package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const crdPath = "../../deploy/crds/agents.x-k8s.io_sandboxes.yaml"

// api is a tiny REST client for the test: bearer token, JSON in and out.
type api struct {
	t      *testing.T
	c      *Cluster
	client *http.Client
	token  string
}

// do sends body (marshalled to JSON unless it is []byte) and returns the
// status code and the response body. Transport errors are returned, not
// fatal, so a test can expect them.
func (a *api) do(method, path, contentType string, body any) (int, []byte, error) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				a.t.Fatalf("marshal: %v", err)
			}
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.c.URL+path, r)
	if err != nil {
		a.t.Fatalf("request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// must is do that fails the test unless the answer has status want, and
// decodes the body into out (if not nil).
func (a *api) must(want int, method, path, contentType string, body, out any) {
	a.t.Helper()
	code, data, err := a.do(method, path, contentType, body)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	if code != want {
		a.t.Fatalf("%s %s: got %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: decode: %v: %s", method, path, err, data)
		}
	}
}

// eventually polls cond until it returns true or the deadline passes; cond
// reports what it last saw for the failure message.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type sandbox struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		UID             string `json:"uid"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec   map[string]any `json:"spec"`
	Status struct {
		PodIPs      []string `json:"podIPs"`
		ServiceFQDN string   `json:"serviceFQDN"`
		Service     string   `json:"service"`
		Conditions  []struct {
			Type, Status, Reason, Message, LastTransitionTime string
		} `json:"conditions"`
	} `json:"status"`
}

func TestClusterStartsAndServesSandboxes(t *testing.T) {
	c := Start(t)
	client, err := c.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseIdleConnections()
	admin := &api{t: t, c: c, client: client, token: c.AdminToken}
	router := &api{t: t, c: c, client: client, token: c.RouterToken}

	if _, err := os.Stat(c.KubeconfigPath); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}

	// Install the CRD from the YAML manifest, sent as JSON.
	raw, err := os.ReadFile(crdPath)
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatalf("parse %s: %v", crdPath, err)
	}
	const crdURL = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	admin.must(http.StatusCreated, http.MethodPost, crdURL, "application/json", crd, nil)
	eventually(t, "CRD Established", 30*time.Second, func() (bool, string) {
		var got struct {
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		}
		admin.must(http.StatusOK, http.MethodGet, crdURL+"/sandboxes.agents.x-k8s.io", "", nil, &got)
		for _, cond := range got.Status.Conditions {
			if cond.Type == "Established" && cond.Status == "True" {
				return true, ""
			}
		}
		return false, fmt.Sprint(got.Status.Conditions)
	})
	waitServed(t, admin)

	const beta = "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes"
	const alpha = "/apis/agents.x-k8s.io/v1alpha1/namespaces/default/sandboxes"

	// Create through v1beta1 without a spec: the schema defaults
	// spec.operatingMode to Running.
	var created sandbox
	admin.must(http.StatusCreated, http.MethodPost, beta, "application/json", map[string]any{
		"apiVersion": "agents.x-k8s.io/v1beta1",
		"kind":       "Sandbox",
		"metadata":   map[string]any{"name": "demo"},
	}, &created)
	if created.Spec["operatingMode"] != "Running" {
		t.Errorf("v1beta1 spec.operatingMode defaulted to %v, want Running", created.Spec["operatingMode"])
	}

	// The enum is enforced.
	admin.must(http.StatusUnprocessableEntity, http.MethodPost, beta, "application/json", map[string]any{
		"apiVersion": "agents.x-k8s.io/v1beta1",
		"kind":       "Sandbox",
		"metadata":   map[string]any{"name": "bad-mode"},
		"spec":       map[string]any{"operatingMode": "Paused"},
	}, nil)

	// The same object reads back through v1alpha1.
	var asAlpha sandbox
	admin.must(http.StatusOK, http.MethodGet, alpha+"/demo", "", nil, &asAlpha)
	if asAlpha.APIVersion != "agents.x-k8s.io/v1alpha1" || asAlpha.Metadata.UID != created.Metadata.UID {
		t.Errorf("v1alpha1 read: apiVersion %q uid %q, want agents.x-k8s.io/v1alpha1 uid %q",
			asAlpha.APIVersion, asAlpha.Metadata.UID, created.Metadata.UID)
	}

	// Status is written only through the status subresource.
	now := time.Now().UTC().Format(time.RFC3339)
	status := map[string]any{"status": map[string]any{
		"podIPs":      []string{"127.0.0.2"},
		"serviceFQDN": "demo.default.svc.cluster.local",
		"service":     "demo",
		"conditions": []map[string]any{{
			"type": "Ready", "status": "True", "reason": "PodReady",
			"message": "pod is ready", "lastTransitionTime": now,
		}},
	}}
	var patched sandbox
	admin.must(http.StatusOK, http.MethodPatch, beta+"/demo/status", "application/merge-patch+json", status, &patched)
	if len(patched.Status.PodIPs) != 1 || patched.Status.PodIPs[0] != "127.0.0.2" {
		t.Errorf("status.podIPs after patch = %v", patched.Status.PodIPs)
	}
	// A patch of the main resource does not change status.
	var mainPatched sandbox
	admin.must(http.StatusOK, http.MethodPatch, beta+"/demo", "application/merge-patch+json",
		map[string]any{"status": map[string]any{"podIPs": []string{"10.0.0.9"}}}, &mainPatched)
	if len(mainPatched.Status.PodIPs) != 1 || mainPatched.Status.PodIPs[0] != "127.0.0.2" {
		t.Errorf("main-resource patch changed status.podIPs to %v", mainPatched.Status.PodIPs)
	}

	// The "router" user is not an admin: RBAC denies it until granted.
	router.must(http.StatusForbidden, http.MethodGet, beta, "", nil, nil)

	// Restart the API server; the object lives in etcd and survives.
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.do(http.MethodGet, beta+"/demo", "", nil); err == nil {
		t.Fatal("API server still answers after StopAPIServer")
	}
	if err := c.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitServed(t, admin)
	var after sandbox
	admin.must(http.StatusOK, http.MethodGet, beta+"/demo", "", nil, &after)
	if after.Metadata.UID != created.Metadata.UID {
		t.Errorf("uid after restart = %q, want %q", after.Metadata.UID, created.Metadata.UID)
	}
	if len(after.Status.PodIPs) != 1 || after.Status.PodIPs[0] != "127.0.0.2" ||
		after.Status.ServiceFQDN != "demo.default.svc.cluster.local" || after.Status.Service != "demo" ||
		len(after.Status.Conditions) != 1 || after.Status.Conditions[0].Type != "Ready" ||
		after.Status.Conditions[0].LastTransitionTime != now {
		t.Errorf("status after restart = %+v", after.Status)
	}
}

// waitServed waits until the Sandbox resource answers lists in both
// versions (the CRD handler can lag Established by a moment, and after a
// restart it waits for the CRD informer).
func waitServed(t *testing.T, a *api) {
	t.Helper()
	for _, v := range []string{"v1alpha1", "v1beta1"} {
		path := "/apis/agents.x-k8s.io/" + v + "/namespaces/default/sandboxes"
		eventually(t, path+" served", 30*time.Second, func() (bool, string) {
			code, body, err := a.do(http.MethodGet, path, "", nil)
			if err != nil {
				return false, err.Error()
			}
			return code == http.StatusOK, string(body)
		})
	}
}
