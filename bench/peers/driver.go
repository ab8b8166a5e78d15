// The peer systems' side of bench/plot.py: the same work as build/bench/queue_bench
// (4 requesters x IN_FLIGHT requests outstanding, 4 echo responders sharing the
// load, 64-byte bodies, request/reply over tcp loopback), through NATS or RabbitMQ,
// printing the same header-less CSV rows:
//
//	throughput,<system>,<in flight>,<req/s>   best of three runs
//	latency_us,<system>,<in flight>,<us>      every request of one run
//
// Built offline from Debian's Go packages (see docs/benchmarks.md):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -tags nats|rabbitmq -o OUT ./bench/peers
//
// usage: OUT URL throughput|latency REQUESTS_PER_CLIENT IN_FLIGHT
//
//	OUT URL durable MESSAGES_PER_PRODUCER   (RabbitMQ only; see durable in rabbitmq.go)
//	durable,<system>,<messages/s>           one run
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	requesters = 4
	responders = 4
	bodySize   = 64
	timeout    = 5 * time.Second
)

// A broker under test: echo responders sharing one request queue, and requesters.
type system interface {
	serve(count int) (stop func(), err error)
	dial(id int) (requester, error)
}

// The durable work (4 producers x 100 unconfirmed persistent messages -> 4 consumers acking),
// for the systems that have it: messages consumed and acked per second.
var durable func(url string, perProducer int) (float64, error)

type requester interface {
	send(body []byte) error
	recv(timeout time.Duration) ([]byte, error) // the reply's body
	close()
}

// Keeps inFlight requests outstanding until n are answered; with latencies,
// records each round trip (the request's index travels in its body).
func request(r requester, n, inFlight int, latencies []float64) error {
	sentAt := make([]time.Time, n)
	sent := 0
	sendNext := func() error {
		body := make([]byte, bodySize)
		binary.LittleEndian.PutUint64(body, uint64(sent))
		sentAt[sent] = time.Now()
		sent++
		return r.send(body)
	}
	for sent < n && sent < inFlight {
		if err := sendNext(); err != nil {
			return err
		}
	}
	for received := 0; received < n; received++ {
		body, err := r.recv(timeout)
		if err != nil {
			return fmt.Errorf("after %d replies: %w", received, err)
		}
		if latencies != nil {
			i := binary.LittleEndian.Uint64(body)
			latencies[received] = float64(time.Since(sentAt[i]).Nanoseconds()) / 1000
		}
		if sent < n {
			if err := sendNext(); err != nil {
				return err
			}
		}
	}
	return nil
}

// One run: responders up, then requesters x n requests; returns req/s and, if timed, latencies.
func run(sys system, n, inFlight int, timed bool) (float64, [][]float64, error) {
	stop, err := sys.serve(responders)
	if err != nil {
		return 0, nil, err
	}
	defer stop()
	rs := make([]requester, requesters)
	for i := range rs {
		if rs[i], err = sys.dial(i); err != nil {
			return 0, nil, err
		}
		defer rs[i].close()
	}
	latencies := make([][]float64, requesters)
	errs := make([]error, requesters)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range rs {
		if timed {
			latencies[i] = make([]float64, n)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = request(rs[i], n, inFlight, latencies[i])
		}(i)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			return 0, nil, err
		}
	}
	return float64(n*requesters) / secs, latencies, nil
}

func main() {
	if len(os.Args) == 4 && os.Args[2] == "durable" {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "MESSAGES_PER_PRODUCER must be an integer >= 1")
			os.Exit(2)
		}
		if durable == nil {
			fmt.Fprintf(os.Stderr, "%s: no durable mode\n", name)
			os.Exit(2)
		}
		rate, err := durable(os.Args[1], n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		fmt.Printf("durable,%s,%.0f\n", name, rate)
		return
	}
	if len(os.Args) != 5 || (os.Args[2] != "throughput" && os.Args[2] != "latency") {
		fmt.Fprintf(os.Stderr, "usage: %s URL throughput|latency REQUESTS_PER_CLIENT IN_FLIGHT\n", os.Args[0])
		os.Exit(2)
	}
	n, err1 := strconv.Atoi(os.Args[3])
	inFlight, err2 := strconv.Atoi(os.Args[4])
	if err1 != nil || err2 != nil || n < 1 || inFlight < 1 {
		fmt.Fprintln(os.Stderr, "REQUESTS_PER_CLIENT and IN_FLIGHT must be integers >= 1")
		os.Exit(2)
	}
	sys := open(os.Args[1])
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	if os.Args[2] == "throughput" {
		best := 0.0
		for round := 0; round < 3; round++ {
			rate, _, err := run(sys, n, inFlight, false)
			if err != nil {
				fail(err)
			}
			if rate > best {
				best = rate
			}
		}
		fmt.Printf("throughput,%s,%d,%.0f\n", name, inFlight, best)
		return
	}
	_, latencies, err := run(sys, n, inFlight, true)
	if err != nil {
		fail(err)
	}
	for _, l := range latencies {
		for _, us := range l {
			fmt.Printf("latency_us,%s,%d,%.1f\n", name, inFlight, us)
		}
	}
}
