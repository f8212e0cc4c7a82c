package memory_test

import (
	"testing"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store/memory"
	"github.com/sprout-iot/sprout/store/storetest"
)

// TestContractPushOutbox runs the push outbox's part of the backends' contract against the
// in-memory store. (The whole contract does not pass yet: the in-memory store does not refuse
// the invalid input the durable backends refuse.)
func TestContractPushOutbox(t *testing.T) {
	storetest.RunPushOutbox(t, func(t *testing.T) actors.Store { return memory.New() })
}
