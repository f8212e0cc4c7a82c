package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// Credential is one device's identity, as `sprout device add --count N --json` prints it:
// {"id": "...", "secret": "<hex>"}.
type Credential struct {
	ID     string
	Secret []byte
}

type credentialJSON struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// MarshalJSON writes the secret as hex.
func (c Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(credentialJSON{ID: c.ID, Secret: hex.EncodeToString(c.Secret)})
}

// UnmarshalJSON reads the secret from hex.
func (c *Credential) UnmarshalJSON(b []byte) error {
	var j credentialJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	secret, err := hex.DecodeString(j.Secret)
	if err != nil {
		return fmt.Errorf("device %q: secret is not hex: %w", j.ID, err)
	}
	c.ID, c.Secret = j.ID, secret
	return nil
}

// LoadCredentials reads a JSON array of {"id", "secret"} from path.
func LoadCredentials(path string) ([]Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading credentials: %w", err)
	}
	var creds []Credential
	if err := json.Unmarshal(b, &creds); err != nil {
		return nil, fmt.Errorf("parsing credentials in %s (want [{\"id\", \"secret\" as hex}]): %w", path, err)
	}
	for i, c := range creds {
		if c.ID == "" || len(c.Secret) == 0 {
			return nil, fmt.Errorf("credentials in %s: entry %d has no id or no secret", path, i)
		}
	}
	return creds, nil
}

// SaveCredentials writes creds to path in the format LoadCredentials reads, readable only by its owner.
func SaveCredentials(path string, creds []Credential) error {
	b, err := json.MarshalIndent(creds, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}
	return nil
}

// NewCredentials makes n devices named prefix-000001... with random 32-byte secrets, for servers
// that take any registry (baseline.Serve with Secrets).
func NewCredentials(prefix string, n int) []Credential {
	creds := make([]Credential, n)
	for i := range creds {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		creds[i] = Credential{ID: fmt.Sprintf("%s-%06d", prefix, i+1), Secret: secret}
	}
	return creds
}

// Secrets indexes creds for a server's secret lookup.
func Secrets(creds []Credential) func(id string) ([]byte, bool) {
	m := make(map[string][]byte, len(creds))
	for _, c := range creds {
		m[c.ID] = c.Secret
	}
	return func(id string) ([]byte, bool) {
		s, ok := m[id]
		return s, ok
	}
}
