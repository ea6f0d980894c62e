package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// deployDir is the repository's deploy/ directory, seen from this package.
const deployDir = "../../deploy"

// chartsDir holds the Helm charts (helm_test.go), which are not plain
// manifests; chartDir is the router's chart.
var (
	chartsDir = filepath.Join(deployDir, "helm")
	chartDir  = filepath.Join(chartsDir, "sandbox-router")
)

// object is one manifest document.
type object struct {
	source string // file#document, for messages
	m      map[string]any
}

func (o *object) str(path ...string) string {
	var cur any = o.m
	for _, p := range path {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

func (o *object) kind() string       { return o.str("kind") }
func (o *object) apiVersion() string { return o.str("apiVersion") }
func (o *object) name() string       { return o.str("metadata", "name") }
func (o *object) namespace() string  { return o.str("metadata", "namespace") }

// group and version split apiVersion ("v1" is the core group "").
func (o *object) group() string {
	g, _, ok := strings.Cut(o.apiVersion(), "/")
	if !ok {
		return ""
	}
	return g
}

func (o *object) version() string {
	av := o.apiVersion()
	if _, v, ok := strings.Cut(av, "/"); ok {
		return v
	}
	return av
}

// id is how kustomize tells objects apart.
func (o *object) id() string {
	return o.group() + "/" + o.kind() + " " + o.namespace() + "/" + o.name()
}

// clusterScoped lists the cluster-scoped kinds that occur under deploy/
// (kustomize's namespace field leaves them alone). Add a kind here when a
// manifest brings a new one.
var clusterScoped = map[string]bool{
	"Namespace":                true,
	"ClusterRole":              true,
	"ClusterRoleBinding":       true,
	"CustomResourceDefinition": true,
}

// decodeDocuments reads every YAML document of a file. Empty documents are
// skipped; every other one must be a mapping with apiVersion, kind and
// (except for a Kustomization) metadata.name.
func decodeDocuments(path string) ([]*object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeYAML(data, path)
}

// decodeYAML is decodeDocuments for the bytes of a file (or a command's
// output) named path in messages.
func decodeYAML(data []byte, path string) ([]*object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*object
	for doc := 1; ; doc++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		src := fmt.Sprintf("%s#%d", path, doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if m == nil {
			continue
		}
		o := &object{source: src, m: m}
		if o.apiVersion() == "" || o.kind() == "" {
			return nil, fmt.Errorf("%s: apiVersion and kind are required", src)
		}
		if o.kind() != "Kustomization" && o.name() == "" {
			return nil, fmt.Errorf("%s: metadata.name is required", src)
		}
		out = append(out, o)
	}
}

// kustomization is the part of kustomize's Kustomization file that the
// manifests use. Decoding is strict: a field outside it fails the tests,
// so teach render the field before using it.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Patches    []struct {
		Patch  string `yaml:"patch"`
		Target struct {
			Group     string `yaml:"group"`
			Version   string `yaml:"version"`
			Kind      string `yaml:"kind"`
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		} `yaml:"target"`
	} `yaml:"patches"`
}

func readKustomization(dir string) (*kustomization, string, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, path, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var k kustomization
	if err := dec.Decode(&k); err != nil {
		return nil, path, fmt.Errorf("%s: %w", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, path, fmt.Errorf("%s: want apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization", path)
	}
	return &k, path, nil
}

// render builds the kustomization in dir the way kustomize build does, for
// the features the manifests use: resources (files, and directories with a
// kustomization), patches with a target (RFC 6902 add/replace/remove, or a
// strategic-merge "$patch: delete"), then the namespace field. It is
// stricter than kustomize where a mistake would otherwise go unnoticed: a
// patch must match an object, and a file beside a kustomization must be
// one of its resources.
func render(dir string) ([]*object, error) {
	k, kfile, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	if err := checkAllListed(dir, k, kfile); err != nil {
		return nil, err
	}
	var objs []*object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", kfile, r, err)
		}
		var more []*object
		if fi.IsDir() {
			more, err = render(p)
		} else {
			more, err = decodeDocuments(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for i, p := range k.Patches {
		tg := p.Target
		var targets []*object
		for _, o := range objs {
			if (tg.Group == "" || tg.Group == o.group()) && (tg.Version == "" || tg.Version == o.version()) &&
				(tg.Kind == "" || tg.Kind == o.kind()) && (tg.Name == "" || tg.Name == o.name()) &&
				(tg.Namespace == "" || tg.Namespace == o.namespace()) {
				targets = append(targets, o)
			}
		}
		if tg.Kind == "" || tg.Name == "" || len(targets) == 0 {
			return nil, fmt.Errorf("%s: patch %d: its target (kind and name required) matches no object", kfile, i)
		}
		if objs, err = applyPatch(objs, targets, p.Patch); err != nil {
			return nil, fmt.Errorf("%s: patch %d: %w", kfile, i, err)
		}
	}
	if k.Namespace != "" {
		for _, o := range objs {
			setNamespace(o, k.Namespace)
		}
	}
	seen := map[string]string{}
	for _, o := range objs {
		if prev, dup := seen[o.id()]; dup {
			return nil, fmt.Errorf("%s: %s comes from both %s and %s", kfile, o.id(), prev, o.source)
		}
		seen[o.id()] = o.source
	}
	return objs, nil
}

// checkAllListed fails when a manifest file beside kustomization.yaml is
// not one of its resources (forgotten, so never deployed).
func checkAllListed(dir string, k *kustomization, kfile string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || n == "kustomization.yaml" || (filepath.Ext(n) != ".yaml" && filepath.Ext(n) != ".yml") {
			continue
		}
		if !slices.Contains(k.Resources, n) {
			return fmt.Errorf("%s: %s is not listed under resources", kfile, n)
		}
	}
	return nil
}

// setNamespace is kustomize's namespace field for one object: it sets
// metadata.namespace of namespaced objects and the namespace of
// (Cluster)RoleBinding subjects named "default" (its defaultOnly mode), and
// nothing else.
func setNamespace(o *object, ns string) {
	if !clusterScoped[o.kind()] {
		md, _ := o.m["metadata"].(map[string]any)
		md["namespace"] = ns
	}
	if o.kind() == "RoleBinding" || o.kind() == "ClusterRoleBinding" {
		subjects, _ := o.m["subjects"].([]any)
		for _, s := range subjects {
			if sm, _ := s.(map[string]any); sm["name"] == "default" {
				sm["namespace"] = ns
			}
		}
	}
}

// applyPatch applies one inline patch to its targets and returns the
// objects left.
func applyPatch(objs, targets []*object, body string) ([]*object, error) {
	var p any
	if err := yaml.Unmarshal([]byte(body), &p); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	switch p := p.(type) {
	case []any: // RFC 6902
		for _, o := range targets {
			for j, raw := range p {
				op, _ := raw.(map[string]any)
				verb, _ := op["op"].(string)
				path, _ := op["path"].(string)
				if err := jsonPatch(o.m, verb, path, op["value"]); err != nil {
					return nil, fmt.Errorf("%s: operation %d (%s %s): %w", o.source, j, verb, path, err)
				}
			}
		}
		return objs, nil
	case map[string]any: // strategic merge: only whole-object deletion is used
		sm := &object{m: p}
		if p["$patch"] != "delete" || len(p) != 4 {
			return nil, errors.New(`a strategic-merge patch must be exactly "$patch: delete" with apiVersion, kind and metadata.name (render knows no other)`)
		}
		for _, o := range targets {
			if o.apiVersion() != sm.apiVersion() || o.kind() != sm.kind() || o.name() != sm.name() {
				return nil, fmt.Errorf("delete patch names %s %s but its target matched %s", sm.kind(), sm.name(), o.id())
			}
		}
		return slices.DeleteFunc(objs, func(o *object) bool { return slices.Contains(targets, o) }), nil
	}
	return nil, errors.New("a patch must be a list of RFC 6902 operations or a strategic-merge object")
}

// jsonPatch applies one RFC 6902 add, replace or remove at an RFC 6901
// pointer inside doc.
func jsonPatch(doc map[string]any, op, pointer string, value any) error {
	if op != "add" && op != "replace" && op != "remove" {
		return fmt.Errorf("op %q not supported (add, replace, remove)", op)
	}
	if !strings.HasPrefix(pointer, "/") {
		return errors.New("path must start with /")
	}
	toks := strings.Split(pointer[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	_, err := patchAt(doc, toks, op, value)
	return err
}

// patchAt applies the operation at toks below node and returns the node
// (a new slice header when an array grew or shrank).
func patchAt(node any, toks []string, op string, value any) (any, error) {
	tok := toks[0]
	last := len(toks) == 1
	switch n := node.(type) {
	case map[string]any:
		child, exists := n[tok]
		if last {
			switch {
			case op == "add":
				n[tok] = value
			case !exists:
				return nil, fmt.Errorf("%q does not exist", tok)
			case op == "replace":
				n[tok] = value
			default:
				delete(n, tok)
			}
			return n, nil
		}
		if !exists {
			return nil, fmt.Errorf("%q does not exist", tok)
		}
		c, err := patchAt(child, toks[1:], op, value)
		if err != nil {
			return nil, err
		}
		n[tok] = c
		return n, nil
	case []any:
		if last && tok == "-" && op == "add" {
			return append(n, value), nil
		}
		i, err := strconv.Atoi(tok)
		if err != nil || i < 0 || i > len(n) || (i == len(n) && !(last && op == "add")) {
			return nil, fmt.Errorf("index %q out of range (%d items)", tok, len(n))
		}
		if !last {
			c, err := patchAt(n[i], toks[1:], op, value)
			if err != nil {
				return nil, err
			}
			n[i] = c
			return n, nil
		}
		switch op {
		case "add":
			return slices.Insert(n, i, value), nil
		case "replace":
			n[i] = value
			return n, nil
		default:
			return slices.Delete(n, i, i+1), nil
		}
	}
	return nil, fmt.Errorf("%q: parent is not an object or array", tok)
}
