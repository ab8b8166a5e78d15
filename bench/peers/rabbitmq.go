//go:build rabbitmq

// RabbitMQ: RPC the way its documentation recommends, responders consuming one
// transient queue (prefetch 32, like the zmqkit device's workers of capacity 32,
// acking each request), requesters using direct reply-to.
package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	name     = "rabbitmq"
	queue    = "bench.echo"
	replyTo  = "amq.rabbitmq.reply-to"
	prefetch = 32
)

type rabbitSystem struct{ url string }

func open(url string) system { return rabbitSystem{url} }

func (s rabbitSystem) serve(count int) (func(), error) {
	var conns []*amqp.Connection
	stop := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := 0; i < count; i++ {
		c, err := amqp.Dial(s.url)
		if err != nil {
			stop()
			return nil, err
		}
		conns = append(conns, c)
		ch, err := c.Channel()
		if err == nil {
			_, err = ch.QueueDeclare(queue, false, false, false, false, nil)
		}
		if err == nil {
			err = ch.Qos(prefetch, 0, false)
		}
		var deliveries <-chan amqp.Delivery
		if err == nil {
			deliveries, err = ch.Consume(queue, "", false, false, false, false, nil)
		}
		if err != nil {
			stop()
			return nil, err
		}
		go func() {
			for d := range deliveries {
				ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{Body: d.Body})
				d.Ack(false)
			}
		}()
	}
	return stop, nil
}

type rabbitRequester struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	replies <-chan amqp.Delivery
}

func (s rabbitSystem) dial(int) (requester, error) {
	c, err := amqp.Dial(s.url)
	if err != nil {
		return nil, err
	}
	r := &rabbitRequester{conn: c}
	if r.ch, err = c.Channel(); err == nil {
		r.replies, err = r.ch.Consume(replyTo, "", true, false, false, false, nil)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

func (r *rabbitRequester) send(body []byte) error {
	return r.ch.Publish("", queue, false, false, amqp.Publishing{ReplyTo: replyTo, Body: body})
}

func (r *rabbitRequester) recv(timeout time.Duration) ([]byte, error) {
	select {
	case d, ok := <-r.replies:
		if !ok {
			return nil, errors.New("reply channel closed")
		}
		return d.Body, nil
	case <-time.After(timeout):
		return nil, errors.New("timed out")
	}
}

func (r *rabbitRequester) close() { r.conn.Close() }

// The durable work of queue_bench's durable mode: 4 producers publishing persistent
// (delivery mode 2) 64-byte messages to a durable queue with publisher confirms, at most
// 100 unconfirmed each, and 4 consumers (prefetch 100) acking each message. Returns the
// messages consumed and acked per second, from the first publish to the last ack.
func init() { durable = durableRun }

const (
	durableQueue    = "bench.durable"
	durableWindow   = 100
	durablePrefetch = 100
)

func durableRun(url string, perProducer int) (float64, error) {
	var conns []*amqp.Connection
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	channel := func() (*amqp.Channel, error) {
		c, err := amqp.Dial(url)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		ch, err := c.Channel()
		if err == nil {
			_, err = ch.QueueDeclare(durableQueue, true, false, false, false, nil)
		}
		return ch, err
	}
	setup, err := channel()
	if err == nil {
		_, err = setup.QueuePurge(durableQueue, false) // an earlier run's leftovers are not this run's work
	}
	if err != nil {
		return 0, err
	}
	total := int64(perProducer * requesters)
	var acked int64
	done := make(chan struct{})
	var mu sync.Mutex
	for i := 0; i < responders; i++ {
		ch, err := channel()
		if err == nil {
			err = ch.Qos(durablePrefetch, 0, false)
		}
		var deliveries <-chan amqp.Delivery
		if err == nil {
			deliveries, err = ch.Consume(durableQueue, "", false, false, false, false, nil)
		}
		if err != nil {
			return 0, err
		}
		go func() {
			for d := range deliveries {
				if d.Ack(false) != nil {
					return
				}
				mu.Lock()
				acked++
				if acked == total {
					close(done)
				}
				mu.Unlock()
			}
		}()
	}
	producers := make([]*amqp.Channel, requesters)
	confirms := make([]chan amqp.Confirmation, requesters)
	for i := range producers {
		if producers[i], err = channel(); err == nil {
			err = producers[i].Confirm(false)
		}
		if err != nil {
			return 0, err
		}
		confirms[i] = producers[i].NotifyPublish(make(chan amqp.Confirmation, durableWindow))
	}
	errs := make([]error, requesters)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range producers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = produce(producers[i], confirms[i], perProducer)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	select {
	case <-done:
	case <-time.After(timeout):
		mu.Lock()
		defer mu.Unlock()
		return 0, fmt.Errorf("consumers acked %d of %d", acked, total)
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// Publishes n persistent messages keeping at most durableWindow unconfirmed.
func produce(ch *amqp.Channel, confirms <-chan amqp.Confirmation, n int) error {
	body := make([]byte, bodySize)
	for sent, confirmed := 0, 0; confirmed < n; {
		for ; sent < n && sent-confirmed < durableWindow; sent++ {
			msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}
			if err := ch.Publish("", durableQueue, false, false, msg); err != nil {
				return err
			}
		}
		select {
		case c, ok := <-confirms:
			if !ok || !c.Ack {
				return fmt.Errorf("message %d not confirmed", confirmed)
			}
			confirmed++
		case <-time.After(timeout):
			return fmt.Errorf("no confirm after %d", confirmed)
		}
	}
	return nil
}
