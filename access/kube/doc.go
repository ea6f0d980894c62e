// Package kube answers the access layer's two questions with the
// Kubernetes API: who a bearer token is (a TokenReview) and whether an
// identity may reach a sandbox (a SubjectAccessReview of verb "create" on
// sandboxes/proxy). It only asks; caching and the answers to clients are
// the access package's.
//
// The router's own identity needs "create" on tokenreviews
// (authentication.k8s.io) and subjectaccessreviews (authorization.k8s.io),
// as the built-in system:auth-delegator role grants: deploy/rbac/access.
package kube
