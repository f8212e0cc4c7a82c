package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
)

var (
	sinkOnce sync.Once
	sinkURL  string
)

// tracingEnv configures a sprout process to trace ratio of its frames and export the spans over
// OTLP/HTTP to a sink in this process that reads and discards them: the cost measured is the
// node's (sampling, spans, batching, encoding, sending), not a collector's.
func tracingEnv(ratio string) []string {
	sinkOnce.Do(func() {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		sinkURL = s.URL
	})
	return []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + sinkURL, "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + ratio}
}
