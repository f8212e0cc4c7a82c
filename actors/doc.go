// Package actors holds Sprout's grains: one virtual actor per device and per WeChat user, in a
// protoactor-go cluster. Each grain is a pure state machine (no I/O, no clock of its own) wrapped in a
// thin actor shell that performs its effects: persist through Store, reply, send to a connection,
// schedule a timer. The package defines the Store interface its grains need; implementations live in
// store/. It knows nothing of TCP or HTTP: edges reach grains only through cluster messages.
package actors
