package config

import (
	"reflect"
	"strings"
)

// Defaults returns the built-in defaults as written: "~" not expanded and
// the defaults that depend on other keys not applied. It is for the
// configuration reference; Load and Default give what a daemon uses.
func Defaults() *Config { return defaults() }

// RestartNeeded lists the keys (dotted, "health.bind") whose change between
// old and new the running daemon applies only when it restarts: the fields
// tagged restart:"true", or inside a table so tagged.
func RestartNeeded(old, new *Config) []string {
	var out []string
	var walk func(prefix string, a, b reflect.Value, restart bool)
	walk = func(prefix string, a, b reflect.Value, restart bool) {
		t := a.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := strings.Split(f.Tag.Get("toml"), ",")[0]
			if !f.IsExported() || key == "" || key == "-" {
				continue
			}
			r := restart || f.Tag.Get("restart") == "true"
			if f.Type.Kind() == reflect.Struct {
				walk(prefix+key+".", a.Field(i), b.Field(i), r)
				continue
			}
			if r && !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				out = append(out, prefix+key)
			}
		}
	}
	walk("", reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), false)
	return out
}
