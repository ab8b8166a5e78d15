//go:build rabbitmq

// RabbitMQ: RPC the way its documentation recommends, responders consuming one
// transient queue (prefetch 32, like the zmqkit device's workers of capacity 32,
// acking each request), requesters using direct reply-to.
package main

import (
	"errors"
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
