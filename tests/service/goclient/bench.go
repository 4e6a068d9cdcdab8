package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "nvtopo.dev/goclient/nvtopov1"
)

// benchPlace has `clients` callers, each on its own connection, send dry-run Place calls
// back to back for `seconds`, and prints one JSON object: calls, errors, calls/s and the
// latency percentiles in microseconds.
func benchPlace(target string, req *pb.PlacementRequest, clients int, seconds float64) {
	conns := make([]*grpc.ClientConn, clients)
	for i := range conns {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fail("connect %s: %v", target, err)
		}
		defer conn.Close()
		conns[i] = conn
		// Warm up: connect and run a few calls before the clock starts.
		c := pb.NewPlacementServiceClient(conn)
		for k := 0; k < 5; k++ {
			if _, err := c.Place(context.Background(), &pb.PlaceRequest{Request: req, DryRun: true}); err != nil {
				fail("warm-up Place: %v", err)
			}
		}
	}
	var mu sync.Mutex
	var all []time.Duration
	errors := 0
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(time.Duration(seconds * float64(time.Second)))
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(conn *grpc.ClientConn) {
			defer wg.Done()
			c := pb.NewPlacementServiceClient(conn)
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t := time.Now()
				_, err := c.Place(ctx, &pb.PlaceRequest{Request: req, DryRun: true})
				d := time.Since(t)
				cancel()
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			all = append(all, mine...)
			errors += bad
			mu.Unlock()
		}(conns[i])
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if len(all) == 0 {
		fail("no call succeeded (%d errors)", errors)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	pct := func(q float64) float64 {
		i := int(q * float64(len(all)-1))
		return float64(all[i].Nanoseconds()) / 1e3
	}
	out, _ := json.Marshal(map[string]any{
		"clients": clients, "calls": len(all), "errors": errors, "seconds": elapsed,
		"callsPerSecond": float64(len(all)) / elapsed,
		"p50us":          pct(0.50), "p99us": pct(0.99), "maxus": pct(1.0),
	})
	fmt.Fprintln(os.Stdout, string(out))
}
