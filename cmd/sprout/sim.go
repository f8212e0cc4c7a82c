package main

import "fmt"

func runSim(args []string) error { return fmt.Errorf("sim: not yet") }

func runDemo(args []string) error { return fmt.Errorf("demo: not yet") }
