// Command kse-k8s-check checks rendered Kubernetes manifests (a YAML stream on stdin, as
// `helm template` or `kustomize build` print it) the way an API server would accept them, as far
// as that is possible without one:
//
//   - every object decodes strictly into the real Go type of its apiVersion/kind (the types of
//     k8s.io/api and of the Prometheus Operator): unknown kinds, unknown or duplicate fields and
//     wrong value types are errors;
//   - object names, label and annotation syntax, port names and numbers, ConfigMap keys and sizes
//     follow the API server's validation rules (from k8s.io/apimachinery);
//   - the objects fit together: workload selectors match their pod templates, probes and Service
//     target ports name ports the containers declare, volume mounts name volumes, requests do
//     not exceed limits, every Service selects a workload, every ServiceMonitor selects a
//     Service by labels and names one of its ports;
//   - every object stays below the 256 KiB annotation limit that `kubectl apply` (client-side)
//     needs for its last-applied-configuration copy.
//
// It prints one line per problem and exits 1, or prints a summary and exits 0. Exit 2 means the
// input could not be read at all.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

// The total size of an object's annotations is limited to 256 KiB; client-side `kubectl apply`
// stores the whole object in one annotation.
const lastAppliedLimit = 256 * 1024

// A ConfigMap (data and binaryData together) is limited to 1 MiB.
const configMapLimit = 1024 * 1024

type workload struct {
	ref     string
	labels  map[string]string
	ports   map[string]int32 // named container ports
	numbers map[int32]bool
	// ConfigMaps the pod mounts and does not mark optional.
	configMaps []string
}

type service struct {
	ref      string
	name     string
	labels   map[string]string
	selector map[string]string
	ports    map[string]bool
}

type checker struct {
	problems       []string
	kinds          map[string]int
	workloads      []workload
	services       []service
	serviceObjects []*corev1.Service
	configMapNames map[string]bool
	monitors       []*monitoringv1.ServiceMonitor
	statefuls      []*appsv1.StatefulSet
}

func (c *checker) add(ref, path, format string, args ...any) {
	where := ref
	if path != "" {
		where += " " + path
	}
	c.problems = append(c.problems, fmt.Sprintf("%s: %s", where, fmt.Sprintf(format, args...)))
}

func (c *checker) addList(ref string, errs field.ErrorList) {
	for _, e := range errs {
		c.add(ref, e.Field, "%s", e.ErrorBody())
	}
}

func (c *checker) addStrings(ref, path string, errs []string) {
	for _, e := range errs {
		c.add(ref, path, "%s", e)
	}
}

func main() {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, "kse-k8s-check:", err)
		os.Exit(2)
	}
	if err := monitoringv1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, "kse-k8s-check:", err)
		os.Exit(2)
	}
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})

	c := &checker{kinds: map[string]int{}, configMapNames: map[string]bool{}}
	reader := k8syaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kse-k8s-check: document %d: %v\n", n, err)
			os.Exit(2)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		c.document(strict, n, doc)
	}
	c.crossCheck()

	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Println(p)
		}
		fmt.Printf("kse-k8s-check: %d problem(s)\n", len(c.problems))
		os.Exit(1)
	}
	total := 0
	var kinds []string
	for k, n := range c.kinds {
		total += n
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	if total == 0 {
		fmt.Println("kse-k8s-check: no objects in the input")
		os.Exit(1)
	}
	fmt.Printf("kse-k8s-check: %d objects valid (%s)\n", total, strings.Join(kinds, ", "))
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func (c *checker) document(strict *kjson.Serializer, n int, doc []byte) {
	obj, gvk, err := strict.Decode(doc, nil, nil)
	ref := fmt.Sprintf("document %d", n)
	if gvk != nil && gvk.Kind != "" {
		ref = fmt.Sprintf("document %d (%s)", n, gvk.Kind)
	}
	if err != nil && !runtime.IsStrictDecodingError(err) {
		c.add(ref, "", "does not decode: %v", err)
		return
	}
	meta, ok := obj.(metav1.Object)
	if !ok {
		c.add(ref, "", "not a Kubernetes object")
		return
	}
	ref = gvk.Kind + "/" + meta.GetName()
	if err != nil {
		for _, e := range strings.Split(strings.TrimPrefix(err.Error(), "strict decoding error: "), ", ") {
			c.add(ref, "", "strict decoding: %s", e)
		}
	}
	c.kinds[gvk.Kind]++

	if js, err := sigsyaml.YAMLToJSON(doc); err == nil && len(js) >= lastAppliedLimit {
		c.add(ref, "", "object is %d bytes; kubectl apply's last-applied-configuration annotation allows %d", len(js), lastAppliedLimit)
	}
	c.metadata(ref, gvk.Kind, meta)

	switch o := obj.(type) {
	case *appsv1.Deployment:
		c.workload(ref, o.Name, o.Spec.Selector, &o.Spec.Template)
	case *appsv1.StatefulSet:
		c.workload(ref, o.Name, o.Spec.Selector, &o.Spec.Template)
		c.statefuls = append(c.statefuls, o)
	case *appsv1.DaemonSet:
		c.workload(ref, o.Name, o.Spec.Selector, &o.Spec.Template)
	case *corev1.Service:
		c.service(ref, o)
	case *corev1.ConfigMap:
		c.configMap(ref, o)
	case *corev1.Secret:
		for k := range o.Data {
			c.addStrings(ref, "data["+k+"]", validation.IsConfigMapKey(k))
		}
		for k := range o.StringData {
			c.addStrings(ref, "stringData["+k+"]", validation.IsConfigMapKey(k))
		}
	case *monitoringv1.ServiceMonitor:
		c.monitors = append(c.monitors, o)
		for i, ep := range o.Spec.Endpoints {
			if ep.Port == "" && ep.TargetPort == nil {
				c.add(ref, fmt.Sprintf("spec.endpoints[%d]", i), "names no port")
			}
			if ep.Path != "" && !strings.HasPrefix(ep.Path, "/") {
				c.add(ref, fmt.Sprintf("spec.endpoints[%d].path", i), "%q is not absolute", ep.Path)
			}
		}
	case *monitoringv1.PrometheusRule:
		c.prometheusRule(ref, o)
	}
}

func (c *checker) metadata(ref, kind string, m metav1.Object) {
	var errs []string
	switch kind {
	case "Service":
		errs = validation.IsDNS1035Label(m.GetName())
	default:
		errs = validation.IsDNS1123Subdomain(m.GetName())
	}
	if m.GetName() == "" {
		errs = []string{"name is required"}
	}
	c.addStrings(ref, "metadata.name", errs)
	if ns := m.GetNamespace(); ns != "" {
		c.addStrings(ref, "metadata.namespace", validation.IsDNS1123Label(ns))
	}
	c.addList(ref, metav1validation.ValidateLabels(m.GetLabels(), field.NewPath("metadata", "labels")))
	c.addList(ref, apivalidation.ValidateAnnotations(m.GetAnnotations(), field.NewPath("metadata", "annotations")))
}

func (c *checker) workload(ref, name string, selector *metav1.LabelSelector, t *corev1.PodTemplateSpec) {
	if selector == nil {
		c.add(ref, "spec.selector", "is required")
	} else if sel, err := metav1.LabelSelectorAsSelector(selector); err != nil {
		c.add(ref, "spec.selector", "%v", err)
	} else if sel.Empty() {
		c.add(ref, "spec.selector", "selects everything")
	} else if !sel.Matches(labels.Set(t.Labels)) {
		c.add(ref, "spec.selector", "does not match the pod template's labels %v", t.Labels)
	}
	c.addList(ref, metav1validation.ValidateLabels(t.Labels, field.NewPath("spec", "template", "metadata", "labels")))
	w := workload{ref: ref, labels: t.Labels, ports: map[string]int32{}, numbers: map[int32]bool{}}
	c.podSpec(ref, &t.Spec, &w)
	c.workloads = append(c.workloads, w)
}

func (c *checker) podSpec(ref string, spec *corev1.PodSpec, w *workload) {
	volumes := map[string]bool{}
	for i, v := range spec.Volumes {
		p := fmt.Sprintf("spec.template.spec.volumes[%d]", i)
		c.addStrings(ref, p+".name", validation.IsDNS1123Label(v.Name))
		if volumes[v.Name] {
			c.add(ref, p+".name", "duplicate volume %q", v.Name)
		}
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			if v.ConfigMap.Name == "" {
				c.add(ref, p+".configMap.name", "is required")
			} else if v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional {
				w.configMaps = append(w.configMaps, v.ConfigMap.Name)
			}
		}
		if v.Secret != nil && v.Secret.SecretName == "" {
			c.add(ref, p+".secret.secretName", "is required")
		}
	}
	if len(spec.Containers) == 0 {
		c.add(ref, "spec.template.spec.containers", "at least one container is required")
	}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for i := range all {
		ct := &all[i]
		p := fmt.Sprintf("spec.template.spec.containers[%s]", ct.Name)
		c.addStrings(ref, p+".name", validation.IsDNS1123Label(ct.Name))
		if names[ct.Name] {
			c.add(ref, p, "duplicate container name")
		}
		names[ct.Name] = true
		if strings.TrimSpace(ct.Image) == "" {
			c.add(ref, p+".image", "is required")
		}
		for _, port := range ct.Ports {
			c.addStrings(ref, p+".ports.containerPort", validation.IsValidPortNum(int(port.ContainerPort)))
			if port.Name != "" {
				c.addStrings(ref, p+".ports.name", validation.IsValidPortName(port.Name))
				if _, dup := w.ports[port.Name]; dup {
					c.add(ref, p+".ports.name", "duplicate port name %q", port.Name)
				}
				w.ports[port.Name] = port.ContainerPort
			}
			w.numbers[port.ContainerPort] = true
		}
		for _, m := range ct.VolumeMounts {
			if !volumes[m.Name] {
				c.add(ref, p+".volumeMounts", "mounts volume %q, which the pod does not declare", m.Name)
			}
			if !strings.HasPrefix(m.MountPath, "/") {
				c.add(ref, p+".volumeMounts", "mount path %q is not absolute", m.MountPath)
			}
		}
		for _, e := range ct.Env {
			c.addStrings(ref, p+".env", validation.IsEnvVarName(e.Name))
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && (e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "") {
				c.add(ref, p+".env["+e.Name+"]", "secretKeyRef needs name and key")
			}
		}
		for res, limit := range ct.Resources.Limits {
			if req, ok := ct.Resources.Requests[res]; ok && req.Cmp(limit) > 0 {
				c.add(ref, p+".resources", "request %s of %s exceeds the limit %s", req.String(), res, limit.String())
			}
		}
		probes := []struct {
			name  string
			probe *corev1.Probe
		}{{"livenessProbe", ct.LivenessProbe}, {"readinessProbe", ct.ReadinessProbe}, {"startupProbe", ct.StartupProbe}}
		for _, pr := range probes {
			if pr.probe != nil {
				c.probe(ref, p+"."+pr.name, pr.probe, ct)
			}
		}
	}
}

func (c *checker) probe(ref, path string, probe *corev1.Probe, ct *corev1.Container) {
	var port *intstr.IntOrString
	switch {
	case probe.HTTPGet != nil:
		port = &probe.HTTPGet.Port
		if !strings.HasPrefix(probe.HTTPGet.Path, "/") {
			c.add(ref, path+".httpGet.path", "%q is not absolute", probe.HTTPGet.Path)
		}
	case probe.TCPSocket != nil:
		port = &probe.TCPSocket.Port
	case probe.Exec != nil:
		if len(probe.Exec.Command) == 0 {
			c.add(ref, path+".exec.command", "is empty")
		}
	case probe.GRPC != nil:
	default:
		c.add(ref, path, "has no handler")
	}
	if port == nil {
		return
	}
	if port.Type == intstr.String {
		found := false
		for _, p := range ct.Ports {
			found = found || p.Name == port.StrVal
		}
		if !found {
			c.add(ref, path, "port %q is not a port of container %q", port.StrVal, ct.Name)
		}
	} else {
		c.addStrings(ref, path, validation.IsValidPortNum(port.IntValue()))
	}
}

func (c *checker) service(ref string, s *corev1.Service) {
	sv := service{ref: ref, name: s.Name, labels: s.Labels, selector: s.Spec.Selector, ports: map[string]bool{}}
	for i, p := range s.Spec.Ports {
		path := fmt.Sprintf("spec.ports[%d]", i)
		c.addStrings(ref, path+".port", validation.IsValidPortNum(int(p.Port)))
		if p.Name != "" {
			c.addStrings(ref, path+".name", validation.IsDNS1123Label(p.Name))
			sv.ports[p.Name] = true
		} else if len(s.Spec.Ports) > 1 {
			c.add(ref, path+".name", "is required when a Service has more than one port")
		}
	}
	if len(s.Spec.Ports) == 0 && s.Spec.ClusterIP != corev1.ClusterIPNone {
		c.add(ref, "spec.ports", "at least one port is required")
	}
	c.services = append(c.services, sv)
	c.serviceObjects = append(c.serviceObjects, s)
}

func (c *checker) configMap(ref string, cm *corev1.ConfigMap) {
	c.configMapNames[cm.Name] = true
	size := 0
	for k, v := range cm.Data {
		c.addStrings(ref, "data["+k+"]", validation.IsConfigMapKey(k))
		size += len(k) + len(v)
	}
	for k, v := range cm.BinaryData {
		c.addStrings(ref, "binaryData["+k+"]", validation.IsConfigMapKey(k))
		if _, dup := cm.Data[k]; dup {
			c.add(ref, "binaryData["+k+"]", "key also in data")
		}
		size += len(k) + len(v)
	}
	if size > configMapLimit {
		c.add(ref, "data", "%d bytes; a ConfigMap holds at most %d", size, configMapLimit)
	}
}

func (c *checker) prometheusRule(ref string, r *monitoringv1.PrometheusRule) {
	groups := map[string]bool{}
	for i, g := range r.Spec.Groups {
		path := fmt.Sprintf("spec.groups[%d]", i)
		if g.Name == "" || groups[g.Name] {
			c.add(ref, path+".name", "missing or duplicate group name %q", g.Name)
		}
		groups[g.Name] = true
		for j, rule := range g.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", path, j)
			if (rule.Record == "") == (rule.Alert == "") {
				c.add(ref, rp, "needs exactly one of record and alert")
			}
			if strings.TrimSpace(rule.Expr.String()) == "" {
				c.add(ref, rp+".expr", "is empty")
			}
		}
	}
}

// crossCheck relates objects to each other, as the controllers that act on them would.
func (c *checker) crossCheck() {
	for _, s := range c.services {
		if len(s.selector) == 0 {
			continue // a Service without selector has its endpoints managed elsewhere
		}
		sel := labels.SelectorFromSet(s.selector)
		var matched []workload
		for _, w := range c.workloads {
			if sel.Matches(labels.Set(w.labels)) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 && len(c.workloads) > 0 {
			c.add(s.ref, "spec.selector", "selects no pod template in the input (%v)", s.selector)
		}
	}
	for _, s := range c.statefuls {
		if s.Spec.ServiceName == "" {
			continue
		}
		found := false
		for _, sv := range c.services {
			found = found || sv.name == s.Spec.ServiceName
		}
		if !found {
			c.add("StatefulSet/"+s.Name, "spec.serviceName", "no Service %q in the input", s.Spec.ServiceName)
		}
	}
	c.checkTargetPorts()
	for _, w := range c.workloads {
		for _, name := range w.configMaps {
			if !c.configMapNames[name] {
				c.add(w.ref, "spec.template.spec.volumes", "mounts ConfigMap %q, which is not in the input (pods would not start)", name)
			}
		}
	}
	for _, m := range c.monitors {
		ref := "ServiceMonitor/" + m.Name
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil {
			c.add(ref, "spec.selector", "%v", err)
			continue
		}
		if sel.Empty() {
			c.add(ref, "spec.selector", "selects every Service")
		}
		var matched []service
		for _, s := range c.services {
			if sel.Matches(labels.Set(s.labels)) {
				matched = append(matched, s)
			}
		}
		if len(matched) == 0 {
			c.add(ref, "spec.selector", "selects no Service in the input")
			continue
		}
		for i, ep := range m.Spec.Endpoints {
			if ep.Port == "" {
				continue
			}
			for _, s := range matched {
				if !s.ports[ep.Port] {
					c.add(ref, fmt.Sprintf("spec.endpoints[%d].port", i), "%q is not a named port of %s", ep.Port, s.ref)
				}
			}
		}
	}
}

// checkTargetPorts re-reads Services' target ports against the pods they select: a named
// target port must be a named container port of every selected pod template.
func (c *checker) checkTargetPorts() {
	for _, s := range c.serviceObjects {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		for i, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || len(s.Spec.Selector) == 0 {
				continue
			}
			for _, w := range c.workloads {
				if !sel.Matches(labels.Set(w.labels)) {
					continue
				}
				if _, ok := w.ports[p.TargetPort.StrVal]; !ok {
					c.add("Service/"+s.Name, fmt.Sprintf("spec.ports[%d].targetPort", i), "%q is not a named container port of %s", p.TargetPort.StrVal, w.ref)
				}
			}
		}
	}
}
