package config

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"github.com/talon-dev/talon/engine"
)

// Service is one [KIND.NAME] table of services.toml.
type Service struct {
	Kind string // "http", "launchd" or "script"
	Name string // NAME; the probe is called KIND:NAME
	// Target is the kind's required key: the url, the label or the command.
	Target   string
	Critical bool
	// OnFailure is on_failure when set: "page", "act" or "show". Unset, a
	// critical service pages and any other is only shown (watched, never
	// acted on), as the predecessor treated its services.
	OnFailure string
	// After is critical_after_consecutive_failures; 0 when unset.
	After int
	// TimeoutSecs is timeout_secs; 0 when unset.
	TimeoutSecs int
	// Line and Col locate the table header in File.
	Line, Col int
}

// ProbeName is the name of the probe the service declares, "KIND:NAME".
func (s Service) ProbeName() string { return s.Kind + ":" + s.Name }

// Services is a decoded services.toml.
type Services struct {
	File string
	// Found is false when the file does not exist; List is then empty.
	Found bool
	// List is sorted by kind (http, launchd, script), then by name.
	List []Service
}

type serviceOpts struct {
	Critical    *bool   `toml:"critical"`
	OnFailure   *string `toml:"on_failure"`
	After       *int    `toml:"critical_after_consecutive_failures"`
	TimeoutSecs *int    `toml:"timeout_secs"`
}

type httpService struct {
	URL *string `toml:"url"`
	serviceOpts
}

type launchdService struct {
	Label *string `toml:"label"`
	serviceOpts
}

type scriptService struct {
	Command *string `toml:"command"`
	serviceOpts
}

type servicesDoc struct {
	HTTP    map[string]httpService    `toml:"http"`
	Launchd map[string]launchdService `toml:"launchd"`
	Script  map[string]scriptService  `toml:"script"`
}

// LoadServices reads a services file ("~" expanded). The file keeps the
// predecessor's schema: [http.NAME] url, [launchd.NAME] label, [script.NAME]
// command, each with optional critical, critical_after_consecutive_failures
// and timeout_secs, and (new) on_failure. A table with no keys declares nothing. Unlike the
// predecessor, an unknown kind or key and a wrong type are errors
// (*engine.PosError with the line and column). A missing file is not an
// error: it yields no services and Found is false. The file must be one no
// other user can change (fsperm, strictly); the loader's services() reads
// with the checker of the config instead.
func LoadServices(path string) (*Services, error) {
	path = ExpandHome(path, homeDir())
	doc, err := ReadFile(path, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Services{File: path}, nil
	case err != nil:
		return nil, &engine.PosError{File: path, Message: FileErrorMessage(err)}
	}
	return ParseServices(path, doc)
}

// ParseServices decodes doc, the content of the services file path; see LoadServices.
func ParseServices(path string, doc []byte) (*Services, error) {
	s := &Services{File: path, Found: true}
	if isBlank(doc) {
		// A file cut short must not silently drop every service.
		return nil, &engine.PosError{File: path, Message: "the file is empty; write at least a comment in it to declare no service"}
	}
	var d servicesDoc
	if err := decodeStrict(path, doc, &d); err != nil {
		return nil, err
	}
	pos := scanPositions(doc)
	add := func(kind, name, key string, target *string, o serviceOpts) error {
		if target == nil && o.Critical == nil && o.OnFailure == nil && o.After == nil && o.TimeoutSecs == nil {
			return nil
		}
		at := func(k string, format string, args ...any) error {
			e := &engine.PosError{File: path, Message: fmt.Sprintf(format, args...)}
			if p, ok := pos[keyOf(kind, name, k)]; ok {
				e.Line, e.Col = p.line, p.col
			}
			return e
		}
		if target == nil {
			e := &engine.PosError{File: path, Message: fmt.Sprintf("%s.%s is missing required key: %s", kind, name, key)}
			if p, ok := pos[keyOf(kind, name)]; ok { // the table's header
				e.Line, e.Col = p.line, p.col
			}
			return e
		}
		if *target == "" {
			return at(key, "%s.%s: %s must not be empty", kind, name, key)
		}
		sv := Service{Kind: kind, Name: name, Target: *target}
		if o.Critical != nil {
			sv.Critical = *o.Critical
		}
		if o.OnFailure != nil {
			switch f := *o.OnFailure; f {
			case "page", "act", "show":
				if sv.Critical && f != "page" {
					return at("on_failure", "%s.%s: on_failure = %q contradicts critical = true; keep one of them", kind, name, f)
				}
				sv.OnFailure = f
			default:
				return at("on_failure", "%s.%s: on_failure must be \"page\", \"act\" or \"show\", got %q", kind, name, f)
			}
		}
		if o.After != nil {
			if *o.After < 1 {
				return at("critical_after_consecutive_failures", "%s.%s: critical_after_consecutive_failures must be at least 1, got %d", kind, name, *o.After)
			}
			sv.After = *o.After
		}
		if o.TimeoutSecs != nil {
			if *o.TimeoutSecs < 1 || *o.TimeoutSecs > 3600 {
				return at("timeout_secs", "%s.%s: timeout_secs must be between 1 and 3600, got %d", kind, name, *o.TimeoutSecs)
			}
			sv.TimeoutSecs = *o.TimeoutSecs
		}
		if p, ok := pos[keyOf(kind, name)]; ok {
			sv.Line, sv.Col = p.line, p.col
		}
		s.List = append(s.List, sv)
		return nil
	}
	for _, name := range sortedKeys(d.HTTP) {
		v := d.HTTP[name]
		if err := add("http", name, "url", v.URL, v.serviceOpts); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(d.Launchd) {
		v := d.Launchd[name]
		if err := add("launchd", name, "label", v.Label, v.serviceOpts); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(d.Script) {
		v := d.Script[name]
		if err := add("script", name, "command", v.Command, v.serviceOpts); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
