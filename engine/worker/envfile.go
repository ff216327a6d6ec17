package worker

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/talon-dev/talon/internal/fsperm"
)

// ParseEnvFile reads KEY=VALUE lines, the format of the predecessor's env
// file and of most .env files:
//
//   - blank lines and lines whose first non-blank character is # are skipped;
//   - an optional "export " prefix is dropped;
//   - the key and the value are trimmed; a value wrapped in matching single or
//     double quotes loses them;
//   - there are no escapes, no interpolation, no multi-line values and no
//     trailing comments: everything after the = is the value.
//
// A line that is not KEY=VALUE, or whose key is not a shell identifier, is an
// error that names the line (name is the file name used in messages).
func ParseEnvFile(r io.Reader, name string) ([]string, error) {
	var env []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if n == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimSpace(rest)
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected KEY=VALUE, got %q", name, n, line)
		}
		key = strings.TrimSpace(key)
		if !validKey(key) {
			return nil, fmt.Errorf("%s:%d: invalid variable name %q", name, n, key)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		env = append(env, key+"="+val)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return env, nil
}

// readEnvFile parses the env file at path, which files must find safe
// (package fsperm). A missing file is reported with os.ErrNotExist in the
// chain so the caller can treat it as optional.
func readEnvFile(path string, files *fsperm.Checker) ([]string, error) {
	f, err := files.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseEnvFile(f, path)
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// mergeEnv returns the entries of the lists in order, a later KEY replacing
// an earlier one in place, so the child sees each variable once.
func mergeEnv(lists ...[]string) []string {
	idx := map[string]int{}
	var out []string
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}
