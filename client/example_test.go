package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/leasecluster/leasecluster/client"
	"github.com/leasecluster/leasecluster/client/clienttest"
)

// Grant a lease and attach an item, against an in-process fake cluster whose
// leader (node 2) is not among the endpoints: the client follows the hint.
func Example() {
	fc, err := clienttest.Start(3)
	if err != nil {
		log.Fatal(err)
	}
	defer fc.Close()
	fc.SetLeader(2)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, fc.Addrs()[:2])
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	lease, err := c.Grant(ctx, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	item, err := c.Attach(ctx, lease.ID, "services/api/1", "10.0.0.7:8080")
	if err != nil {
		log.Fatal(err)
	}
	got, err := c.Get(ctx, "services/api/1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(lease.TTL, got.Value, got.Revision == item.Revision)
	// Output: 10s 10.0.0.7:8080 true
}

// Keep a lease alive and react to trouble. Needs a running cluster.
func ExampleClient_KeepAlive() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Grant(ctx, 15*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	ka, err := c.KeepAlive(ctx, lease.ID)
	if err != nil {
		log.Fatal(err)
	}
	defer ka.Close()
	for {
		select {
		case <-ka.Jeopardy():
			log.Printf("lease %d in jeopardy; %v left", ka.ID(), time.Until(ka.Deadline()))
			select {
			case <-ka.Lost():
			case <-time.After(time.Until(ka.Deadline())):
			}
		case <-ka.Lost():
			log.Printf("lease %d lost: %v", ka.ID(), ka.Err())
			return
		}
	}
}

// Take a lock and pass its fencing token to the guarded resource. Needs a
// running cluster.
func ExampleClient_Lock() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lock, err := c.Lock(ctx, "locks/reports", 10*time.Second, client.WithLockValue("worker-7"))
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(context.Background())
	work := func(ctx context.Context, token uint64) error {
		// Writes to storage carry the token; storage rejects tokens older
		// than the newest it has seen.
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-lock.Lost() // stop working as soon as ownership is in doubt
		cancel()
	}()
	if err := work(ctx, lock.Token()); err != nil {
		log.Print(err)
	}
}
