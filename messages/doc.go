// Package messages holds Sprout's protocols as protobuf: devicepb is the device wire protocol
// (what pots and edges exchange over TCP), actorpb the actor protocol (what edges, WeChat callbacks
// and grains exchange inside the cluster). Generated Go lives beside each .proto; `make proto`
// regenerates it. This package holds no logic beyond framing helpers.
package messages
