package kube

import (
	"net/netip"
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestReadyAddrs(t *testing.T) {
	http, admin := "http", "admin"
	p8080, p9090 := int32(8080), int32(9090)
	yes, no := true, false
	slices1 := []any{
		&discoveryv1.EndpointSlice{
			Ports: []discoveryv1.EndpointPort{{Name: &http, Port: &p8080}, {Name: &admin, Port: &p9090}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
				{Addresses: []string{"10.0.0.1"}}, // ready unknown counts as ready
				{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
				{Addresses: []string{"not-an-ip"}},
			},
		},
		&discoveryv1.EndpointSlice{ // the same endpoint in a second slice
			Ports:     []discoveryv1.EndpointPort{{Name: &http, Port: &p8080}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.2"}}},
		},
		&discoveryv1.EndpointSlice{ // no port of that name
			Ports:     []discoveryv1.EndpointPort{{Name: &admin, Port: &p9090}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.9"}}},
		},
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:8080")}
	if got := readyAddrs(slices1, "http"); !slices.Equal(got, want) {
		t.Fatalf("readyAddrs = %v, want %v", got, want)
	}
	// Without a port name, only a slice with a single port counts.
	if got := readyAddrs(slices1, ""); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:8080"), netip.MustParseAddrPort("10.0.0.9:9090")}) {
		t.Fatalf("readyAddrs without a port name = %v", got)
	}
}
