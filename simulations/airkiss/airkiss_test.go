package airkiss

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCRC8IsMaximDallas(t *testing.T) {
	if got := CRC8([]byte("123456789")); got != 0xA1 {
		t.Fatalf("CRC8(123456789) = %#x, want the Maxim check value 0xa1", got)
	}
	if CRC8(nil) != 0 {
		t.Fatal("CRC8 of nothing must be 0")
	}
}

func TestEncodeFollowsTheWireLayout(t *testing.T) {
	ssid, pwd := "SproutHome", "12345678"
	w := Encode(ssid, pwd, 0xAB)
	for i := 0; i < GuideRepeats*4; i++ {
		if w[i] != i%4+1 {
			t.Fatalf("guide word %d = %d", i, w[i])
		}
	}
	m := w[GuideRepeats*4:]
	total := len(ssid) + len(pwd) + 1 // 19 = 0x13
	crc := CRC8([]byte(ssid))
	want := []int{0x01, 0x10 | 0x3, 0x20 | int(crc>>4), 0x30 | int(crc&0xF)}
	if total != 0x13 {
		t.Fatal("test assumes L = 0x13")
	}
	for r := 0; r < MagicRepeats; r++ {
		for j := 0; j < 4; j++ {
			if m[r*4+j] != want[j] {
				t.Fatalf("magic repeat %d word %d = %#x, want %#x", r, j, m[r*4+j], want[j])
			}
		}
	}
	p := m[MagicRepeats*4:]
	plCRC := CRC8([]byte{8})
	if p[0] != 0x40 || p[1] != 0x58 || p[2] != 0x60|int(plCRC>>4) || p[3] != 0x70|int(plCRC&0xF) {
		t.Fatalf("prefix = %#x", p[:4])
	}
	seq := p[4:]
	// 19 data bytes: 5 groups (4,4,4,4,3) of 2 headers + bytes
	if len(seq) != 5*2+total {
		t.Fatalf("sequence has %d words, want %d", len(seq), 5*2+total)
	}
	for _, v := range seq {
		if v&0x180 != 0x80 && v&0x100 != 0x100 {
			t.Fatalf("sequence word %#x is neither a header nor a data byte", v)
		}
	}
}

func TestSmallTotalLengthAvoidsAZeroWord(t *testing.T) {
	w := Encode("a", "", 1) // L = 2: the high nibble is 0
	if got := w[GuideRepeats*4]; got != 0x08 {
		t.Fatalf("first magic word = %#x, want 0x08", got)
	}
}

// decodeClean is a minimal reference decoder for an undisturbed round.
func decodeClean(t *testing.T, w []int) (ssid, pwd string, random byte) {
	t.Helper()
	m := w[GuideRepeats*4:]
	hi := m[0] & 0xF
	if m[0] == 0x08 {
		hi = 0
	}
	total := hi<<4 | m[1]&0xF
	p := m[MagicRepeats*4:]
	pl := (p[0]&0xF)<<4 | p[1]&0xF
	var data []byte
	seq := p[4:]
	for i := 0; i < len(seq); {
		crc, index := seq[i]&0x7F, seq[i+1]&0x7F
		i += 2
		var group []byte
		for i < len(seq) && seq[i]&0x100 != 0 {
			group = append(group, byte(seq[i]))
			i++
		}
		if got := int(CRC8(append([]byte{byte(index)}, group...)) & 0x7F); got != crc {
			t.Fatalf("group %d crc %#x, header says %#x", index, got, crc)
		}
		data = append(data, group...)
	}
	if len(data) != total {
		t.Fatalf("data %d bytes, magic says %d", len(data), total)
	}
	return string(data[pl+1:]), string(data[:pl]), data[pl]
}

func TestEncodeRoundTripsThroughAReferenceDecoder(t *testing.T) {
	for _, c := range []struct{ ssid, pwd string }{
		{"SproutHome", "12345678"}, {"x", ""}, {"植物-WiFi", "密码 pass 1"},
		{"0123456789abcdef0123456789ABCDEF", string(bytes.Repeat([]byte("p"), 64))},
	} {
		s, p, r := decodeClean(t, Encode(c.ssid, c.pwd, 0x7E))
		if s != c.ssid || p != c.pwd || r != 0x7E {
			t.Errorf("decoded (%q, %q, %#x), want (%q, %q, 0x7e)", s, p, r, c.ssid, c.pwd)
		}
	}
}

func TestEncodeRefusesWhatTheDecoderCannotHold(t *testing.T) {
	if Encode("", "pw", 1) != nil || Encode(string(make([]byte, 33)), "", 1) != nil ||
		Encode("ok", string(make([]byte, 65)), 1) != nil {
		t.Fatal("Encode accepted an empty SSID or an oversized field")
	}
	if err := Check("", ""); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Check = %v", err)
	}
}

func TestAirAddsBaseLossNoiseAndIsReproducible(t *testing.T) {
	w := Encode("SproutHome", "12345678", 1)
	clean := Air(w, Channel{Base: 42, Rounds: 2})
	if len(clean) != 2*len(w) || clean[0] != 43 {
		t.Fatalf("clean air: %d lengths starting %d", len(clean), clean[0])
	}
	lossy := Air(w, Channel{Base: 42, Rounds: 2, Loss: 0.3, Seed: 1})
	noisy := Air(w, Channel{Base: 42, Rounds: 2, Noise: 0.3, Interleave: 0.1, Seed: 1})
	if len(lossy) >= len(clean) || len(noisy) <= len(clean) {
		t.Fatalf("loss gave %d, noise %d, clean %d lengths", len(lossy), len(noisy), len(clean))
	}
	again := Air(w, Channel{Base: 42, Rounds: 2, Loss: 0.3, Seed: 1})
	if !equal(lossy, again) {
		t.Fatal("the same seed gave different air")
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The C tests read these files; regenerate with `go generate ./simulations/airkiss`.
func TestCommittedVectorsAreCurrent(t *testing.T) {
	dir := filepath.Join("..", "..", "firmware", "test", "vectors")
	for _, v := range Vectors() {
		var buf bytes.Buffer
		if err := Write(&buf, v); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "airkiss_"+v.Name+".txt")
		have, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go generate ./simulations/airkiss)", err)
		}
		if !bytes.Equal(have, buf.Bytes()) {
			t.Errorf("%s is stale: run go generate ./simulations/airkiss", path)
		}
	}
}
