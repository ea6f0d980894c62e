package kube

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

func TestServedVersions(t *testing.T) {
	res := func(gv string, names ...string) *metav1.APIResourceList {
		l := &metav1.APIResourceList{GroupVersion: gv}
		for _, n := range names {
			l.APIResources = append(l.APIResources, metav1.APIResource{Name: n, Namespaced: true})
		}
		return l
	}
	tests := []struct {
		name      string
		resources []*metav1.APIResourceList
		want      [3]string
	}{
		{"nothing served", nil, [3]string{}},
		{"other groups only", []*metav1.APIResourceList{res("agents.x-k8s.io/v1beta1", "sandboxes")}, [3]string{}},
		{"v1beta1, all", []*metav1.APIResourceList{res(Group+"/v1beta1", "sandboxclaims", "sandboxclaims/status", "sandboxtemplates", "sandboxwarmpools")},
			[3]string{"v1beta1", "v1beta1", "v1beta1"}},
		{"claims only", []*metav1.APIResourceList{res(Group+"/v1beta1", "sandboxclaims")}, [3]string{"", "", "v1beta1"}},
		{"v1beta1 preferred, v1alpha1 fills in", []*metav1.APIResourceList{
			res(Group+"/v1alpha1", "sandboxclaims", "sandboxtemplates", "sandboxwarmpools"),
			res(Group+"/v1beta1", "sandboxclaims"),
		}, [3]string{"v1alpha1", "v1alpha1", "v1beta1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := &fake.FakeDiscovery{Fake: &clienttesting.Fake{Resources: tt.resources}}
			got, err := servedVersions(dc)
			if err != nil || got != tt.want {
				t.Errorf("got %v %v, want %v", got, err, tt.want)
			}
		})
	}
}
