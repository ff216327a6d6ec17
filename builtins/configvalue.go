package builtins

import (
	"reflect"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/engine/config"
)

// ConfigDoc documents the `config` value.
const ConfigDoc = `config: config.toml as the policy sees it, frozen, with the same key names:
config.heal_script, config.check_interval_secs, config.path (list),
config.worker.port, config.agent.cloud_command, config.escalation.sos_telegram_chat_id,
config.probes.k8s_timeout_secs, config.health.bind, config.secrets.dir, ...
Paths are "~"-expanded; an unset string is "".`

// configValue is the frozen `config` struct: every TOML key of cfg under
// its TOML name, tables as nested structs.
func configValue(cfg *config.Config) starlark.Value {
	return structValue("config", reflect.ValueOf(cfg).Elem())
}

func structValue(name string, v reflect.Value) starlark.Value {
	d := starlark.StringDict{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		if x := toStarlark(tag, v.Field(i)); x != nil {
			d[tag] = x
		}
	}
	s := starlarkstruct.FromStringDict(structName(name), d)
	s.Freeze()
	return s
}

func toStarlark(name string, v reflect.Value) starlark.Value {
	switch v.Kind() {
	case reflect.String:
		return starlark.String(v.String())
	case reflect.Bool:
		return starlark.Bool(v.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		return starlark.MakeInt64(v.Int())
	case reflect.Slice:
		var items []starlark.Value
		for i := 0; i < v.Len(); i++ {
			if x := toStarlark(name, v.Index(i)); x != nil {
				items = append(items, x)
			}
		}
		l := starlark.NewList(items)
		l.Freeze()
		return l
	case reflect.Struct:
		return structValue(name, v)
	}
	return nil
}

// structName is a struct constructor that prints bare, so that errors read
// "config struct has no .nope attribute".
type structName string

func (n structName) String() string        { return string(n) }
func (n structName) Type() string          { return "struct_name" }
func (n structName) Freeze()               {}
func (n structName) Truth() starlark.Bool  { return true }
func (n structName) Hash() (uint32, error) { return starlark.String(n).Hash() }
