// Command kueuecheck decodes nvtopo's Kueue objects strictly with Kueue's own Go API types.
//
// It reads YAML documents (separated by "---") or one JSON v1 List from stdin; every
// object must be a kueue.x-k8s.io/v1beta2 Topology, and a field that Kueue's types do not
// have, or a value of the wrong type, fails the decode (sigs.k8s.io/yaml UnmarshalStrict,
// which decodes JSON with unknown fields disallowed). It then checks what the CRD's
// validation rules say of spec.levels (1-16 items, unique, kubernetes.io/hostname only as
// the last level), and prints one line per object: "ok <name> <level>,<level>,...".
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/yaml"
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

func main() {
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
