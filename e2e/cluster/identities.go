package cluster

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The identities the e2e tests make: namespaces, ServiceAccounts with
// real tokens from the TokenRequest API, and namespaced RBAC grants,
// created as admin through cs. The tests then act as those identities
// against the router or the API server, so what RBAC allows is decided
// by the real authorizer, never by a stub.

// tokenLifetime is the life of the tokens ServiceAccountToken requests:
// longer than any test, so that no token expires under one.
const tokenLifetime = int64(3600)

// allowedPoll is how often WaitAllowed asks again: the authorizer's RBAC
// cache follows its watch within milliseconds, and there is no watch of a
// SubjectAccessReview's answer to wait on instead.
const allowedPoll = 20 * time.Millisecond

// CreateNamespaces creates each namespace, in order.
func CreateNamespaces(ctx context.Context, cs kubernetes.Interface, names ...string) error {
	for _, ns := range names {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	return nil
}

// CreateServiceAccount creates the ServiceAccount ns/name and returns a
// token for it (ServiceAccountToken).
func CreateServiceAccount(ctx context.Context, cs kubernetes.Interface, ns, name string, audiences ...string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("service account %s/%s: %w", ns, name, err)
	}
	return ServiceAccountToken(ctx, cs, ns, name, audiences...)
}

// ServiceAccountToken returns a one-hour token of the ServiceAccount
// ns/name from the TokenRequest API, for audiences (none: the API
// server's own, which a TokenReview without audiences accepts): the
// bearer credential a workload in a real cluster would present.
func ServiceAccountToken(ctx context.Context, cs kubernetes.Interface, ns, name string, audiences ...string) (string, error) {
	hour := tokenLifetime
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountSubject is the RoleBinding subject of the ServiceAccount
// ns/name.
func ServiceAccountSubject(ns, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

// ServiceAccountUser and ServiceAccountGroups are the user name and the
// groups the API server's authenticator gives a token of the
// ServiceAccount ns/name: what a SubjectAccessReview must name to be
// answered as a request with that token would be.
func ServiceAccountUser(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}

// ServiceAccountGroups: see ServiceAccountUser.
func ServiceAccountGroups(ns string) []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

// Grant creates the Role name in ns with rules, and the RoleBinding name
// that binds it to subjects. It returns once both are written, which is
// a moment before the authorizer applies them: WaitAllowed waits for that.
func Grant(ctx context.Context, cs kubernetes.Interface, ns, name string, rules []rbacv1.PolicyRule, subjects ...rbacv1.Subject) error {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("role %s/%s: %w", ns, name, err)
	}
	return BindRole(ctx, cs, ns, name, name, subjects...)
}

// BindRole creates the RoleBinding name in ns that binds the Role role of
// ns to subjects, for a Role that several identities share.
func BindRole(ctx context.Context, cs kubernetes.Interface, ns, name, role string, subjects ...rbacv1.Subject) error {
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role}}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("role binding %s/%s: %w", ns, name, err)
	}
	return nil
}

// WaitAllowed waits until a SubjectAccessReview of attrs for user in
// groups answers want, or ctx ends (then the error names the last answer
// and the last review error). A Role or binding takes effect a moment
// after it is written, so a test that grants and then acts waits here
// first, and its first request sees the grant, never a transient 403. On
// this single API server the review is answered from the same RBAC cache
// that authorizes requests. A review that fails is asked again.
func WaitAllowed(ctx context.Context, cs kubernetes.Interface, user string, groups []string, attrs authorizationv1.ResourceAttributes, want bool) error {
	tick := time.NewTicker(allowedPoll)
	defer tick.Stop()
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups, ResourceAttributes: &attrs}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("user %s: %s %s/%s.%s %q in %q: still not allowed=%v: %w (last review error: %v)",
				user, attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Group, attrs.Name, attrs.Namespace, want, ctx.Err(), err)
		case <-tick.C:
		}
	}
}
