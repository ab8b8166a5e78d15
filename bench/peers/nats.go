//go:build nats

// NATS: responders in one queue group on subject bench.echo; each requester
// publishes with its own inbox as the reply subject.
package main

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

const name = "nats"

type natsSystem struct{ url string }

func open(url string) system { return natsSystem{url} }

func (s natsSystem) serve(count int) (func(), error) {
	var conns []*nats.Conn
	stop := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := 0; i < count; i++ {
		c, err := nats.Connect(s.url)
		if err != nil {
			stop()
			return nil, err
		}
		conns = append(conns, c)
		_, err = c.QueueSubscribe("bench.echo", "responders", func(m *nats.Msg) { c.Publish(m.Reply, m.Data) })
		if err == nil {
			err = c.Flush() // the server has the subscription before any request is sent
		}
		if err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

type natsRequester struct {
	conn  *nats.Conn
	inbox string
	sub   *nats.Subscription
}

func (s natsSystem) dial(id int) (requester, error) {
	c, err := nats.Connect(s.url)
	if err != nil {
		return nil, err
	}
	r := &natsRequester{conn: c, inbox: fmt.Sprintf("bench.reply.%d.%s", id, nats.NewInbox())}
	if r.sub, err = c.SubscribeSync(r.inbox); err == nil {
		err = c.Flush()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

func (r *natsRequester) send(body []byte) error {
	return r.conn.PublishRequest("bench.echo", r.inbox, body)
}

func (r *natsRequester) recv(timeout time.Duration) ([]byte, error) {
	m, err := r.sub.NextMsg(timeout)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func (r *natsRequester) close() { r.conn.Close() }
