package k8s

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The manifests, decoded strictly into the Kubernetes API types: an unknown or misspelt
// field, or a kind this test does not know, fails.
type manifests struct {
	configMaps  []*corev1.ConfigMap
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	netpols     []*networkingv1.NetworkPolicy
	monitors    []*monitoringv1.ServiceMonitor
	text        string // every file's text, for the documented kubectl commands
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m.text += string(raw)
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			m.decode(t, fmt.Sprintf("%s document %d", f, i+1), []byte(doc))
		}
	}
	return m
}

func stripComments(doc string) string {
	var sb strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			sb.WriteString(line + "\n")
		}
	}
	return sb.String()
}

func (m *manifests) decode(t *testing.T, where string, doc []byte) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		m.configMaps, obj = append(m.configMaps, o), o
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		m.deployments, obj = append(m.deployments, o), o
	case "v1 Service":
		o := &corev1.Service{}
		m.services, obj = append(m.services, o), o
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		m.hpas, obj = append(m.hpas, o), o
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		m.pdbs, obj = append(m.pdbs, o), o
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		m.netpols, obj = append(m.netpols, o), o
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o := &monitoringv1.ServiceMonitor{}
		m.monitors, obj = append(m.monitors, o), o
	default:
		t.Fatalf("%s: %s %s: a kind this test does not check (add it)", where, tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s (%s): %v", where, tm.Kind, err)
	}
	if meta := obj.(metav1.Object); meta.GetName() == "" {
		t.Fatalf("%s (%s): no metadata.name", where, tm.Kind)
	}
}

// lbConfig is what the test reads of the embedded lb.yaml.
type lbConfig struct {
	Listen string `json:"listen"`
	Admin  struct {
		Listen    string `json:"listen"`
		TokenFile string `json:"token_file"`
	} `json:"admin"`
	Server struct {
		ShutdownTimeout string `json:"shutdown_timeout"`
	} `json:"server"`
	Sticky struct {
		Enabled    bool   `json:"enabled"`
		SecretFile string `json:"secret_file"`
	} `json:"sticky"`
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return int32(p)
}

// The manifests only make sense as a whole: every reference resolves, the ports agree with
// the embedded config, and an operator's expectations hold.
func TestManifests(t *testing.T) {
	m := load(t)
	if len(m.deployments) != 1 || len(m.configMaps) != 1 {
		t.Fatalf("got %d Deployments and %d ConfigMaps; want 1 and 1", len(m.deployments), len(m.configMaps))
	}
	d := m.deployments[0]
	pod := &d.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Fatalf("Deployment %s: selector %v does not select its own pods %v (%v)", d.Name, d.Spec.Selector, pod.Labels, err)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers; want 1", d.Name, len(pod.Spec.Containers))
	}
	c := &pod.Spec.Containers[0]

	// A fixed image version.
	image := c.Image
	name, tag, hasTag := strings.Cut(image[strings.LastIndexByte(image, '/')+1:], ":")
	if !strings.Contains(image, "@sha256:") && (!hasTag || tag == "" || tag == "latest" || name == "") {
		t.Errorf("container %s: image %q; want a fixed version tag (never latest) or a digest", c.Name, image)
	}

	// The embedded config, and where the container finds it.
	cm := m.configMaps[0]
	cfgPath := argAfter(c.Args, "-config")
	mounts := map[string]corev1.Volume{} // mountPath → volume
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Fatalf("container %s mounts volume %q, which the pod does not have", c.Name, vm.Name)
		}
		mounts[vm.MountPath] = v
	}
	for _, a := range mountDirs(mounts) {
		for _, b := range mountDirs(mounts) {
			if strings.HasPrefix(a, strings.TrimSuffix(b, "/")+"/") {
				t.Errorf("mount %s is inside mount %s: its mount point would have to be made inside that volume; keep mounts apart", a, b)
			}
		}
	}
	cfgVol, cfgKey := mountOf(mounts, cfgPath)
	if cfgVol == nil || cfgVol.ConfigMap == nil || cfgVol.ConfigMap.Name != cm.Name || cm.Data[cfgKey] == "" {
		t.Fatalf("-config %s is not a key of ConfigMap %s mounted in the container", cfgPath, cm.Name)
	}
	var cfg lbConfig
	if err := yaml.Unmarshal([]byte(cm.Data[cfgKey]), &cfg); err != nil {
		t.Fatalf("ConfigMap %s %s: %v", cm.Name, cfgKey, err)
	}

	// Container ports agree with the config; the probes are on the admin port.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != port(t, cfg.Listen) || ports["admin"] != port(t, cfg.Admin.Listen) {
		t.Fatalf("container ports %v; want http = listen %s and admin = admin.listen %s", ports, cfg.Listen, cfg.Admin.Listen)
	}
	if strings.HasPrefix(cfg.Admin.Listen, "127.") || strings.HasPrefix(cfg.Admin.Listen, "localhost") {
		t.Errorf("admin.listen %s is loopback: the kubelet's probes cannot reach it", cfg.Admin.Listen)
	}
	resolve := func(where string, p intstr.IntOrString) int32 {
		t.Helper()
		if p.Type == intstr.String {
			n, ok := ports[p.StrVal]
			if !ok {
				t.Fatalf("%s: port %q is no container port (%v)", where, p.StrVal, ports)
			}
			return n
		}
		for _, n := range ports {
			if n == p.IntVal {
				return n
			}
		}
		t.Fatalf("%s: port %d is no container port (%v)", where, p.IntVal, ports)
		return 0
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/ready"}, {"livenessProbe", c.LivenessProbe, "/health"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Fatalf("container %s: no HTTP %s", c.Name, pr.name)
		}
		if got := resolve(pr.name, pr.probe.HTTPGet.Port); got != ports["admin"] || pr.probe.HTTPGet.Path != pr.path {
			t.Errorf("%s: GET %s on port %d; want %s on the admin port %d", pr.name, pr.probe.HTTPGet.Path, got, pr.path, ports["admin"])
		}
	}

	// Graceful stop: the preStop pause and the config's shutdown_timeout fit in the grace
	// period. The image is distroless: no shell, so no exec hook.
	shutdown, err := time.ParseDuration(cfg.Server.ShutdownTimeout)
	if err != nil {
		t.Fatalf("server.shutdown_timeout %q: %v", cfg.Server.ShutdownTimeout, err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Exec != nil {
		t.Fatalf("container %s: want a preStop sleep action (the image has no shell for exec)", c.Name)
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := 30 * time.Second // Kubernetes' default
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if pause <= 0 || pause+shutdown >= grace {
		t.Errorf("preStop %v + shutdown_timeout %v must be within terminationGracePeriodSeconds %v", pause, shutdown, grace)
	}

	// Secrets: created by hand (never committed), each with its kubectl command in a header.
	secrets := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.Secret != nil:
			secrets[v.Secret.SecretName] = true
		case v.ConfigMap != nil:
			if !m.hasConfigMap(v.ConfigMap.Name) {
				t.Errorf("volume %s: ConfigMap %s is not in k8s/", v.Name, v.ConfigMap.Name)
			}
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secrets[e.ValueFrom.SecretKeyRef.Name] = true
		}
	}
	for s := range secrets {
		if !strings.Contains(m.text, "kubectl create secret generic "+s+" ") {
			t.Errorf("Secret %s is used but no manifest says how to create it (kubectl create secret generic %s ...)", s, s)
		}
	}
	if cfg.Admin.TokenFile != "" {
		if v, _ := mountOf(mounts, cfg.Admin.TokenFile); v == nil || v.Secret == nil {
			t.Errorf("admin.token_file %s is not in a mounted Secret", cfg.Admin.TokenFile)
		}
	}

	// Replicas: the HPA owns the count; several replicas share sticky sessions.
	maxReplicas := int32(1)
	if d.Spec.Replicas != nil {
		maxReplicas = *d.Spec.Replicas
	}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			t.Errorf("HPA %s targets %s %s %s; want apps/v1 Deployment %s", h.Name, ref.APIVersion, ref.Kind, ref.Name, d.Name)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas while HPA %s scales it: every kubectl apply would reset the count", d.Name, h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HPA %s: minReplicas below 2 leaves one pod, and the PodDisruptionBudget blocks every drain", h.Name)
		}
		for _, mt := range h.Spec.Metrics {
			if mt.Resource != nil && c.Resources.Requests.Cpu().IsZero() && mt.Resource.Name == corev1.ResourceCPU {
				t.Errorf("HPA %s scales on CPU utilization but the container requests no CPU", h.Name)
			}
		}
		maxReplicas = max(maxReplicas, h.Spec.MaxReplicas)
	}
	if cfg.Sticky.Enabled && maxReplicas > 1 && env["STICKY_SECRET"].ValueFrom == nil && cfg.Sticky.SecretFile == "" &&
		env["REDIS_ENABLED"].Value != "true" {
		t.Errorf("sticky sessions with up to %d replicas need a shared STICKY_SECRET (or sticky.secret_file, or Redis)", maxReplicas)
	}

	// Services select the pods and target container ports; only a ClusterIP Service may
	// carry the admin port.
	exposesHTTP := false
	for _, s := range m.services {
		if s.Spec.Selector == nil || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s: selector %v does not select the pods %v", s.Name, s.Spec.Selector, pod.Labels)
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			n := resolve("Service "+s.Name, target)
			if n == ports["admin"] && s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("Service %s (%s) exposes the admin port: the dashboard and runtime API would be public", s.Name, s.Spec.Type)
			}
			if n == ports["http"] {
				exposesHTTP = true
				for _, q := range s.Spec.Ports {
					if resolve("Service "+s.Name, q.TargetPort) == ports["admin"] {
						t.Errorf("Service %s carries the data plane and the admin port together", s.Name)
					}
				}
			}
		}
	}
	if !exposesHTTP {
		t.Error("no Service exposes the data plane")
	}

	// The NetworkPolicy covers the pods, names real ports, and restricts the admin port.
	for _, np := range m.netpols {
		s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !s.Matches(podLabels) {
			t.Errorf("NetworkPolicy %s does not select the pods", np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port == nil {
					continue
				}
				if resolve("NetworkPolicy "+np.Name, *p.Port) == ports["admin"] && len(rule.From) == 0 {
					t.Errorf("NetworkPolicy %s opens the admin port to everyone", np.Name)
				}
			}
		}
	}
	for _, pdb := range m.pdbs {
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !s.Matches(podLabels) {
			t.Errorf("PodDisruptionBudget %s does not select the pods", pdb.Name)
		}
	}

	// Each ServiceMonitor selects a Service whose named port is the admin port, and
	// scrapes /prometheus.
	for _, sm := range m.monitors {
		s, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || s.Empty() {
			t.Fatalf("ServiceMonitor %s: selector %v (%v)", sm.Name, sm.Spec.Selector, err)
		}
		for _, ep := range sm.Spec.Endpoints {
			found := 0
			for _, svc := range m.services {
				if !s.Matches(labels.Set(svc.Labels)) {
					continue
				}
				for _, p := range svc.Spec.Ports {
					if p.Name == ep.Port {
						found++
						if resolve("Service "+svc.Name, p.TargetPort) != ports["admin"] {
							t.Errorf("ServiceMonitor %s scrapes Service %s port %s, which is not the admin port", sm.Name, svc.Name, ep.Port)
						}
					}
				}
			}
			if found == 0 {
				t.Errorf("ServiceMonitor %s: no selected Service has a port named %q", sm.Name, ep.Port)
			}
			if ep.Path != "/prometheus" {
				t.Errorf("ServiceMonitor %s scrapes %q; want /prometheus", sm.Name, ep.Path)
			}
		}
	}

	checkConfig(t, cm, c, mounts)
}

func (m *manifests) hasConfigMap(name string) bool {
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return true
		}
	}
	return false
}

// argAfter returns the argument after flag in args ("" when absent).
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// mountOf returns the volume mounted over path (the innermost mount) and path's key in it.
func mountOf(mounts map[string]corev1.Volume, path string) (*corev1.Volume, string) {
	var best *corev1.Volume
	bestDir, bestKey := "", ""
	for dir, v := range mounts {
		if key, ok := strings.CutPrefix(path, strings.TrimSuffix(dir, "/")+"/"); ok && len(dir) > len(bestDir) {
			best, bestDir, bestKey = &v, dir, key
		}
	}
	return best, bestKey
}

// mountDirs returns the mount paths, longest first.
func mountDirs(mounts map[string]corev1.Volume) []string {
	var dirs []string
	for dir := range mounts {
		dirs = append(dirs, dir)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// checkConfig runs the binary's -check-config on the embedded config, as the container
// would see it: its mounts laid out under a temporary root (the ConfigMap's keys, each
// Secret's keys with a placeholder value) and its environment (secrets as placeholders).
func checkConfig(t *testing.T, cm *corev1.ConfigMap, c *corev1.Container, mounts map[string]corev1.Volume) {
	t.Helper()
	root := t.TempDir()
	bin := filepath.Join(root, "go-loadbalancer")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cannot build go-loadbalancer: %v\n%s", err, out)
	}
	placeholder := strings.Repeat("k8s-manifest-test-", 3)
	var alts []string
	for _, dir := range mountDirs(mounts) {
		alts = append(alts, regexp.QuoteMeta(dir))
	}
	mountRE := regexp.MustCompile(strings.Join(alts, "|"))
	rewrite := func(s string) string {
		return mountRE.ReplaceAllStringFunc(s, func(dir string) string { return filepath.Join(root, dir) })
	}
	for dir, v := range mounts {
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case v.ConfigMap != nil:
			for k, val := range cm.Data {
				os.WriteFile(filepath.Join(d, k), []byte(rewrite(val)), 0o644)
			}
		case v.Secret != nil:
			// The keys the config names in this directory.
			for _, val := range cm.Data {
				for _, m := range regexp.MustCompile(regexp.QuoteMeta(dir)+`/([\w.-]+)`).FindAllStringSubmatch(val, -1) {
					os.WriteFile(filepath.Join(d, m[1]), []byte(placeholder), 0o600)
				}
			}
		}
	}
	args := []string{"-check-config"}
	for _, a := range c.Args {
		args = append(args, rewrite(a))
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom != nil {
			val = placeholder
		}
		cmd.Env = append(cmd.Env, e.Name+"="+val)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go-loadbalancer -check-config on ConfigMap %s: %v\n%s", cm.Name, err, out.String())
	}
	t.Logf("-check-config: %s", strings.TrimSpace(out.String()))
}
