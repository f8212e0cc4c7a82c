package airkiss

//go:generate go run ./cmd/vectors -dir ../../firmware/test/vectors
