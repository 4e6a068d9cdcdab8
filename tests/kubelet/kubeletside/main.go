// Command kubeletside plays the kubelet's side of a DRA driver for nvtopo's tests.
//
// It runs the kubelet's own plugin manager (the fsnotify watcher on the plugins_registry
// directory, the reconciler and the registration client) with the kubelet's own DRA plugin
// manager as the "DRAPlugin" handler, so a plugin is discovered, validated and registered
// exactly as a kubelet of the same release does it. Prepare and unprepare calls then go
// through the kubelet's DRA client (which picks v1 or v1beta1 from the registration).
//
// It reads one command per line on stdin and writes one JSON object per line on stdout:
//
//	wait DRIVER SECONDS            until DRIVER is registered and usable
//	prepare DRIVER NS/NAME/UID...  NodePrepareResources for the claims
//	unprepare DRIVER NS/NAME/UID...
//	parallel N DRIVER NS/NAME/UID... N NodePrepareResources calls at once, all answers
//	health SECONDS                 the health updates received so far (waits for one)
//	quit
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drapbv1 "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	draplugin "k8s.io/kubernetes/pkg/kubelet/cm/dra/plugin"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

type healthLog struct {
	mu      sync.Mutex
	updates []map[string]any
}

// HandleWatchResourcesStream records every health update the plugin streams.
func (h *healthLog) HandleWatchResourcesStream(ctx context.Context, stream drahealthv1.DRAResourceHealth_NodeWatchResourcesClient, driver string) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		h.mu.Lock()
		for _, d := range resp.GetDevices() {
			h.updates = append(h.updates, map[string]any{
				"driver":  driver,
				"pool":    d.GetDevice().GetPoolName(),
				"device":  d.GetDevice().GetDeviceName(),
				"health":  d.GetHealth().String(),
				"message": d.GetMessage(),
			})
		}
		h.mu.Unlock()
	}
}

func claims(args []string) ([]*drapbv1.Claim, error) {
	var out []*drapbv1.Claim
	for _, arg := range args {
		parts := strings.Split(arg, "/")
		if len(parts) != 3 {
			return nil, fmt.Errorf("claim %q is not NS/NAME/UID", arg)
		}
		out = append(out, &drapbv1.Claim{Namespace: parts[0], Name: parts[1], Uid: parts[2]})
	}
	return out, nil
}

func main() {
	registry := flag.String("plugins-registry", "", "the kubelet's plugins_registry directory")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	node := flag.String("node", "", "this node's name")
	gates := flag.String("feature-gates", "ResourceHealthStatus=true", "kubelet feature gates")
	klog.InitFlags(nil)
	flag.Parse()
	if err := utilfeature.DefaultMutableFeatureGate.Set(*gates); err != nil {
		klog.Fatalf("feature gates: %v", err)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	getNode := func(ctx context.Context) (*v1.Node, error) {
		return client.CoreV1().Nodes().Get(ctx, *node, metav1.GetOptions{})
	}
	health := &healthLog{}
	dra := draplugin.NewDRAPluginManager(ctx, client, getNode, health, time.Hour)
	manager := pluginmanager.NewPluginManager(*registry, record.NewFakeRecorder(100))
	manager.AddHandler(registerapi.DRAPlugin, dra)
	ready := config.NewSourcesReady(func(sets.Set[string]) bool { return true })
	go manager.Run(ctx, ready, ctx.Done())

	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		reply := map[string]any{"command": fields[0]}
		switch fields[0] {
		case "quit":
			_ = out.Encode(reply)
			dra.Stop()
			return
		case "wait":
			seconds, _ := strconv.Atoi(fields[2])
			deadline := time.Now().Add(time.Duration(seconds) * time.Second)
			for {
				_, err := dra.GetPlugin(fields[1])
				if err == nil {
					reply["registered"] = true
					break
				}
				if time.Now().After(deadline) {
					reply["error"] = err.Error()
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		case "prepare", "unprepare":
			plugin, err := dra.GetPlugin(fields[1])
			if err != nil {
				reply["error"] = err.Error()
				break
			}
			list, err := claims(fields[2:])
			if err != nil {
				reply["error"] = err.Error()
				break
			}
			start := time.Now()
			if fields[0] == "prepare" {
				resp, err := plugin.NodePrepareResources(ctx, &drapbv1.NodePrepareResourcesRequest{Claims: list})
				if err != nil {
					reply["error"] = err.Error()
				} else {
					reply["claims"] = resp.GetClaims()
				}
			} else {
				resp, err := plugin.NodeUnprepareResources(ctx, &drapbv1.NodeUnprepareResourcesRequest{Claims: list})
				if err != nil {
					reply["error"] = err.Error()
				} else {
					reply["claims"] = resp.GetClaims()
				}
			}
			reply["seconds"] = time.Since(start).Seconds()
		case "parallel":
			n, _ := strconv.Atoi(fields[1])
			plugin, err := dra.GetPlugin(fields[2])
			if err != nil {
				reply["error"] = err.Error()
				break
			}
			list, err := claims(fields[3:])
			if err != nil {
				reply["error"] = err.Error()
				break
			}
			answers := make([]any, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					resp, err := plugin.NodePrepareResources(ctx, &drapbv1.NodePrepareResourcesRequest{Claims: list})
					if err != nil {
						answers[i] = map[string]string{"error": err.Error()}
					} else {
						answers[i] = resp.GetClaims()
					}
				}(i)
			}
			wg.Wait()
			reply["answers"] = answers
		case "health":
			seconds, _ := strconv.ParseFloat(fields[1], 64)
			deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
			for {
				health.mu.Lock()
				n := len(health.updates)
				health.mu.Unlock()
				if n > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			health.mu.Lock()
			reply["updates"] = append([]map[string]any{}, health.updates...)
			health.mu.Unlock()
		default:
			reply["error"] = "unknown command " + fields[0]
		}
		if err := out.Encode(reply); err != nil {
			klog.Fatalf("stdout: %v", err)
		}
	}
}
