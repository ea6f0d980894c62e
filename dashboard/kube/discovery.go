package kube

import (
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

// versions are the extensions API versions the catalog reads, preferred
// first: upstream agent-sandbox v1.0.1 serves v1beta1 only; earlier
// releases served v1alpha1.
var versions = [...]string{"v1beta1", "v1alpha1"}

// kindInfo names a kind's resource.
type kindInfo struct {
	kind     Kind
	resource string
}

// kinds are the kinds the catalog reads, in the order Kinds reports them.
var kinds = [...]kindInfo{
	{KindTemplate, "sandboxtemplates"},
	{KindWarmPool, "sandboxwarmpools"},
	{KindClaim, "sandboxclaims"},
}

// servedVersions asks discovery which version of each kind to watch: the
// first of versions that serves it, or "" when none does. A group version
// the API server does not serve at all (NotFound) serves nothing; any
// other error is returned.
func servedVersions(dc discovery.DiscoveryInterface) ([len(kinds)]string, error) {
	var out [len(kinds)]string
	for _, v := range versions {
		list, err := dc.ServerResourcesForGroupVersion(Group + "/" + v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return out, err
		}
		for i, k := range kinds {
			if out[i] == "" && slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == k.resource }) {
				out[i] = v
			}
		}
	}
	return out, nil
}
