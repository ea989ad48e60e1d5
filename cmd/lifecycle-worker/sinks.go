package main

import (
	"context"

	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// dlqOps offers the dead letters to the API.
type dlqOps struct{ d *revoke.DeadLetters }

func (o dlqOps) List(ctx context.Context, target, eventID, actor string) (any, error) {
	l, err := o.d.ListFor(ctx, revoke.DLQFilter{Target: target, EventID: eventID}, actor)
	if l == nil {
		l = []revoke.Listed{}
	}
	return l, err
}

func (o dlqOps) Replay(ctx context.Context, target, eventID, actor string) (any, error) {
	l, err := o.d.Replay(ctx, revoke.DLQFilter{Target: target, EventID: eventID}, actor)
	if l == nil {
		l = []revoke.Listed{}
	}
	return l, err
}
