package signed

import "testing"

func TestSignedValuesAreBoundToKeyAndPurpose(t *testing.T) {
	k := Key("0123456789abcdef0123456789abcdef")
	v := k.Sign("session", "alice|123")
	if got, ok := k.Verify("session", v); !ok || got != "alice|123" {
		t.Fatalf("round trip: %q %v", got, ok)
	}
	for name, bad := range map[string]func() (string, bool){
		"other purpose": func() (string, bool) { return k.Verify("csrf", v) },
		"other key":     func() (string, bool) { return Key("another key, 32 bytes long......").Verify("session", v) },
		"tampered":      func() (string, bool) { return k.Verify("session", "Ym9i"+v[4:]) },
		"no mac":        func() (string, bool) { return k.Verify("session", "YWxpY2U") },
	} {
		if _, ok := bad(); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}
