package plant

import (
	"math"
	"math/rand/v2"
	"time"
)

// ModelParams shape the simulated pot. Zero fields take the defaults named on each field.
type ModelParams struct {
	// DryingPctPerHour is the soil moisture lost per simulated hour at 20 °C in the dark (default 0.6).
	DryingPctPerHour float64
	// HeatFactor is the extra drying per °C above 20 °C, as a fraction (default 0.05: 25 °C dries 25 % faster).
	HeatFactor float64
	// SunFactor is the extra drying in full sun, as a fraction (default 1.5).
	SunFactor float64
	// MeanTempC and SwingTempC shape the day/night temperature cycle (defaults 21 and 5; warmest at 15:00 UTC).
	MeanTempC, SwingTempC float64
	// MoisturePctPerMl is how much 1 ml of water raises soil moisture (default 0.2: 100 ml is +20 %).
	MoisturePctPerMl float64
	// TankMl is the tank's capacity (default 1000).
	TankMl float64
	// PumpMlPerS is the pump's flow (default 10: a 30 s run moves 300 ml).
	PumpMlPerS float64
	// NoisePct is the standard deviation of the moisture sensor's noise; temperature gets a fifth of
	// it in °C (default 0.5). Use a negative value for no noise.
	NoisePct float64
	// SupplyMv is the nominal supply voltage reported (default 5000).
	SupplyMv float64
}

func (m ModelParams) withDefaults() ModelParams {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&m.DryingPctPerHour, 0.6)
	def(&m.HeatFactor, 0.05)
	def(&m.SunFactor, 1.5)
	def(&m.MeanTempC, 21)
	def(&m.SwingTempC, 5)
	def(&m.MoisturePctPerMl, 0.2)
	def(&m.TankMl, 1000)
	def(&m.PumpMlPerS, 10)
	def(&m.NoisePct, 0.5)
	def(&m.SupplyMv, 5000)
	if m.NoisePct < 0 {
		m.NoisePct = 0
	}
	return m
}

// soil is the physical state of the pot at simulated time at. Plain values, no clock: advance moves
// it forward.
type soil struct {
	p        ModelParams
	at       time.Time
	moisture float64 // %
	tank     float64 // %
}

// hourOfDay in UTC, fractional.
func hourOfDay(t time.Time) float64 {
	t = t.UTC()
	return float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
}

// temperature follows a sine with its peak at 15:00.
func (s *soil) temperature(t time.Time) float64 {
	return s.p.MeanTempC + s.p.SwingTempC*math.Cos(2*math.Pi*(hourOfDay(t)-15)/24)
}

// sun is 0 at night and peaks at 1 at noon (06:00-18:00 daylight).
func sun(t time.Time) float64 {
	return math.Max(0, math.Sin(2*math.Pi*(hourOfDay(t)-6)/24))
}

// dryingRate in % per hour at t.
func (s *soil) dryingRate(t time.Time) float64 {
	heat := 1 + s.p.HeatFactor*(s.temperature(t)-20)
	if heat < 0.1 {
		heat = 0.1
	}
	return s.p.DryingPctPerHour * heat * (1 + s.p.SunFactor*sun(t))
}

// advance integrates drying up to t in steps of at most ten simulated minutes.
func (s *soil) advance(t time.Time) {
	const step = 10 * time.Minute
	for s.at.Before(t) {
		d := t.Sub(s.at)
		if d > step {
			d = step
		}
		s.moisture -= s.dryingRate(s.at) * d.Hours()
		s.at = s.at.Add(d)
	}
	if s.moisture < 0 {
		s.moisture = 0
	}
}

// water pumps for ms (simulated) and returns the millilitres moved, limited by what the tank holds.
func (s *soil) water(ms uint32) float64 {
	ml := s.p.PumpMlPerS * float64(ms) / 1000
	if have := s.p.TankMl * s.tank / 100; ml > have {
		ml = have
	}
	s.tank -= ml / s.p.TankMl * 100
	if s.tank < 0 {
		s.tank = 0
	}
	s.moisture = math.Min(100, s.moisture+ml*s.p.MoisturePctPerMl)
	return ml
}

// reading is what the sensors report at s.at, with noise.
func (s *soil) reading(rng *rand.Rand) (moisture, tempC, tank float64, supplyMv uint32) {
	n := s.p.NoisePct
	moisture = clamp(s.moisture+rng.NormFloat64()*n, 0, 100)
	tempC = s.temperature(s.at) + rng.NormFloat64()*n/5
	tank = clamp(s.tank+rng.NormFloat64()*n/5, 0, 100)
	supplyMv = uint32(s.p.SupplyMv + rng.NormFloat64()*n*20)
	return
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
