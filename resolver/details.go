package resolver

import "time"

// Details is what a sandbox's object says beyond routing, for views such
// as the dashboard: kept in the resolver's cache from the same watch, so a
// view reads it without asking the API server. Everything is bounded (see
// the Max constants); Cut says something was left out.
type Details struct {
	// Created is the object's creationTimestamp.
	Created time.Time
	// Labels are the object's labels, sorted by key.
	Labels []Label
	// Conditions are status.conditions in the object's order: type,
	// status and reason (messages and times are left out: they make every
	// object's conditions unique, and the cache shares equal ones).
	Conditions []Condition
	// Ports are the container ports declared in spec.podTemplate.
	Ports []Port
	// Pod is the name of the pod that serves the sandbox (or, while it
	// starts, the one that will), empty when none.
	Pod string
	// Cut says labels, conditions or ports were over their bounds, or
	// a value over MaxDetailValue, and some are missing or clipped.
	Cut bool
}

// Label is one label of an object.
type Label struct{ Key, Value string }

// Condition is one status condition, without its message and times.
type Condition struct{ Type, Status, Reason string }

// Port is a container port of a sandbox's pod template.
type Port struct {
	Container, Name string
	Number          int32
	Protocol        string
}

// Bounds of Details: an object may carry more, the cache does not.
const (
	MaxDetailLabels     = 32
	MaxDetailConditions = 8
	MaxDetailPorts      = 16
	// MaxDetailValue bounds each string kept: a label key is at most 317
	// bytes (a prefix of 253, a slash, a name of 63) and a value 63, so
	// labels are kept whole; reasons and container names are free text.
	MaxDetailValue = 317
)
