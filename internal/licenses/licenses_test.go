package licenses

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite THIRD_PARTY_LICENSES.md")

// Every module compiled into the binary has a licence we may redistribute
// it under, and THIRD_PARTY_LICENSES.md lists them as they are.
func TestThirdPartyLicenses(t *testing.T) {
	mods, err := Scan("../..", "./cmd/lifecycle-worker")
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) < 20 {
		t.Fatalf("only %d modules found: the scan is broken", len(mods))
	}
	for _, m := range mods {
		if !Allowed[m.License] {
			t.Errorf("%s %s: licence %s (file %q) is not allowed", m.Path, m.Version, m.License, m.File)
		}
	}
	want := Markdown(mods)
	if *update {
		if err := os.WriteFile("../../THIRD_PARTY_LICENSES.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile("../../THIRD_PARTY_LICENSES.md")
	if err != nil || string(have) != want {
		t.Error("THIRD_PARTY_LICENSES.md is out of date: go test ./internal/licenses -update")
	}
}

func TestClassify(t *testing.T) {
	for text, want := range map[string]string{
		"GNU GENERAL PUBLIC LICENSE Version 3":                                   "GPL",
		"GNU AFFERO GENERAL PUBLIC LICENSE":                                      "AGPL",
		"Permission is hereby granted, free of charge, to any person":            "MIT",
		"Redistribution and use in source and binary forms ... Neither the name": "BSD-3-Clause",
		"something else": "unknown",
	} {
		if got := Classify(text); got != want {
			t.Errorf("Classify(%q) = %s, want %s", text, got, want)
		}
	}
}
