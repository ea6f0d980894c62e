// Package kube answers the access layer's questions with the Kubernetes
// API: who a bearer token is (a TokenReview), whether an identity may
// reach a sandbox (a SubjectAccessReview of verb "create" on
// sandboxes/proxy), and whether it may list or get the Sandbox API's
// objects (a SubjectAccessReview of that verb, no subresource: the
// dashboard's question). It only asks; caching and the answers to clients
// are the access package's.
//
// The router's own identity needs "create" on tokenreviews
// (authentication.k8s.io) and subjectaccessreviews (authorization.k8s.io),
// as the built-in system:auth-delegator role grants: deploy/rbac/access.
package kube
