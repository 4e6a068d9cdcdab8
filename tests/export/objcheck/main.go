// Command objcheck decodes nvtopo's exported objects strictly with the consumer's own Go
// API types: Kueue's (sigs.k8s.io/kueue) with -api kueue, Volcano's (volcano.sh/apis) with
// -api volcano.
//
// It reads YAML documents (separated by "---") or one JSON v1 List from stdin. Every object
// must be a kueue.x-k8s.io/v1beta2 Topology (kueue) or a topology.volcano.sh/v1alpha1
// HyperNode (volcano); a field those types do not have, or a value of the wrong type, fails
// the decode (sigs.k8s.io/yaml UnmarshalStrict, which decodes JSON with unknown fields
// disallowed). It then checks what the CRDs' validation rules say (Kueue: spec.levels has
// 1-16 unique items, kubernetes.io/hostname only last; Volcano: tier >= 0, at least one
// member, exactly one selector each) and prints one line per object:
// "ok <name> <detail>".
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/yaml"
	volcano "volcano.sh/apis/pkg/apis/topology/v1alpha1"
)

func documents(data []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		var list struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(trimmed, &list); err != nil {
			return nil, err
		}
		if list.Kind != "List" {
			return [][]byte{trimmed}, nil
		}
		out := make([][]byte, 0, len(list.Items))
		for _, item := range list.Items {
			out = append(out, item)
		}
		return out, nil
	}
	var out [][]byte
	var cur bytes.Buffer
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			out = append(out, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for scanner.Scan() {
		line := scanner.Text()
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return out, scanner.Err()
}

func check(t *kueue.Topology) error {
	if t.APIVersion != kueue.GroupVersion.String() || t.Kind != "Topology" {
		return fmt.Errorf("%s/%s is not a %s Topology", t.APIVersion, t.Kind, kueue.GroupVersion)
	}
	n := len(t.Spec.Levels)
	if n < 1 || n > 16 {
		return fmt.Errorf("%d levels: Kueue wants 1 to 16", n)
	}
	seen := map[string]bool{}
	for i, level := range t.Spec.Levels {
		if seen[level.NodeLabel] {
			return fmt.Errorf("level %q twice", level.NodeLabel)
		}
		seen[level.NodeLabel] = true
		if level.NodeLabel == "kubernetes.io/hostname" && i != n-1 {
			return fmt.Errorf("kubernetes.io/hostname is level %d of %d, not the last", i+1, n)
		}
	}
	return nil
}

func checkHyperNode(h *volcano.HyperNode) (string, error) {
	if h.APIVersion != volcano.SchemeGroupVersion.String() || h.Kind != "HyperNode" {
		return "", fmt.Errorf("%s/%s is not a %s HyperNode", h.APIVersion, h.Kind, volcano.SchemeGroupVersion)
	}
	if h.Spec.Tier < 0 {
		return "", fmt.Errorf("tier %d: Volcano wants >= 0", h.Spec.Tier)
	}
	if len(h.Spec.Members) == 0 {
		return "", fmt.Errorf("no members")
	}
	for i, m := range h.Spec.Members {
		n := 0
		if m.Selector.ExactMatch != nil {
			n++
		}
		if m.Selector.RegexMatch != nil {
			n++
		}
		if m.Selector.LabelMatch != nil {
			n++
		}
		if n != 1 {
			return "", fmt.Errorf("member %d has %d selectors, not one", i+1, n)
		}
	}
	return fmt.Sprintf("tier=%d members=%d", h.Spec.Tier, len(h.Spec.Members)), nil
}

func main() {
	api := flag.String("api", "kueue", "kueue or volcano")
	flag.Parse()
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		os.Exit(2)
	}
	docs, err := documents(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "split:", err)
		os.Exit(1)
	}
	if len(docs) == 0 {
		fmt.Fprintln(os.Stderr, "no object on stdin")
		os.Exit(1)
	}
	for i, doc := range docs {
		if *api == "volcano" {
			var h volcano.HyperNode
			if err := yaml.UnmarshalStrict(doc, &h); err != nil {
				fmt.Fprintf(os.Stderr, "object %d: %v\n", i+1, err)
				os.Exit(1)
			}
			detail, err := checkHyperNode(&h)
			if err != nil {
				fmt.Fprintf(os.Stderr, "object %d (%s): %v\n", i+1, h.Name, err)
				os.Exit(1)
			}
			fmt.Printf("ok %s %s\n", h.Name, detail)
			continue
		}
		var t kueue.Topology
		if err := yaml.UnmarshalStrict(doc, &t); err != nil {
			fmt.Fprintf(os.Stderr, "object %d: %v\n", i+1, err)
			os.Exit(1)
		}
		if err := check(&t); err != nil {
			fmt.Fprintf(os.Stderr, "object %d (%s): %v\n", i+1, t.Name, err)
			os.Exit(1)
		}
		labels := make([]string, 0, len(t.Spec.Levels))
		for _, level := range t.Spec.Levels {
			labels = append(labels, level.NodeLabel)
		}
		fmt.Printf("ok %s %s\n", t.Name, strings.Join(labels, ","))
	}
}
