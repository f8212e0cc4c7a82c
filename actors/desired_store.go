package actors

import (
	"context"
	"time"
)

// Desired configuration scopes: a product's default and one pot's override (which wins).
const (
	ScopeProduct = "product"
	ScopeDevice  = "device"
)

// DesiredConfig is one desired configuration as stored: for every pot of a product (Scope
// ScopeProduct, Key the product) or for one pot (ScopeDevice, Key its id).
type DesiredConfig struct {
	Scope     string
	Key       string
	Config    []byte // protojson of devicepb.Config
	UpdatedAt time.Time
	By        string // who set it ("api", "console", "cli"), for operators
}

// ConfigReport is what a device grain last knew of its pot's configuration, kept so that the
// fleet's drift (pots whose applied configuration differs from the desired one) is one query.
type ConfigReport struct {
	DeviceID   string
	Product    string
	Desired    []byte    // protojson of the effective desired devicepb.Config; nil: none
	Applied    []byte    // protojson of the config the pot last confirmed; nil: none yet
	DriftSince time.Time // zero: in sync (or nothing desired)
	LastError  string    // the pot's reason when it refused the desired config
	UpdatedAt  time.Time
}

// DriftQuery selects drifting pots: of one product (empty: all), ordered by device id after
// AfterID, at most Limit (default 100, max 1000).
type DriftQuery struct {
	Product string
	AfterID string
	Limit   int
}

// DesiredStore holds desired configurations and the pots' reported ones. Both stores implement
// it (store/sqlite, store/postgres) and pass store/storetest's DesiredSuite.
type DesiredStore interface {
	// SetDesiredConfig stores (replaces) the desired configuration of a product or a pot.
	SetDesiredConfig(ctx context.Context, d DesiredConfig) error
	// DeleteDesiredConfig removes one (nil if there was none).
	DeleteDesiredConfig(ctx context.Context, scope, key string) error
	// DesiredConfigs returns the product's and the pot's desired configurations (nil when unset).
	DesiredConfigs(ctx context.Context, product, deviceID string) (prod, dev *DesiredConfig, err error)
	// ListDesiredConfigs returns every desired configuration of scope, ordered by key.
	ListDesiredConfigs(ctx context.Context, scope string) ([]DesiredConfig, error)
	// ReportConfig stores (replaces) what a device grain knows of its pot's configuration.
	ReportConfig(ctx context.Context, r ConfigReport) error
	// ConfigReports returns reports of pots in drift (DriftSince set) matching q, by device id.
	ConfigDrift(ctx context.Context, q DriftQuery) ([]ConfigReport, error)
	// ConfigReport returns one pot's report (found false when none was stored).
	ConfigReport(ctx context.Context, deviceID string) (r ConfigReport, found bool, err error)
}
