// Package jsonformtest holds a codec built on jsonform to encoding/json.
package jsonformtest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// Encodes checks that encode(v) returns json.Marshal(v)'s bytes and error.
func Encodes[T any](t testing.TB, v T, encode func(T) ([]byte, error)) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	have, haveErr := encode(v)
	if fmt.Sprint(haveErr) != fmt.Sprint(wantErr) || string(have) != string(want) {
		t.Fatalf("encode %+v\n have %s (%v)\n want %s (%v)", v, have, haveErr, want, wantErr)
	}
}

// Decodes checks that decode(data) returns json.Unmarshal's value and
// error.
func Decodes[T any](t testing.TB, data []byte, decode func([]byte) (T, error)) {
	t.Helper()
	var want T
	wantErr := json.Unmarshal(data, &want)
	have, haveErr := decode(data)
	if fmt.Sprint(haveErr) != fmt.Sprint(wantErr) || (wantErr == nil && !reflect.DeepEqual(have, want)) {
		t.Fatalf("decode %s\n have %+v (%v)\n want %+v (%v)", data, have, haveErr, want, wantErr)
	}
}
