// Tests of the Kubernetes manifests, as far as a machine without a cluster
// allows: every document parses and has a known kind, the objects refer to
// each other consistently (selectors, services, volumes, ports, config
// keys), the store layout keeps a quorum, and every flag passed to flashd
// exists in the binary.
package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/flashd/flashd/deploy/internal/binflags"
)

func TestMain(m *testing.M) {
	code := m.Run()
	binflags.Cleanup()
	os.Exit(code)
}

type object = map[string]any

type doc struct {
	file string
	obj  object
}

func (d doc) kind() string { return str(d.obj, "kind") }
func (d doc) name() string { return str(d.obj, "metadata", "name") }
func (d doc) String() string {
	return fmt.Sprintf("%s %s/%s", d.file, d.kind(), d.name())
}

// get walks a path of map keys.
func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(object)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func str(o any, path ...string) string {
	s, _ := get(o, path...).(string)
	return s
}

func list(o any, path ...string) []any {
	l, _ := get(o, path...).([]any)
	return l
}

func labels(o any, path ...string) map[string]string {
	out := map[string]string{}
	m, _ := get(o, path...).(object)
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func load(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var docs []doc
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o != nil {
				docs = append(docs, doc{file: f, obj: o})
			}
		}
	}
	return docs
}

var apiVersions = map[string]string{
	"Namespace": "v1", "ConfigMap": "v1", "Service": "v1",
	"StatefulSet": "apps/v1", "Deployment": "apps/v1",
	"PodDisruptionBudget": "policy/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
}

func TestManifestsParseWithKnownKinds(t *testing.T) {
	docs := load(t)
	seen := map[string]bool{}
	for _, d := range docs {
		want, ok := apiVersions[d.kind()]
		switch {
		case !ok:
			t.Errorf("%v: unexpected kind", d)
		case str(d.obj, "apiVersion") != want:
			t.Errorf("%v: apiVersion %q, want %q", d, str(d.obj, "apiVersion"), want)
		case d.name() == "":
			t.Errorf("%v: no name", d)
		}
		key := d.kind() + "/" + d.name()
		if seen[key] {
			t.Errorf("%v: defined twice", d)
		}
		seen[key] = true
	}
	for _, k := range []string{"StatefulSet", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Service"} {
		if !slices.ContainsFunc(docs, func(d doc) bool { return d.kind() == k }) {
			t.Errorf("no %s", k)
		}
	}
	// The kustomization lists every manifest file.
	var kz object
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &kz); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var resources []string
	for _, r := range list(kz, "resources") {
		resources = append(resources, fmt.Sprint(r))
	}
	for _, d := range docs {
		if !slices.Contains(resources, d.file) {
			t.Errorf("kustomization.yaml does not list %s", d.file)
		}
	}
}

func workloads(docs []doc) []doc {
	var out []doc
	for _, d := range docs {
		if d.kind() == "StatefulSet" || d.kind() == "Deployment" {
			out = append(out, d)
		}
	}
	return out
}

func byKind(docs []doc, kind string) map[string]doc {
	out := map[string]doc{}
	for _, d := range docs {
		if d.kind() == kind {
			out[d.name()] = d
		}
	}
	return out
}

var varRef = regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`)

func TestObjectsReferToEachOther(t *testing.T) {
	docs := load(t)
	services, configMaps := byKind(docs, "Service"), byKind(docs, "ConfigMap")
	for _, w := range workloads(docs) {
		podLabels := labels(w.obj, "spec", "template", "metadata", "labels")
		if !matches(labels(w.obj, "spec", "selector", "matchLabels"), podLabels) {
			t.Errorf("%v: selector does not match its pods' labels", w)
		}
		for _, c := range list(w.obj, "spec", "template", "spec", "topologySpreadConstraints") {
			if !matches(labels(c, "labelSelector", "matchLabels"), podLabels) {
				t.Errorf("%v: a spread constraint does not select its own pods", w)
			}
		}
		if w.kind() == "StatefulSet" {
			svc, ok := services[str(w.obj, "spec", "serviceName")]
			switch {
			case !ok:
				t.Errorf("%v: serviceName %q is no Service", w, str(w.obj, "spec", "serviceName"))
			case str(svc.obj, "spec", "clusterIP") != "None":
				t.Errorf("%v: its service %s is not headless", w, svc.name())
			case !matches(labels(svc.obj, "spec", "selector"), podLabels):
				t.Errorf("%v: its service %s does not select its pods", w, svc.name())
			}
		}
		volumes := map[string]bool{}
		for _, v := range list(w.obj, "spec", "template", "spec", "volumes") {
			volumes[str(v, "name")] = true
		}
		for _, v := range list(w.obj, "spec", "volumeClaimTemplates") {
			volumes[str(v, "metadata", "name")] = true
		}
		for _, c := range list(w.obj, "spec", "template", "spec", "containers") {
			checkContainer(t, w, c, volumes, configMaps)
		}
	}
	for _, svc := range services {
		sel := labels(svc.obj, "spec", "selector")
		var ports []string
		for _, w := range workloads(docs) {
			if matches(sel, labels(w.obj, "spec", "template", "metadata", "labels")) {
				for _, c := range list(w.obj, "spec", "template", "spec", "containers") {
					for _, p := range list(c, "ports") {
						ports = append(ports, str(p, "name"))
					}
				}
			}
		}
		if len(ports) == 0 {
			t.Errorf("%v selects no pods", svc)
		}
		for _, p := range list(svc.obj, "spec", "ports") {
			if target := fmt.Sprint(get(p, "targetPort")); !slices.Contains(ports, target) {
				t.Errorf("%v: targetPort %s is no named port of its pods", svc, target)
			}
		}
	}
	for _, pdb := range byKind(docs, "PodDisruptionBudget") {
		sel := labels(pdb.obj, "spec", "selector", "matchLabels")
		if !slices.ContainsFunc(workloads(docs), func(w doc) bool {
			return matches(sel, labels(w.obj, "spec", "template", "metadata", "labels"))
		}) {
			t.Errorf("%v selects no pods", pdb)
		}
	}
	deployments := byKind(docs, "Deployment")
	for _, hpa := range byKind(docs, "HorizontalPodAutoscaler") {
		target := str(hpa.obj, "spec", "scaleTargetRef", "name")
		d, ok := deployments[target]
		if !ok || str(hpa.obj, "spec", "scaleTargetRef", "kind") != "Deployment" {
			t.Errorf("%v: target %s is no Deployment", hpa, target)
			continue
		}
		for _, c := range list(d.obj, "spec", "template", "spec", "containers") {
			if get(c, "resources", "requests", "cpu") == nil {
				t.Errorf("%v: %s has no CPU request to scale on", hpa, d.name())
			}
		}
	}
}

func checkContainer(t *testing.T, w doc, c any, volumes map[string]bool, configMaps map[string]doc) {
	t.Helper()
	name := fmt.Sprintf("%v container %s", w, str(c, "name"))
	for _, m := range list(c, "volumeMounts") {
		if !volumes[str(m, "name")] {
			t.Errorf("%s: mounts unknown volume %s", name, str(m, "name"))
		}
	}
	ports := map[string]bool{}
	for _, p := range list(c, "ports") {
		ports[str(p, "name")] = true
		ports[fmt.Sprint(get(p, "containerPort"))] = true
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		p := get(c, probe)
		if p == nil {
			t.Errorf("%s: no %s", name, probe)
			continue
		}
		if port := fmt.Sprint(get(p, "grpc", "port")); !ports[port] {
			t.Errorf("%s: %s on port %s, which it does not open", name, probe, port)
		}
	}
	defined := map[string]bool{}
	for _, e := range list(c, "env") {
		defined[str(e, "name")] = true
	}
	for _, ef := range list(c, "envFrom") {
		cm, ok := configMaps[str(ef, "configMapRef", "name")]
		if !ok {
			t.Errorf("%s: envFrom names unknown ConfigMap %s", name, str(ef, "configMapRef", "name"))
			continue
		}
		for k := range get(cm.obj, "data").(object) {
			defined[k] = true
		}
	}
	for _, a := range list(c, "args") {
		for _, m := range varRef.FindAllStringSubmatch(fmt.Sprint(a), -1) {
			if !defined[m[1]] {
				t.Errorf("%s: argument %q uses $(%s), defined nowhere", name, a, m[1])
			}
		}
	}
}

func args(c any) []string {
	var out []string
	for _, a := range list(c, "args") {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// Five voters, one bootstrapping, the rest joining; the disruption budget
// never lets a voluntary disruption take the quorum.
func TestStoreLayoutKeepsAQuorum(t *testing.T) {
	docs := load(t)
	voters, bootstrapping := 0, 0
	storeLabels := map[string]string{}
	for _, w := range byKind(docs, "StatefulSet") {
		replicas := get(w.obj, "spec", "replicas").(int)
		c := list(w.obj, "spec", "template", "spec", "containers")[0]
		a := args(c)
		if a[0] != "store" {
			continue
		}
		storeLabels = labels(w.obj, "spec", "template", "metadata", "labels")
		voters += replicas
		boot := slices.Contains(a, "--bootstrap")
		join := slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--join=") })
		switch {
		case boot && join, !boot && !join:
			t.Errorf("%v: needs exactly one of --bootstrap and --join", w)
		case boot:
			bootstrapping += replicas
		}
		if slices.Contains(a, "--non-voter") {
			t.Errorf("%v: the store voters run --non-voter", w)
		}
		if str(w.obj, "spec", "podManagementPolicy") != "Parallel" {
			t.Errorf("%v: ordered start would wait for a readiness that needs a quorum", w)
		}
	}
	if voters != 5 || bootstrapping != 1 {
		t.Fatalf("%d voters, %d bootstrapping: want 5 and 1", voters, bootstrapping)
	}
	quorum := voters/2 + 1
	for _, pdb := range byKind(docs, "PodDisruptionBudget") {
		if !matches(labels(pdb.obj, "spec", "selector", "matchLabels"), storeLabels) {
			continue
		}
		down, ok := get(pdb.obj, "spec", "maxUnavailable").(int)
		if !ok || voters-down < quorum {
			t.Fatalf("%v: maxUnavailable %v of %d voters may break the quorum of %d", pdb, get(pdb.obj, "spec", "maxUnavailable"), voters, quorum)
		}
		return
	}
	t.Fatal("no disruption budget covers the store nodes")
}

func TestFlagsExistInTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds flashd")
	}
	checked := 0
	for _, w := range workloads(load(t)) {
		for _, c := range list(w.obj, "spec", "template", "spec", "containers") {
			a := args(c)
			bad, err := binflags.Unknown(a[0], a[1:])
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Errorf("%v: flashd %s has no flags %v", w, a[0], bad)
			}
			checked += len(a) - 1
		}
	}
	if checked == 0 {
		t.Fatal("no flag checked")
	}
}
