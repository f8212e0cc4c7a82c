package devicelink

import "testing"

func TestGateLetsInAtMostItsLimit(t *testing.T) {
	g := NewGate(2)
	for i := 1; i <= 2; i++ {
		if !g.Enter() {
			t.Fatalf("a gate of 2 refused entry %d", i)
		}
	}
	if g.Enter() {
		t.Fatal("a gate of 2 let in a third")
	}
	g.Leave()
	if !g.Enter() {
		t.Fatal("a place given back was not taken again")
	}
	open := NewGate(-1)
	for i := 0; i < 1000; i++ {
		if !open.Enter() {
			t.Fatalf("an unbounded gate refused entry %d", i)
		}
	}
}
