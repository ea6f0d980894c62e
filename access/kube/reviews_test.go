package kube

import (
	"context"
	"errors"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sandbox-router/sandbox-router/access"
	"github.com/sandbox-router/sandbox-router/resolver"
)

// Unit tests of what is asked and how the answers are read; e2e/access
// runs the same code against a real API server.

func TestTokenReviewer(t *testing.T) {
	cases := []struct {
		name      string
		audiences []string
		status    authenticationv1.TokenReviewStatus
		err       error
		wantOK    bool
		wantErr   bool
	}{
		{name: "authenticated", status: authenticationv1.TokenReviewStatus{Authenticated: true,
			User: authenticationv1.UserInfo{Username: "system:serviceaccount:a:b", UID: "u1", Groups: []string{"g"},
				Extra: map[string]authenticationv1.ExtraValue{"k": {"v"}}}}, wantOK: true},
		{name: "refused", status: authenticationv1.TokenReviewStatus{Authenticated: false, Error: "invalid"}},
		{name: "audience matched", audiences: []string{"router"},
			status: authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"router"}}, wantOK: true},
		{name: "audience ignored by the authenticator", audiences: []string{"router"},
			status: authenticationv1.TokenReviewStatus{Authenticated: true}},
		{name: "unreachable", err: errors.New("connection refused"), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			var asked *authenticationv1.TokenReview
			cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				asked = a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
				if tc.err != nil {
					return true, nil, tc.err
				}
				out := asked.DeepCopy()
				out.Status = tc.status
				return true, out, nil
			})
			id, ok, err := NewTokenReviewer(cs.AuthenticationV1().TokenReviews(), tc.audiences).AuthenticateToken(context.Background(), "tok")
			if ok != tc.wantOK || (err != nil) != tc.wantErr {
				t.Fatalf("ok %v err %v, want ok %v err %v", ok, err, tc.wantOK, tc.wantErr)
			}
			if asked.Spec.Token != "tok" || len(asked.Spec.Audiences) != len(tc.audiences) {
				t.Fatalf("asked %+v", asked.Spec)
			}
			if tc.name == "authenticated" && (id.User != "system:serviceaccount:a:b" || id.UID != "u1" || id.Groups[0] != "g" || id.Extra["k"][0] != "v") {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

func TestAccessReviewer(t *testing.T) {
	cases := []struct {
		status authorizationv1.SubjectAccessReviewStatus
		want   bool
	}{
		{authorizationv1.SubjectAccessReviewStatus{Allowed: true}, true},
		{authorizationv1.SubjectAccessReviewStatus{}, false},
		{authorizationv1.SubjectAccessReviewStatus{Denied: true}, false},
		{authorizationv1.SubjectAccessReviewStatus{Allowed: true, EvaluationError: "webhook timed out"}, true},
	}
	for _, tc := range cases {
		cs := fake.NewClientset()
		var asked *authorizationv1.SubjectAccessReview
		cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			asked = a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
			out := asked.DeepCopy()
			out.Status = tc.status
			return true, out, nil
		})
		id := access.Identity{User: "u", UID: "1", Groups: []string{"g"}, Extra: map[string][]string{"k": {"v"}}}
		got, err := NewAccessReviewer(cs.AuthorizationV1().SubjectAccessReviews()).MayReach(context.Background(), id, resolver.Key{Namespace: "ns", Name: "sb"})
		if err != nil || got != tc.want {
			t.Fatalf("%+v: %v %v, want %v", tc.status, got, err, tc.want)
		}
		ra := asked.Spec.ResourceAttributes
		if asked.Spec.User != "u" || asked.Spec.UID != "1" || asked.Spec.Groups[0] != "g" || asked.Spec.Extra["k"][0] != "v" ||
			ra.Namespace != "ns" || ra.Name != "sb" || ra.Verb != "create" || ra.Group != "agents.x-k8s.io" || ra.Resource != "sandboxes" || ra.Subresource != "proxy" {
			t.Fatalf("asked %+v %+v", asked.Spec, ra)
		}
	}
}

func TestAccessReviewerMayView(t *testing.T) {
	cs := fake.NewClientset()
	var asked *authorizationv1.SubjectAccessReview
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		asked = a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		out := asked.DeepCopy()
		out.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true}
		return true, out, nil
	})
	id := access.Identity{User: "u", Groups: []string{"g"}}
	q := access.ViewQuery{Verb: access.ViewList, Group: "extensions.agents.x-k8s.io", Resource: "sandboxclaims", Namespace: "ns"}
	got, err := NewAccessReviewer(cs.AuthorizationV1().SubjectAccessReviews()).MayView(context.Background(), id, q)
	if err != nil || !got {
		t.Fatalf("%v %v", got, err)
	}
	ra := asked.Spec.ResourceAttributes
	if asked.Spec.User != "u" || ra.Verb != "list" || ra.Group != q.Group || ra.Resource != "sandboxclaims" || ra.Namespace != "ns" || ra.Name != "" || ra.Subresource != "" {
		t.Fatalf("asked %+v %+v", asked.Spec, ra)
	}
}
