package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

const kubectlTargetDoc = `kubeconfig: kubeconfig file ("~" allowed); default: kubectl's own (KUBECONFIG, ~/.kube/config);
  for a probe, it must be a file no other user can write (strict modes): it can run commands
context: kubeconfig context to use
`

func init() {
	Register(Builtin{Name: "kubectl.probe", Fn: kubectlProbe, Doc: `def probe(name, args, *, kubeconfig=None, context=None, namespace=None, jsonpath=None, **common):
Runs kubectl with args; exit status 0 passes and expect applies to its
standard output. kubectl gets --request-timeout from the probe's deadline, so
no single API request outlives it; the deadline still ends the whole run
(discovery and retries included).
name: unique probe name
args: kubectl arguments, e.g. ["get", "nodes", "--no-headers"] or
  ["exec", "-n", "joelclaw", "redis-0", "--", "redis-cli", "ping"]
` + kubectlTargetDoc + `namespace: namespace (--namespace)
jsonpath: print only this JSONPath of the result (-o jsonpath=...), e.g. "{.status.phase}"`})
	Register(Builtin{Name: "kubectl.run", Fn: kubectlRun, Doc: `def run(args, *, kubeconfig=None, context=None, namespace=None, jsonpath=None, timeout="60s"):
Run phase only (probe.func, rung functions): runs kubectl like kubectl.probe
and returns struct(code, stdout, stderr, ok, timed_out). The call is bounded
by timeout and by the deadline of the probe or rung it runs in.`})
	Register(Builtin{Name: "kubectl.node_ready", Fn: kubectlNodeReady, Doc: `def node_ready(name, node=None, *, kubeconfig=None, context=None, **common):
Passes when the node's Ready condition is True; without node, every node
must be Ready (and there must be at least one).
name: unique probe name
node: node name; None (the default) means all nodes, and "" is an error
` + kubectlTargetDoc})
	Register(Builtin{Name: "kubectl.node_schedulable", Fn: kubectlNodeSchedulable, Doc: `def node_schedulable(name, node=None, *, kubeconfig=None, context=None, **common):
Fails when the node is cordoned (spec.unschedulable) or carries a NoSchedule
or NoExecute taint, except the normal node-role.kubernetes.io/control-plane
and node-role.kubernetes.io/master NoSchedule taints of a control-plane node
(a single-node cluster has them and still schedules its tolerating pods).
Without node, every node is checked.
name: unique probe name
node: node name; None (the default) means all nodes, and "" is an error
` + kubectlTargetDoc})
	Register(Builtin{Name: "kubectl.daemonset_available", Fn: kubectlDaemonSetAvailable, Doc: `def daemonset_available(name, daemonset, namespace, *, kubeconfig=None, context=None, **common):
Passes when status.numberAvailable equals status.desiredNumberScheduled and
that is more than zero, e.g. "1/1 available".
name: unique probe name
daemonset: DaemonSet name, e.g. "kube-flannel"
namespace: its namespace, e.g. "kube-system"
` + kubectlTargetDoc})
	Register(Builtin{Name: "kubectl.pod_ready", Fn: kubectlPodReady, Doc: `def pod_ready(name, pod, namespace, *, kubeconfig=None, context=None, **common):
Passes when the pod's Ready condition is True.
name: unique probe name
pod: pod name, e.g. "redis-0"
namespace: its namespace
` + kubectlTargetDoc})
}

// kubectlTarget is where kubectl points.
type kubectlTarget struct {
	kubeconfig, context, namespace string
}

func (k *kubectlTarget) params(withNamespace bool) []any {
	p := []any{"kubeconfig?", &k.kubeconfig, "context?", &k.context}
	if withNamespace {
		p = append(p, "namespace?", &k.namespace)
	}
	return p
}

// reads is the kubeconfig kubectl reads: the one named, else
// DefaultKubeconfig (see ConfigFiles).
func (k *kubectlTarget) reads() []string {
	if k.kubeconfig == "" {
		return []string{DefaultKubeconfig}
	}
	return []string{k.kubeconfig}
}

// DefaultKubeconfig stands in Probe.Reads for what kubectl reads without
// --kubeconfig: each file of $KUBECONFIG in the child environment, else
// ~/.kube/config.
const DefaultKubeconfig = "$KUBECONFIG"

func (k *kubectlTarget) key() []string { return []string{k.kubeconfig, k.context, k.namespace} }

// argv is the kubectl command line for args, with --request-timeout taken
// from ctx's deadline and -o jsonpath=... when jsonpath is set.
func (k *kubectlTarget) argv(ctx context.Context, env []string, args []string, jsonpath string) []string {
	argv := []string{"kubectl"}
	if k.kubeconfig != "" {
		argv = append(argv, "--kubeconfig="+userPath(k.kubeconfig, env))
	}
	if k.context != "" {
		argv = append(argv, "--context="+k.context)
	}
	if k.namespace != "" {
		argv = append(argv, "--namespace="+k.namespace)
	}
	argv = append(argv, "--request-timeout="+requestTimeout(ctx))
	if jsonpath == "" {
		return append(argv, args...)
	}
	if !strings.HasPrefix(jsonpath, "jsonpath=") {
		jsonpath = "jsonpath=" + jsonpath
	}
	// Output flags belong before "--" (what follows it is a remote command).
	for i, a := range args {
		if a == "--" {
			argv = append(argv, args[:i]...)
			argv = append(argv, "-o", jsonpath)
			return append(argv, args[i:]...)
		}
	}
	return append(append(argv, args...), "-o", jsonpath)
}

// requestTimeout leaves kubectl a little less than the time to the
// deadline (a tenth, at most a second), so it reports its own timeout.
func requestTimeout(ctx context.Context) string {
	left := timeLeft(ctx, 10*time.Second)
	rt := left - min(left/10, time.Second)
	rt = rt.Truncate(100 * time.Millisecond)
	if rt < 100*time.Millisecond {
		rt = 100 * time.Millisecond
	}
	return rt.String()
}

func checkKubectlArgs(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("args must not be empty")
	}
	if args[0] == "kubectl" {
		return fmt.Errorf(`args are kubectl's arguments: leave out "kubectl"`)
	}
	return nil
}

func kubectlProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c        Common
		name     string
		kargs    star.StringList
		jsonpath string
		k        kubectlTarget
	)
	own := append([]any{"name", &name, "args", &kargs}, k.params(true)...)
	if err := c.Unpack(b, args, kwargs, append(own, "jsonpath?", &jsonpath)...); err != nil {
		return nil, err
	}
	if err := checkKubectlArgs(kargs); err != nil {
		return nil, fmt.Errorf("%s: %s: %v", b.Name(), name, err)
	}
	check := func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		r := env.Effects.Exec(ctx, env.Command(k.argv(ctx, env.Env, kargs, jsonpath)...))
		return engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
	}
	p, err := c.Spec(thread, b, name, "kubectl", check, append(append(k.key(), jsonpath), kargs...)...)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"kubectl"}
	p.Reads = k.reads()
	return Declare(thread, b, p)
}

func kubectlRun(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		kargs    star.StringList
		jsonpath string
		timeout  star.Duration
		k        kubectlTarget
	)
	params := append([]any{"args", &kargs}, k.params(true)...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "jsonpath?", &jsonpath, "timeout?", &timeout)...); err != nil {
		return nil, err
	}
	if err := checkKubectlArgs(kargs); err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return runCommand(thread, b, timeout.D, k.reads(), func(ctx context.Context, env []string) ([]string, []string) {
		return k.argv(ctx, env, kargs, jsonpath), nil
	})
}

// maxKubectlJSON bounds the JSON the helpers read: node lists carry image
// lists and can be far larger than the default output cap.
const maxKubectlJSON = 16 << 20

// kubectlJSONCheck runs `kubectl get ... -o json` and hands the decoded
// objects (the items of a list, or the one object) to judge.
func kubectlJSONCheck[T any](k kubectlTarget, args []string, judge func(items []T) engine.Outcome) engine.Check {
	args = append(append([]string(nil), args...), "-o", "json")
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		cmd := env.Command(k.argv(ctx, env.Env, args, "")...)
		cmd.MaxOutput = maxKubectlJSON
		r := env.Effects.Exec(ctx, cmd)
		if !r.OK() {
			return engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
		}
		if r.Truncated {
			return engine.Failf("kubectl printed more than %d MiB of JSON", maxKubectlJSON>>20)
		}
		var head struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &head); err != nil {
			return engine.Failf("kubectl output is not JSON: %v", err)
		}
		raws := []json.RawMessage{json.RawMessage(r.Stdout)}
		if strings.HasSuffix(head.Kind, "List") {
			raws = head.Items
		}
		items := make([]T, len(raws))
		for i, raw := range raws {
			if err := json.Unmarshal(raw, &items[i]); err != nil {
				return engine.Failf("kubectl %s: decoding item %d: %v", strings.Join(args, " "), i, err)
			}
		}
		return judge(items)
	}
}

type k8sMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type k8sCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func k8sConditionOf(conds []k8sCondition, typ string) (k8sCondition, bool) {
	for _, c := range conds {
		if c.Type == typ {
			return c, true
		}
	}
	return k8sCondition{}, false
}

func (c k8sCondition) why() string {
	var parts []string
	for _, s := range []string{c.Reason, c.Message} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ": ")
}

type k8sTaint struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Effect string `json:"effect"`
}

func (t k8sTaint) String() string {
	if t.Value != "" {
		return t.Key + "=" + t.Value + ":" + t.Effect
	}
	return t.Key + ":" + t.Effect
}

type k8sNode struct {
	Metadata k8sMeta `json:"metadata"`
	Spec     struct {
		Unschedulable bool       `json:"unschedulable"`
		Taints        []k8sTaint `json:"taints"`
	} `json:"spec"`
	Status struct {
		Conditions []k8sCondition `json:"conditions"`
	} `json:"status"`
}

// nodeHelper unpacks the arguments of node_ready and node_schedulable.
func nodeHelper(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, kind string, judge func([]k8sNode) engine.Outcome) (starlark.Value, error) {
	var (
		c     Common
		name  string
		nodeV starlark.Value // nil or None: every node
		k     kubectlTarget
	)
	if err := c.Unpack(b, args, kwargs, append([]any{"name", &name, "node?", &nodeV}, k.params(false)...)...); err != nil {
		return nil, err
	}
	var node string
	get := []string{"get", "nodes"}
	switch v := nodeV.(type) {
	case nil, starlark.NoneType:
	case starlark.String:
		// "" is refused like pod_ready's pod "": only None means every node.
		node = string(v)
		if err := checkK8sName(node); err != nil {
			return nil, fmt.Errorf("%s: %s: node %v", b.Name(), name, err)
		}
		get = []string{"get", "node", node}
	default:
		return nil, fmt.Errorf("%s: for parameter node: want a string or None, got %s", b.Name(), nodeV.Type())
	}
	p, err := c.Spec(thread, b, name, kind, kubectlJSONCheck(k, get, judge), append(k.key(), node)...)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"kubectl"}
	p.Reads = k.reads()
	return Declare(thread, b, p)
}

func kubectlNodeReady(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	return nodeHelper(thread, b, args, kwargs, "kubectl.node_ready", nodesReady)
}

func kubectlNodeSchedulable(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	return nodeHelper(thread, b, args, kwargs, "kubectl.node_schedulable", nodesSchedulable)
}

// nodesReady passes when every node's Ready condition is True.
func nodesReady(nodes []k8sNode) engine.Outcome {
	if len(nodes) == 0 {
		return engine.Failf("no nodes")
	}
	var bad, good []string
	for _, n := range nodes {
		c, ok := k8sConditionOf(n.Status.Conditions, "Ready")
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("node %s has no Ready condition", n.Metadata.Name))
		case c.Status != "True":
			bad = append(bad, fmt.Sprintf("node %s not Ready (Ready=%s%s)", n.Metadata.Name, c.Status, c.why()))
		default:
			good = append(good, n.Metadata.Name)
		}
	}
	detail := map[string]string{"nodes": strconv.Itoa(len(nodes)), "ready": strconv.Itoa(len(good))}
	if len(bad) > 0 {
		return engine.Outcome{Output: strings.Join(bad, "; "), Detail: detail}
	}
	return engine.Outcome{Passed: true, Output: strings.Join(good, ", ") + " Ready", Detail: detail}
}

// normalControlPlaneTaints are the taints a control-plane node normally carries; they keep
// ordinary pods off it, not the cluster's own (tolerating) workloads.
var normalControlPlaneTaints = map[string]bool{
	"node-role.kubernetes.io/control-plane": true,
	"node-role.kubernetes.io/master":        true,
}

// nodesSchedulable fails on cordoned nodes and NoSchedule/NoExecute taints
// other than the normal control-plane ones.
func nodesSchedulable(nodes []k8sNode) engine.Outcome {
	if len(nodes) == 0 {
		return engine.Failf("no nodes")
	}
	var bad, good, ignored []string
	for _, n := range nodes {
		var problems []string
		if n.Spec.Unschedulable {
			problems = append(problems, "cordoned (spec.unschedulable)")
		}
		for _, t := range n.Spec.Taints {
			switch {
			case t.Effect != "NoSchedule" && t.Effect != "NoExecute":
			case normalControlPlaneTaints[t.Key] && t.Effect == "NoSchedule":
				ignored = append(ignored, t.String())
			default:
				problems = append(problems, "taint "+t.String())
			}
		}
		if len(problems) > 0 {
			bad = append(bad, fmt.Sprintf("node %s: %s", n.Metadata.Name, strings.Join(problems, ", ")))
		} else {
			good = append(good, n.Metadata.Name)
		}
	}
	if len(bad) > 0 {
		return engine.Failf("%s", strings.Join(bad, "; "))
	}
	out := strings.Join(good, ", ") + " schedulable"
	if len(ignored) > 0 {
		out += " (normal " + strings.Join(kubeDedup(ignored), ", ") + " ignored)"
	}
	return engine.Outcome{Passed: true, Output: out}
}

func kubeDedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// checkK8sName wants a Kubernetes object name (DNS subdomain).
func checkK8sName(s string) error {
	if s == "" || len(s) > 253 || flagLike(s) || strings.ContainsAny(s, " \t\n/") {
		return fmt.Errorf("%q is not an object name", s)
	}
	return nil
}

// namespacedHelper unpacks (name, object, namespace) helpers.
func namespacedHelper(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, what, resource, kind string, judge func(k kubectlTarget, obj string) engine.Check) (starlark.Value, error) {
	var (
		c    Common
		name string
		obj  string
		k    kubectlTarget
	)
	if err := c.Unpack(b, args, kwargs, append([]any{"name", &name, what, &obj, "namespace", &k.namespace}, k.params(false)...)...); err != nil {
		return nil, err
	}
	if err := checkK8sName(obj); err != nil {
		return nil, fmt.Errorf("%s: %s: %s %v", b.Name(), name, what, err)
	}
	if err := checkK8sName(k.namespace); err != nil {
		return nil, fmt.Errorf("%s: %s: namespace %v", b.Name(), name, err)
	}
	p, err := c.Spec(thread, b, name, kind, judge(k, obj), append(k.key(), resource, obj)...)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"kubectl"}
	p.Reads = k.reads()
	return Declare(thread, b, p)
}

type k8sDaemonSet struct {
	Metadata k8sMeta `json:"metadata"`
	Status   struct {
		DesiredNumberScheduled int `json:"desiredNumberScheduled"`
		NumberAvailable        int `json:"numberAvailable"`
		NumberReady            int `json:"numberReady"`
	} `json:"status"`
}

func kubectlDaemonSetAvailable(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	return namespacedHelper(thread, b, args, kwargs, "daemonset", "daemonset", "kubectl.daemonset_available", func(k kubectlTarget, ds string) engine.Check {
		return kubectlJSONCheck(k, []string{"get", "daemonset", ds}, func(items []k8sDaemonSet) engine.Outcome {
			if len(items) != 1 {
				return engine.Failf("want one daemonset, got %d", len(items))
			}
			s := items[0].Status
			o := engine.Outcome{
				Passed: s.DesiredNumberScheduled > 0 && s.NumberAvailable == s.DesiredNumberScheduled,
				Output: fmt.Sprintf("%d/%d available", s.NumberAvailable, s.DesiredNumberScheduled),
				Detail: map[string]string{"available": strconv.Itoa(s.NumberAvailable), "desired": strconv.Itoa(s.DesiredNumberScheduled)},
			}
			if s.DesiredNumberScheduled == 0 {
				o.Output = "no pods desired (0/0): the daemonset runs nowhere"
			}
			return o
		})
	})
}

type k8sPod struct {
	Metadata k8sMeta `json:"metadata"`
	Status   struct {
		Phase      string         `json:"phase"`
		Conditions []k8sCondition `json:"conditions"`
	} `json:"status"`
}

func kubectlPodReady(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	return namespacedHelper(thread, b, args, kwargs, "pod", "pod", "kubectl.pod_ready", func(k kubectlTarget, pod string) engine.Check {
		return kubectlJSONCheck(k, []string{"get", "pod", pod}, func(items []k8sPod) engine.Outcome {
			if len(items) != 1 {
				return engine.Failf("want one pod, got %d", len(items))
			}
			p := items[0]
			detail := map[string]string{"phase": p.Status.Phase}
			c, ok := k8sConditionOf(p.Status.Conditions, "Ready")
			detail["ready"] = c.Status
			switch {
			case !ok:
				return engine.Outcome{Output: fmt.Sprintf("pod %s has no Ready condition (phase %s)", pod, p.Status.Phase), Detail: detail}
			case c.Status != "True":
				return engine.Outcome{Output: fmt.Sprintf("pod %s not Ready (phase %s%s)", pod, p.Status.Phase, c.why()), Detail: detail}
			}
			return engine.Outcome{Passed: true, Output: fmt.Sprintf("pod %s Ready (%s)", pod, p.Status.Phase), Detail: detail}
		})
	})
}
