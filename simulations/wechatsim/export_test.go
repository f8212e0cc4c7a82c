package wechatsim

// Test hooks for the external tests' stand-in for Sprout: WeChat's signature and the safe-mode
// envelope (checked against WeChat's vectors in crypto_test.go).

// Sign is WeChat's signature over the sorted parts.
func Sign(parts ...string) string { return sign(parts...) }

// Seal and Open encrypt and decrypt a safe-mode Encrypt text.
func Seal(key, appID string, msg []byte) string {
	e, err := newEnvelope(key, appID)
	if err != nil {
		panic(err)
	}
	return e.encrypt(msg)
}

func Open(key, appID, text string) ([]byte, error) {
	e, err := newEnvelope(key, appID)
	if err != nil {
		return nil, err
	}
	return e.decrypt(text)
}
