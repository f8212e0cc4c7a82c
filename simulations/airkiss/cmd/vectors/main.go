// Command vectors writes the AirKiss decoder test vectors for the firmware:
//
//	go run ./simulations/airkiss/cmd/vectors [-dir firmware/test/vectors]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sprout-iot/sprout/simulations/airkiss"
)

func main() {
	dir := flag.String("dir", "firmware/test/vectors", "where to write airkiss_NAME.txt")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "vectors:", err)
		os.Exit(1)
	}
	for _, v := range airkiss.Vectors() {
		path := filepath.Join(*dir, "airkiss_"+v.Name+".txt")
		f, err := os.Create(path)
		if err == nil {
			err = airkiss.Write(f, v)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vectors: %s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Println(path)
	}
}
