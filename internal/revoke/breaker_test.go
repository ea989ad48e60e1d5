package revoke

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestBreaker(t *testing.T) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	b := &Breaker{Failures: 3, Cooldown: 10 * time.Second, MaxCooldown: 25 * time.Second, Now: c.now}
	for range 2 {
		b.Failure(0)
		if w := b.Wait(); w != 0 {
			t.Fatalf("open after fewer failures than the threshold: %s", w)
		}
	}
	b.Failure(0)
	if w := b.Wait(); w != 10*time.Second {
		t.Fatalf("wait %s, want the cool-down", w)
	}
	c.t = c.t.Add(10 * time.Second)
	if w := b.Wait(); w != 0 {
		t.Fatalf("no probe after the cool-down: %s", w)
	}
	if w := b.Wait(); w == 0 {
		t.Fatal("a second probe while the first is out")
	}
	b.Failure(0) // the probe failed: twice the cool-down
	if w := b.Wait(); w != 20*time.Second {
		t.Fatalf("wait %s after a failed probe, want 20s", w)
	}
	c.t = c.t.Add(20 * time.Second)
	b.Wait()
	b.Failure(0)
	if w := b.Wait(); w != 25*time.Second {
		t.Fatalf("wait %s, want the max cool-down", w)
	}
	c.t = c.t.Add(25 * time.Second)
	b.Wait()
	b.Success()
	if w := b.Wait(); w != 0 {
		t.Fatalf("still waiting after a successful probe: %s", w)
	}
	b.Failure(90 * time.Second) // Retry-After holds everything, whatever the count
	if w := b.Wait(); w != 90*time.Second {
		t.Fatalf("Retry-After not honoured: %s", w)
	}
}
