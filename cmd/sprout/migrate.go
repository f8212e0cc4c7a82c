package main

import (
	"context"
	"fmt"
)

func runMigrate(args []string) error {
	var sf storeFlags
	fs := newFlagSet("migrate", "Applies the storage migrations (also applied on every start) and exits.")
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, desc, err := sf.open(context.Background())
	if err != nil {
		return err
	}
	fmt.Println("migrated:", desc)
	return st.Close()
}
