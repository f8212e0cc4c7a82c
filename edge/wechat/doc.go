// Package wechat is Sprout's side of the WeChat official-account callback: the signature and
// AES-256-CBC "safe mode" crypto, the inbound message model (normal messages, events and the
// hardware platform's device_event/device_text pushes), passive replies, and an http.Handler that
// verifies every request before handing one decoded Message to a Dispatcher.
//
// It does not decide anything about users or devices: the Dispatcher (the user grain, later) owns
// deduplication, binding and commands. It does not call WeChat either; the active API client lives
// in edge/wechat/api and Sprout's own signed QR codes in edge/wechat/qr.
package wechat
