package jsbus_test

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsMsg turns a consumed JetStream message back into a *nats.Msg, as a
// core-NATS subscriber would see it.
type natsMsg struct{ m jetstream.Msg }

func (n natsMsg) msg() *nats.Msg {
	return &nats.Msg{Subject: n.m.Subject(), Header: n.m.Headers(), Data: n.m.Data()}
}
