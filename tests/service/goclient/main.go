// Command goclient drives nvtopo's placement service from Go, through the client that
// protoc-gen-go and protoc-gen-go-grpc generate from proto/nvtopo/v1/placement.proto.
//
// It runs one script of calls and prints one JSON object per call on stdout, which the
// pytest that built it compares with nvtopo.place on the same cluster:
//
//	goclient -target unix:/path/to.sock -gpus 16 -nodes 4 -domain required
//
// With -bench-clients N it is the load generator of benches/bench_service.py instead.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "nvtopo.dev/goclient/nvtopov1"
)

var domains = map[string]pb.Domain{
	"required":  pb.Domain_DOMAIN_REQUIRED,
	"preferred": pb.Domain_DOMAIN_PREFERRED,
	"none":      pb.Domain_DOMAIN_NONE,
}

type node struct {
	Name string  `json:"name"`
	Gpus []int32 `json:"gpus"`
}

type placement struct {
	Nodes         []node   `json:"nodes"`
	Cliques       []string `json:"cliques"`
	ComputeDomain bool     `json:"computeDomain"`
	GpuCount      int32    `json:"gpuCount"`
}

func convert(p *pb.Placement) placement {
	out := placement{Cliques: p.GetCliques(), ComputeDomain: p.GetComputeDomain(), GpuCount: p.GetGpuCount()}
	if out.Cliques == nil {
		out.Cliques = []string{}
	}
	for _, n := range p.GetNodes() {
		out.Nodes = append(out.Nodes, node{Name: n.GetName(), Gpus: n.GetGpus()})
	}
	return out
}

func emit(call string, v map[string]any) {
	v["call"] = call
	line, err := json.Marshal(v)
	if err != nil {
		fail("encode %s: %v", call, err)
	}
	fmt.Println(string(line))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "goclient: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	target := flag.String("target", "", "service address (unix:/path or host:port)")
	gpus := flag.Int("gpus", 16, "GPUs to place")
	nodes := flag.Int("nodes", 4, "nodes to place on (0: as few as possible)")
	domain := flag.String("domain", "required", "required, preferred or none")
	benchClients := flag.Int("bench-clients", 0, "instead of the script: this many callers of Place (dry run)")
	benchSeconds := flag.Float64("bench-seconds", 5, "how long -bench-clients call")
	flag.Parse()
	d, ok := domains[*domain]
	if !ok {
		fail("-domain %q: want required, preferred or none", *domain)
	}
	if *benchClients > 0 {
		benchPlace(*target, &pb.PlacementRequest{Gpus: int32(*gpus), Nodes: int32(*nodes), Domain: d}, *benchClients, *benchSeconds)
		return
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("connect %s: %v", *target, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "nvtopo.v1.PlacementService"})
	if err != nil {
		fail("health: %v", err)
	}
	emit("Health", map[string]any{"status": health.GetStatus().String()})

	c := pb.NewPlacementServiceClient(conn)
	req := &pb.PlacementRequest{Gpus: int32(*gpus), Nodes: int32(*nodes), Domain: d}

	// A capacity stream first, so that it sees the reservation come and go.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	stream, err := c.WatchCapacity(wctx, &pb.WatchCapacityRequest{})
	if err != nil {
		fail("WatchCapacity: %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		fail("WatchCapacity first update: %v", err)
	}
	emit("WatchCapacity", map[string]any{"freeGpus": first.GetFreeGpus(), "reservations": first.GetReservations(), "cliques": len(first.GetCliques()), "token": first.GetResumeToken() != ""})

	dry, err := c.Place(ctx, &pb.PlaceRequest{Request: req, DryRun: true})
	if err != nil {
		fail("Place: %v", err)
	}
	emit("Place", map[string]any{"placement": convert(dry.GetPlacement()), "reservationId": dry.GetReservationId()})

	ex, err := c.Explain(ctx, &pb.ExplainRequest{Request: req})
	if err != nil {
		fail("Explain: %v", err)
	}
	verdicts := map[string]string{}
	for _, v := range ex.GetCliques() {
		verdicts[v.GetClique()] = v.GetVerdict().String()
	}
	emit("Explain", map[string]any{"placement": convert(ex.GetPlacement()), "verdicts": verdicts})

	res, err := c.Reserve(ctx, &pb.ReserveRequest{Request: req, TtlSeconds: 60, IdempotencyKey: "go-client-1"})
	if err != nil {
		fail("Reserve: %v", err)
	}
	again, err := c.Reserve(ctx, &pb.ReserveRequest{Request: req, TtlSeconds: 60, IdempotencyKey: "go-client-1"})
	if err != nil {
		fail("Reserve again: %v", err)
	}
	emit("Reserve", map[string]any{"placement": convert(res.GetReservation().GetPlacement()), "created": res.GetCreated(), "sameOnRetry": again.GetReservation().GetId() == res.GetReservation().GetId() && !again.GetCreated()})

	held, err := stream.Recv()
	if err != nil {
		fail("WatchCapacity after Reserve: %v", err)
	}
	emit("WatchCapacity", map[string]any{"freeGpus": held.GetFreeGpus(), "reservations": held.GetReservations()})

	rel, err := c.Release(ctx, &pb.ReleaseRequest{ReservationId: res.GetReservation().GetId()})
	if err != nil {
		fail("Release: %v", err)
	}
	_, err = c.Release(ctx, &pb.ReleaseRequest{ReservationId: res.GetReservation().GetId()})
	emit("Release", map[string]any{"placement": convert(rel.GetPlacement()), "againCode": status.Code(err).String()})

	back, err := stream.Recv()
	if err != nil {
		fail("WatchCapacity after Release: %v", err)
	}
	emit("WatchCapacity", map[string]any{"freeGpus": back.GetFreeGpus(), "reservations": back.GetReservations()})

	_, err = c.Place(ctx, &pb.PlaceRequest{Request: &pb.PlacementRequest{Gpus: -1}, DryRun: true})
	st := status.Convert(err)
	emit("BadPlace", map[string]any{"code": st.Code().String(), "message": st.Message(), "invalid": st.Code() == codes.InvalidArgument})
}
